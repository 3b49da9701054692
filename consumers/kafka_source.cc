#include "consumers/kafka_source.h"

#include <cstdio>

#include <librdkafka/rdkafkacpp.h>

#include <atomic>
#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "consumers/kafka_config.h"
#include "engine/status_macros.h"

namespace loyalty {
namespace {

// Watermark queries on assignment must not hang the engine forever.

}  // namespace

struct KafkaSource::Impl : public RdKafka::RebalanceCb {
  KafkaSourceOptions options;
  const EventLog* log = nullptr;
  BatchSink sink;
  BatchDrain drain;  // may be empty: the sink stores each batch before returning
  // The offsets of the last batch a draining sink took, not yet told to Kafka.
  std::map<int32_t, int64_t> unstored;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer;
  std::vector<InputMessage> pending;
  absl::Status fatal;  // set from the rebalance callback
  std::atomic<uint64_t> rebalances{0};
  std::atomic<int64_t> lag{0};
  std::map<int32_t, int64_t> next_offset;  // per assigned partition
  bool closed = false;

  // Hands the pending messages to the sink, then tells Kafka (for lag tools) the
  // offsets of what is stored.
  absl::Status Flush() {
    if (pending.empty()) return absl::OkStatus();
    LOYALTY_RETURN_IF_ERROR(sink(pending));
    std::map<int32_t, int64_t> last;
    for (const InputMessage& m : pending) last[m.source.kafka().partition()] = m.source.kafka().offset();
    pending.clear();
    for (const auto& [partition, offset] : last) next_offset[partition] = offset + 1;
    if (drain) {
      // The sink's OK stores the batch before this one: tell Kafka that one's.
      CommitToKafka(unstored);
      unstored = std::move(last);
    } else {
      CommitToKafka(last);
    }
    return absl::OkStatus();
  }

  // Stores what a draining sink took (nothing to do without one).
  absl::Status Drain() {
    if (!drain) return absl::OkStatus();
    LOYALTY_RETURN_IF_ERROR(drain());
    CommitToKafka(unstored);
    unstored.clear();
    return absl::OkStatus();
  }

  // The stored offsets in RocksDB are the truth; this commit only feeds lag tools,
  // so its failure is not an error.
  void CommitToKafka(const std::map<int32_t, int64_t>& last) {
    if (last.empty()) return;
    std::vector<RdKafka::TopicPartition*> offsets;
    for (const auto& [partition, offset] : last) {
      offsets.push_back(RdKafka::TopicPartition::create(options.topic, partition, offset + 1));
    }
    consumer->commitAsync(offsets);
    RdKafka::TopicPartition::destroy(offsets);
  }

  void rebalance_cb(RdKafka::KafkaConsumer* c, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override {
    ++rebalances;
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      // The stored positions are read next: what the sink took is stored first.
      if (absl::Status s = Drain(); !s.ok() && fatal.ok()) fatal = s;
      for (RdKafka::TopicPartition* tp : partitions) {
        if (!fatal.ok()) break;
        v1::SourcePosition key;
        key.mutable_kafka()->set_topic(tp->topic());
        key.mutable_kafka()->set_partition(tp->partition());
        auto stored = log->SourcePositionOf(key);
        if (!stored.ok()) {
          fatal = stored.status();
          break;
        }
        // No broker round trip here: a blocking call in the rebalance callback
        // stalls the group (and while a leader is down, never finishes). A stored
        // offset the partition does not hold is found by the first fetch instead
        // (auto.offset.reset=error, see PollOnce).
        if (stored->has_value()) {
          const int64_t next = (*stored)->kafka().offset() + 1;
          tp->set_offset(next);
          next_offset[tp->partition()] = next;
        } else {
          tp->set_offset(RdKafka::Topic::OFFSET_BEGINNING);
          next_offset[tp->partition()] = 0;
        }
      }
      if (!fatal.ok()) {
        c->unassign();
        return;
      }
      for (RdKafka::TopicPartition* tp : partitions) {
        std::fprintf(stderr, "loyalty: rebalance: assigned %s[%d] from offset %lld\n",
                     tp->topic().c_str(), tp->partition(),
                     static_cast<long long>(next_offset[tp->partition()]));
      }
      c->assign(partitions);
    } else {
      for (RdKafka::TopicPartition* tp : partitions) {
        std::fprintf(stderr, "loyalty: rebalance: revoked %s[%d]\n", tp->topic().c_str(),
                     tp->partition());
      }
      // Revocation: what was taken from these partitions is stored first.
      if (absl::Status s = Flush(); !s.ok() && fatal.ok()) fatal = s;
      if (absl::Status s = Drain(); !s.ok() && fatal.ok()) fatal = s;
      for (RdKafka::TopicPartition* tp : partitions) next_offset.erase(tp->partition());
      c->unassign();
    }
  }

