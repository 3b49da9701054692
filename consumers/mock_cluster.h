// librdkafka's mock Kafka cluster (rdkafka_mock.h): the real protocol on loopback
// ports, for `loyalty kafka-mock`, `serve --embedded-kafka` and fast tests. It keeps
// only about 5 MiB per partition (notes/platform.md): consume while producing.
#ifndef LOYALTY_CONSUMERS_MOCK_CLUSTER_H_
#define LOYALTY_CONSUMERS_MOCK_CLUSTER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;

namespace loyalty {

// The topics the engine reads and writes, with their defaults (docs/topics.md).
inline constexpr char kDefaultEventsTopic[] = "loyalty.events";
inline constexpr char kDeadLetterTopic[] = "loyalty.events.dlq";
inline constexpr char kOutcomesTopic[] = "loyalty.outcomes";
inline constexpr char kSignalsTopic[] = "loyalty.signals";

class MockCluster {
 public:
  // Starts a cluster of `brokers` brokers on 127.0.0.1 (random ports).
  static absl::StatusOr<std::unique_ptr<MockCluster>> Start(int brokers);
  ~MockCluster();  // stops the cluster

  // Creates `topic` with `partitions` partitions (replication factor 1).
  absl::Status CreateTopic(const std::string& topic, int partitions);
  // "host:port,host:port,...".
  std::string bootstrap_servers() const;
  // For error injection in tests.
  rd_kafka_mock_cluster_t* raw() const { return cluster_; }

 private:
  MockCluster() = default;
  rd_kafka_t* handle_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

}  // namespace loyalty

#endif  // LOYALTY_CONSUMERS_MOCK_CLUSTER_H_
