// The ingest pipeline shared by every input path (JSON-lines files now, Kafka
// later): decode, validate, de-duplicate by event_id, and append one atomic batch
// to the event log together with the source positions it covers.
#ifndef LOYALTY_ENGINE_INGESTOR_H_
#define LOYALTY_ENGINE_INGESTOR_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/validation.h"
#include "loyalty/v1/log.pb.h"

namespace loyalty {

// The most input messages a batch takes by default (`loyalty ingest`, the Kafka
// source): one WriteBatch and one WAL sync each. A customer's state is written once
// per batch it appears in, and a busy customer appears in nearly every batch, so
// larger batches write far fewer state bytes per event: on this machine 16,384
// lines a batch ingest 1M events 28% faster than 4,096 (docs/benchmarks.md, run K).
// A batch's memory stays at tens of MiB.
inline constexpr size_t kDefaultBatchMessages = 16384;

// One input message as received.
struct InputMessage {
  std::string raw;                 // the value's bytes exactly as received
  std::string key;                 // the Kafka message key; empty for files
  bool json_content_type = false;  // the producer sent content-type: application/json
  v1::SourcePosition source;       // where it came from
  // Set by readers that could not keep an oversized input whole: `raw` then holds
  // its first bytes, and these its full size and SHA-256.
  uint64_t full_size = 0;
  std::string full_sha256;
};

// What happened to the messages of one or more batches.
struct IngestCounts {
  uint64_t messages = 0;
  uint64_t applied = 0;                 // events appended (accepted or rejected)
  uint64_t duplicates = 0;              // same event_id, same content: ignored
  uint64_t dead_letters = 0;            // dead letters appended
  uint64_t repeated_dead_letters = 0;   // a dead letter already logged for that position
  uint64_t key_mismatches = 0;          // Kafka key differs from customer_id
  uint64_t accepted = 0;                // applied events the rules accepted
  uint64_t rejected = 0;                // applied events the rules rejected
  std::map<v1::DeadLetterReason, uint64_t> dead_letters_by_reason;

  uint64_t appended() const { return applied + dead_letters; }
  void Add(const IngestCounts& other);
};

// The verdict on one input before idempotency: the decoded event (whenever the
// bytes decoded), its canonical encoding and content digest, or why it is a dead
// letter. The ingest path and the audit both use it, so a replay given the clock
// reading kept in the record reaches the same verdict.
struct InputVerdict {
  bool ok = false;
  v1::Event event;
  std::string canonical;
  std::string digest;
  Rejection rejection{v1::DEAD_LETTER_REASON_UNSPECIFIED, ""};
};
// `full_size` is the input's size when `raw` holds only its first bytes, else 0.
InputVerdict CheckInput(std::string_view raw, v1::Encoding encoding, uint64_t full_size,
                        absl::Time clock);

// What turns applied events into decisions and projection state, in the same
// batch as the records (the projections implement it).
class EventProcessor {
 public:
  virtual ~EventProcessor() = default;
  // Called once per batch before any record: may append records of its own (a
  // program change).
  virtual absl::Status BeginBatch(LogBatch* batch) = 0;
  // Decides an applied event that will be record `seq`: fills `applied`'s outcome
  // and adds to `customers` every customer whose ledger it wrote.
  virtual absl::Status Process(const v1::Event& event, uint64_t seq, v1::Applied* applied,
                               std::vector<std::string>* customers) = 0;
  // Writes the batch's projection changes into it, just before it commits.
  virtual absl::Status EndBatch(LogBatch* batch) = 0;
  // The batch did not commit: forget every change made since BeginBatch.
  virtual void AbortBatch() = 0;
  // Between BeginBatch and EndBatch, instead of events: looks for what changes
  // only because time passed, as of `at` (Unix seconds), and appends a record of
  // it. False if there was nothing to look at (nothing appended).
  virtual absl::StatusOr<bool> Sweep(int64_t at, LogBatch* batch) { return false; }
};

class Ingestor {
 public:
  // `log` and `clock` (and `processor`, if given) are not owned and must outlive
  // the Ingestor. Without a processor, events are logged but not decided.
  Ingestor(EventLog* log, const Clock* clock, EventProcessor* processor = nullptr)
      : log_(log), clock_(clock), processor_(processor) {}

  // Decoding and validating a batch's messages (JSON parsing above all) is spread
  // over this many threads when the batch is large; the rest stays on the calling
  // thread, in order. Default: 2 (this engine's machines have 2 cores).
  void set_decode_threads(int threads) { decode_threads_ = std::max(1, threads); }

  // Takes one batch of messages, in order, as one atomic append. On error nothing
  // of the batch is stored and the caller must stop (or retry the same batch).
  absl::StatusOr<IngestCounts> IngestBatch(const std::vector<InputMessage>& batch);

  // A sweep at the clock's reading (EventProcessor::Sweep) as one atomic append;
  // the records appended (0 when nothing was due). Call it from the thread that
  // ingests, between batches.
  absl::StatusOr<size_t> Sweep();

 private:
  absl::StatusOr<IngestCounts> Build(const std::vector<InputMessage>& batch, LogBatch* out);

  EventLog* log_;
  const Clock* clock_;
  EventProcessor* processor_;
  int decode_threads_ = 2;
};

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_INGESTOR_H_
