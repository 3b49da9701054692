// The ingest pipeline shared by every input path (JSON-lines files now, Kafka
// later): decode, validate, de-duplicate by event_id, and append one atomic batch
// to the event log together with the source positions it covers.
#ifndef LOYALTY_ENGINE_INGESTOR_H_
#define LOYALTY_ENGINE_INGESTOR_H_

#include <algorithm>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
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

// A batch whose states come to more than this (serialized, as the last append
// changed them) is taken in several appends of fewer messages each, none fewer
// than kMinSliceMessages. A batch's states are parsed from their first use to its
// end, at about 6 times these bytes: the busiest customers' states grow with their
// history (a year of orders and lots, up to 900 KB each at the end of a 10M-event
// stream), and 16,384 messages of it changed about 150 MB of states per batch
// (docs/benchmarks.md, run S).
inline constexpr size_t kDefaultBatchStateBytes = 64 << 20;
inline constexpr size_t kMinSliceMessages = 2048;

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
  // The last record of the batch (of the last batch, when added up): the log's
  // head once the batch is stored.
  uint64_t last_seq = 0;

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

// CheckInput of each input, with the JSON ones decoded together (DecodeJsonEvents:
// the same verdicts, faster).
struct InputToCheck {
  std::string_view raw;
  v1::Encoding encoding = v1::ENCODING_UNSPECIFIED;
  uint64_t full_size = 0;
  absl::Time clock;
};
std::vector<InputVerdict> CheckInputs(absl::Span<const InputToCheck> inputs);

// The content digest of the event applied by record `seq` (what a repeat of its
// event id is compared with). DataLoss if the record is missing or applied none.
absl::StatusOr<std::string> AppliedDigest(const EventLog& log, uint64_t seq,
                                          const LogSnapshot* snapshot = nullptr);

// What turns applied events into decisions and projection state, in the same
// batch as the records (the projections implement it).
class EventProcessor {
 public:
  virtual ~EventProcessor() = default;
  // Called once per batch before any record: may append records of its own (a
  // program change).
  virtual absl::Status BeginBatch(LogBatch* batch) = 0;
  // After BeginBatch, before the batch's events: the customers they are for, in
  // order (repeats included). A processor may start reading their state ahead.
  virtual void Prefetch(absl::Span<const std::string_view> customer_ids) {}
  // Decides an applied event that will be record `seq`: fills `applied`'s outcome
  // and adds to `customers` every customer whose ledger it wrote. `event` may be
  // `applied`'s own event, which it must leave as it is.
  virtual absl::Status Process(const v1::Event& event, uint64_t seq, v1::Applied* applied,
                               std::vector<std::string>* customers) = 0;
  // Writes the batch's projection changes into it, just before it commits.
  virtual absl::Status EndBatch(LogBatch* batch) = 0;
  // The serialized bytes of the state the last ended batch changed (what the
  // Ingestor bounds a batch by: kDefaultBatchStateBytes).
  virtual size_t LastBatchStateBytes() const { return 0; }
  // The oldest batch ended (EndBatch) and not yet reported committed is stored.
  // Batches commit in the order they end; a pipelined Ingestor begins the next
  // batch before the last one is stored, so up to two may be ended and unstored.
  virtual void Committed() = 0;
  // A batch did not commit, or was not finished: forget every change the store
  // does not hold (those of the batch in progress, and of any ended batch not
  // reported committed).
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

  // Pipelined (default: off), IngestBatch hands its batch to a thread that commits
  // it and returns at once: the next batch is decoded and decided while this one
  // is written (the WAL, its sync and the memtable inserts: a third of a batch's
  // time on the ingesting thread, docs/benchmarks.md run Q). The next batch is
  // checked for duplicates against the one in flight as well as the store, so the
  // log is the same record for record. What changes for the caller:
  // - when IngestBatch returns OK, the batches before it are stored; its own batch
  //   is stored by the next IngestBatch, Sweep or Flush that returns OK;
  // - a batch that failed to commit fails the next call instead, which then
  //   stores nothing of its own batch either. As after any error, the caller must
  //   stop, or resume from the input positions stored in the log.
  void set_pipelined(bool pipelined) { pipelined_ = pipelined; }
  bool pipelined() const { return pipelined_; }

  // Takes one batch of messages, in order, as one atomic append, or as several
  // consecutive ones when the last append changed more than batch_state_bytes of
  // state (set_batch_state_bytes). On error the caller must stop (or resume from
  // the stored positions): nothing of the append that failed is stored (nor,
  // pipelined, of the one before it, if it was its commit that failed), and the
  // appends before it in the same batch are.
  absl::StatusOr<IngestCounts> IngestBatch(const std::vector<InputMessage>& batch);

  // The state bytes past which a batch is split (default kDefaultBatchStateBytes).
  void set_batch_state_bytes(size_t bytes) { batch_state_bytes_ = std::max<size_t>(1, bytes); }
  // The appends IngestBatch made so far (one per batch when none was split).
  uint64_t appends() const { return appends_; }

  // Waits until the batch in flight (pipelined) is stored; its commit's error, if
  // it failed. OK at once when nothing is in flight.
  absl::Status Flush();

  // What the batches stored so far came to (IngestBatch's counts, added up once
  // each batch is stored; pipelined, a batch's counts are returned before).
  const IngestCounts& stored() const { return stored_; }

  // A sweep at the clock's reading (EventProcessor::Sweep) as one atomic append;
  // the records appended (0 when nothing was due). Call it from the thread that
  // ingests, between batches. Pipelined, it first waits for the batch in flight.
  absl::StatusOr<size_t> Sweep();

  // Waits for the batch in flight, if any.
  ~Ingestor();

 private:
  // What a batch in flight adds to the indexes Build checks against: event id ->
  // content digest, and dead-letter input position key -> SHA-256 of the bytes.
  struct InFlight {
    absl::flat_hash_map<std::string, std::string> event_ids;
    absl::flat_hash_map<std::string, std::string> dead_letters;
  };
  // `added`, if given, receives this batch's entries.
  absl::StatusOr<IngestCounts> Build(absl::Span<const InputMessage> batch, LogBatch* out,
                                     InFlight* added);
  // One atomic append of `batch` (IngestBatch without the split).
  absl::StatusOr<IngestCounts> IngestAppend(absl::Span<const InputMessage> batch);
  // The batch in flight's commit, waited for; the processor is told how it went.
  absl::Status FinishInFlight();

  EventLog* log_;
  const Clock* clock_;
  EventProcessor* processor_;
  int decode_threads_ = 2;
  bool pipelined_ = false;
  size_t batch_state_bytes_ = kDefaultBatchStateBytes;
  // The messages an append takes, from the last append's state bytes; 0: a whole
  // batch.
  size_t slice_messages_ = 0;
  uint64_t appends_ = 0;
  // Pipelined: the commit in flight, the head it leaves, and what it indexes.
  std::future<absl::Status> in_flight_commit_;
  LogHead in_flight_head_;
  InFlight in_flight_;
  IngestCounts in_flight_counts_;
  IngestCounts stored_;
};

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_INGESTOR_H_
