// The Kafka input: a consumer-group member of the events topic whose every poll
// becomes one ingest batch. Exactly once: the consumed offsets are stored in the
// same RocksDB WriteBatch as the records (by the Ingestor), and on assignment the
// consumer seeks to those stored offsets, never Kafka's. Offsets are committed to
// Kafka after each durable batch only so that lag tools see them.
#ifndef LOYALTY_CONSUMERS_KAFKA_SOURCE_H_
#define LOYALTY_CONSUMERS_KAFKA_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"

namespace RdKafka {
class KafkaConsumer;
}

namespace loyalty {

struct KafkaSourceOptions {
  // Bootstrap servers, "host:port,...". Required.
  std::string brokers;
  // Default: loyalty.events.
  std::string topic = "loyalty.events";
  // The consumer group. Default: loyalty-engine.
  std::string group = "loyalty-engine";
  // librdkafka properties passed through (TLS, SASL, ...), applied last; those
  // librdkafka documents as the producer's alone are left out (ConfigFor).
  std::vector<std::pair<std::string, std::string>> config;
  // A batch ends at this many messages... Default: kDefaultBatchMessages (one
  // WriteBatch, one WAL sync: larger batches amortize the sync and the states).
  size_t batch_max_messages = kDefaultBatchMessages;
  // ...or after this long collecting. Default: 20 ms.
  int batch_wait_ms = 20;
  // How long a missing member keeps its partitions. Default: 10 s (librdkafka's 45 s
  // makes every restart wait that long for a rebalance).
  int session_timeout_ms = 10000;
};

// Takes one batch durably (the Ingestor's IngestBatch, usually); or, with a
// BatchDrain, takes it and stores it by the next call or the drain (a pipelined
// Ingestor: an OK return means the batches before this one are stored).
using BatchSink = std::function<absl::Status(const std::vector<InputMessage>& batch)>;
// Stores what the sink took and has not stored yet (Ingestor::Flush).
using BatchDrain = std::function<absl::Status()>;

class KafkaSource {
 public:
  // `log` (for stored positions) is not owned and must outlive the source.
  // With `drain`, the sink may store each batch late (see BatchSink): the source
  // drains before it reads the stored positions (on assignment) and after it hands
  // over what it took from revoked partitions, and tells Kafka a batch's offsets
  // only once it is stored.
  static absl::StatusOr<std::unique_ptr<KafkaSource>> Create(const KafkaSourceOptions& options,
                                                             const EventLog* log, BatchSink sink,
                                                             BatchDrain drain = nullptr);
  ~KafkaSource();

  // Collects one batch (up to batch_max_messages or batch_wait_ms) and hands it to
  // the sink. Returns the messages taken. After an error (the sink failed, or a
  // stored offset lies beyond its partition's end) this source is done: nothing of
  // the failed batch is stored, and a new source (or a restart) resumes exactly
  // before it, from the stored positions.
  absl::StatusOr<size_t> PollOnce();

  // Leaves the group; drains nothing (the owner of the sink does). Idempotent.
  void Close();

  // Observability.
  uint64_t rebalances() const;
  // Sum over assigned partitions of (high watermark - next offset), as last seen.
  int64_t lag() const;

 private:
  KafkaSource() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loyalty

#endif  // LOYALTY_CONSUMERS_KAFKA_SOURCE_H_