  void UpdateLag() {
    int64_t total = 0;
    for (const auto& [partition, next] : next_offset) {
      int64_t low = 0, high = 0;
      if (consumer->get_watermark_offsets(options.topic, partition, &low, &high) ==
              RdKafka::ERR_NO_ERROR &&
          high >= next) {
        total += high - next;
      }
    }
    lag = total;
  }
};

absl::StatusOr<std::unique_ptr<KafkaSource>> KafkaSource::Create(
    const KafkaSourceOptions& options, const EventLog* log, BatchSink sink, BatchDrain drain) {
  if (options.brokers.empty()) return absl::InvalidArgumentError("no Kafka brokers given");
  std::unique_ptr<KafkaSource> source(new KafkaSource());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->log = log;
  impl->sink = std::move(sink);
  impl->drain = std::move(drain);
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  auto set = [&](const std::string& k, const std::string& v) -> absl::Status {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("Kafka setting ", k, "=", v, ": ", err));
    }
    return absl::OkStatus();
  };
  LOYALTY_RETURN_IF_ERROR(set("bootstrap.servers", options.brokers));
  LOYALTY_RETURN_IF_ERROR(set("group.id", options.group));
  LOYALTY_RETURN_IF_ERROR(set("enable.auto.commit", "false"));
  LOYALTY_RETURN_IF_ERROR(set("enable.auto.offset.store", "false"));
  // Partitions with no stored offset start at the beginning (set on assignment);
  // a stored offset the partition does not hold (a new cluster, a recreated
  // topic, retention that deleted what was never read) is an error, never a
  // silent jump.
  LOYALTY_RETURN_IF_ERROR(set("auto.offset.reset", "error"));
  LOYALTY_RETURN_IF_ERROR(set("enable.partition.eof", "false"));
  LOYALTY_RETURN_IF_ERROR(set("session.timeout.ms", absl::StrCat(options.session_timeout_ms)));
  LOYALTY_RETURN_IF_ERROR(set("client.id", "loyalty-engine"));
  // Partitions added to the topic are found at the next metadata refresh:
  // librdkafka's default of 5 minutes would leave them unread that long.
  LOYALTY_RETURN_IF_ERROR(set("topic.metadata.refresh.interval.ms", "10000"));
  for (const auto& [k, v] : ConfigFor(KafkaClient::kConsumer, options.config)) {
    LOYALTY_RETURN_IF_ERROR(set(k, v));
  }
  if (conf->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(impl.get()), err) !=
      RdKafka::Conf::CONF_OK) {
    return absl::InternalError(err);
  }
  impl->consumer.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (impl->consumer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create the Kafka consumer: ", err));
  }
  RdKafka::ErrorCode code = impl->consumer->subscribe({options.topic});
  if (code != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("cannot subscribe to ", options.topic, ": ", RdKafka::err2str(code)));
  }
  source->impl_ = std::move(impl);
  return source;
}

KafkaSource::~KafkaSource() { Close(); }

absl::StatusOr<size_t> KafkaSource::PollOnce() {
  Impl& s = *impl_;
  if (s.closed) return absl::FailedPreconditionError("the Kafka source is closed");
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(s.options.batch_wait_ms);
  while (s.pending.size() < s.options.batch_max_messages && s.fatal.ok()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    std::unique_ptr<RdKafka::Message> msg(s.consumer->consume(static_cast<int>(left)));
    if (msg->err() == RdKafka::ERR__TIMED_OUT || msg->err() == RdKafka::ERR__PARTITION_EOF) {
      continue;
    }
    if (msg->err() == RdKafka::ERR__AUTO_OFFSET_RESET) {
      auto it = s.next_offset.find(msg->partition());
      s.fatal = absl::FailedPreconditionError(absl::StrCat(
          "the stored offset of ", msg->topic_name(), "[", msg->partition(), "] is ",
          it == s.next_offset.end() ? -1 : it->second,
          " but the partition does not hold it (", msg->errstr(),
          "): this is a new cluster or a recreated topic; refusing to re-read or skip "
          "(use a fresh data directory for a new cluster)"));
      break;
    }
    if (msg->err() != RdKafka::ERR_NO_ERROR) {
      // Broker trouble: librdkafka retries by itself; the engine waits, never skips.
      continue;
    }
    InputMessage m;
    if (msg->payload() != nullptr) m.raw.assign(static_cast<const char*>(msg->payload()), msg->len());
    if (msg->key() != nullptr) m.key = *msg->key();
    if (const RdKafka::Headers* headers = msg->headers(); headers != nullptr) {
      for (const RdKafka::Headers::Header& h : headers->get("content-type")) {
        if (h.value() != nullptr &&
            std::string(static_cast<const char*>(h.value()), h.value_size())
                    .rfind("application/json", 0) == 0) {
          m.json_content_type = true;
        }
      }
    }
    auto* k = m.source.mutable_kafka();
    k->set_topic(msg->topic_name());
    k->set_partition(msg->partition());
    k->set_offset(msg->offset());
    s.pending.push_back(std::move(m));
  }
  if (!s.fatal.ok()) return s.fatal;
  const size_t taken = s.pending.size();
  LOYALTY_RETURN_IF_ERROR(s.Flush());
  s.UpdateLag();
  return taken;
}

void KafkaSource::Close() {
  if (impl_ == nullptr || impl_->closed) return;
  impl_->closed = true;
  // Pending messages were never stored: dropping them loses nothing, a restart
  // re-reads them from the stored offsets.
  impl_->pending.clear();
  impl_->consumer->close();
}

uint64_t KafkaSource::rebalances() const { return impl_->rebalances; }
int64_t KafkaSource::lag() const { return impl_->lag; }

}  // namespace loyalty
