#include "consumers/kafka_producer.h"

#include <librdkafka/rdkafkacpp.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "consumers/kafka_config.h"
#include "engine/status_macros.h"

namespace loyalty {

struct KafkaProducer::Impl : public RdKafka::DeliveryReportCb {
  std::unique_ptr<RdKafka::Producer> producer;
  std::atomic<uint64_t> failed{0};
  std::string last_error;
  void dr_cb(RdKafka::Message& m) override {
    if (m.err() != RdKafka::ERR_NO_ERROR) {
      ++failed;
      last_error = m.errstr();
    }
  }
};

absl::StatusOr<std::unique_ptr<KafkaProducer>> KafkaProducer::Create(
    const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& config) {
  std::unique_ptr<KafkaProducer> p(new KafkaProducer());
  p->impl_ = std::make_unique<Impl>();
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  std::vector<std::pair<std::string, std::string>> all = {
      {"bootstrap.servers", brokers},
      {"enable.idempotence", "true"},  // retries never duplicate or reorder
      {"linger.ms", "5"},
      {"client.id", "loyalty-producer"}};
  for (auto& kv : ConfigFor(KafkaClient::kProducer, config)) all.push_back(std::move(kv));
  for (const auto& [k, v] : all) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("Kafka setting ", k, "=", v, ": ", err));
    }
  }
  if (conf->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(p->impl_.get()), err) !=
      RdKafka::Conf::CONF_OK) {
    return absl::InternalError(err);
  }
  p->impl_->producer.reset(RdKafka::Producer::create(conf.get(), err));
  if (p->impl_->producer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create the Kafka producer: ", err));
  }
  return p;
}

KafkaProducer::~KafkaProducer() {
  if (impl_ != nullptr && impl_->producer != nullptr) impl_->producer->flush(5000);
}

absl::Status KafkaProducer::Send(const std::string& topic, std::string_view key,
                                 std::string_view value,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
  for (;;) {
    RdKafka::Headers* h = nullptr;
    if (!headers.empty()) {
      h = RdKafka::Headers::create();
      for (const auto& [k, v] : headers) h->add(k, v);
    }
    RdKafka::ErrorCode err = impl_->producer->produce(
        topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
        const_cast<char*>(value.data()), value.size(), key.data(), key.size(), 0, h, nullptr);
    if (err == RdKafka::ERR_NO_ERROR) return absl::OkStatus();  // h is owned by librdkafka now
    delete h;
    if (err == RdKafka::ERR__QUEUE_FULL) {
      impl_->producer->poll(100);  // room comes as deliveries complete
      continue;
    }
    return absl::UnavailableError(absl::StrCat("producing to ", topic, ": ", RdKafka::err2str(err)));
  }
}

absl::Status KafkaProducer::Flush(int timeout_ms) {
  RdKafka::ErrorCode err = impl_->producer->flush(timeout_ms);
  if (err != RdKafka::ERR_NO_ERROR) {
    return absl::DeadlineExceededError(
        absl::StrCat("messages still undelivered after ", timeout_ms, " ms"));
  }
  // Failures since the last Flush only: a message that failed once (a topic not
  // yet created, a broker down past message.timeout.ms) must not fail every later
  // Flush, or the outbox would publish the same chunk again forever.
  if (const uint64_t failed = impl_->failed.exchange(0); failed > 0) {
    return absl::UnavailableError(
        absl::StrCat(failed, " messages failed: ", impl_->last_error));
  }
  return absl::OkStatus();
}

}  // namespace loyalty
