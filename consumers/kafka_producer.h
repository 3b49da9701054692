// A small idempotent Kafka producer for `loyalty produce --brokers` (and, later, the
// outbox): send, then Flush to learn that every message was delivered.
#ifndef LOYALTY_CONSUMERS_KAFKA_PRODUCER_H_
#define LOYALTY_CONSUMERS_KAFKA_PRODUCER_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace RdKafka {
class Producer;
}

namespace loyalty {

class KafkaProducer {
 public:
  // `config` are librdkafka properties applied last (TLS, SASL, ...); those
  // librdkafka documents as the consumer's alone are left out (ConfigFor).
  static absl::StatusOr<std::unique_ptr<KafkaProducer>> Create(
      const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& config);
  ~KafkaProducer();

  // Queues one message (partitioned by key); waits for room when the local queue
  // is full. An error for a message that cannot be queued at all.
  absl::Status Send(const std::string& topic, std::string_view key, std::string_view value,
                    const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Waits until every queued message is delivered or failed; an error names the
  // failures since the last Flush (each failure is reported once).
  absl::Status Flush(int timeout_ms);

 private:
  KafkaProducer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loyalty

#endif  // LOYALTY_CONSUMERS_KAFKA_PRODUCER_H_
