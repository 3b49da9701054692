// The outbox: publishes what is already durable in the log to Kafka, at least
// once, in log order: dead letters to loyalty.events.dlq (original key and value,
// headers naming the reason and the source position) and one outcome per applied
// event to loyalty.outcomes and every signal (projections/signals.h) of events and
// sweeps to loyalty.signals (both keyed by customer_id). Every message carries a
// `loyalty-seq` header, so consumers drop repeats. The cursor (the last sequence
// number delivered) is stored after each delivered chunk; a crash re-publishes at
// most one chunk. While the store refuses writes (a full disk) the outbox retries
// storing the cursor of the chunk it delivered, and publishes nothing more.
#ifndef LOYALTY_CONSUMERS_OUTBOX_H_
#define LOYALTY_CONSUMERS_OUTBOX_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "consumers/kafka_producer.h"
#include "engine/event_log.h"
#include "loyalty/v1/ledger.pb.h"

namespace loyalty {

struct OutboxOptions {
  std::string brokers;
  std::vector<std::pair<std::string, std::string>> config;
  std::string dlq_topic = "loyalty.events.dlq";
  std::string outcomes_topic = "loyalty.outcomes";
  std::string signals_topic = "loyalty.signals";
  // Records per delivered chunk (one cursor write each). Default: 2,000.
  size_t chunk_records = 2000;
  // How long to wait for a chunk's delivery before retrying. Default: 30 s.
  int delivery_timeout_ms = 30'000;
};

class Outbox {
 public:
  // `log` is not owned and must outlive the outbox; it must be open for writing
  // (the cursor is stored in it).
  static absl::StatusOr<std::unique_ptr<Outbox>> Start(const OutboxOptions& options, EventLog* log);
  ~Outbox();  // stops

  void Stop();
  uint64_t cursor() const { return cursor_; }
  // OK, or why publishing is failing (it keeps retrying).
  absl::Status health() const;

 private:
  Outbox() = default;
  void Run();
  absl::Status PublishChunk(uint64_t from, uint64_t to);
  absl::Status PublishSignals(uint64_t seq, const google::protobuf::RepeatedPtrField<v1::Signal>& signals);

  OutboxOptions options_;
  EventLog* log_ = nullptr;
  std::unique_ptr<KafkaProducer> producer_;
  std::atomic<uint64_t> cursor_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loyalty

#endif  // LOYALTY_CONSUMERS_OUTBOX_H_
