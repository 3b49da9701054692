// The projections' write side: decides each applied event (projections/decider.h)
// against per-customer state kept hot in memory, and writes the state each batch
// changed into that same batch (column family `customer_state`, one value per
// customer per batch). It also keeps the program in force, recording a
// ProgramChange in the log whenever the configured program differs.
#ifndef LOYALTY_PROJECTIONS_PROJECTOR_H_
#define LOYALTY_PROJECTIONS_PROJECTOR_H_

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "loyalty/v1/ledger.pb.h"
#include "loyalty/v1/log.pb.h"
#include "projections/decider.h"
#include "projections/program.h"
#include "projections/signals.h"

namespace loyalty {

// Bumped whenever projection code changes what it stores; kept in the store so a
// later version can tell outdated projections (docs/log-format.md).
// 2: CustomerState.signals; 3: decision_ids (orders and redemptions leave the state);
// 4: lots and orders stored by column; 5: large states stored as chunks (state_chunks).
inline constexpr uint32_t kProjectionVersion = 5;

// Keys in the `projection_meta` column family.
inline constexpr char kMetaProgram[] = "program";         // ProgramChange in force
inline constexpr char kMetaProjectionVersion[] = "projection_version";

// The states kept in memory between batches, in serialized bytes: past it, the
// states least recently used are dropped at the start of a batch and read again
// from the store when needed. Between batches a state is kept serialized, as
// stored, and parsed again when a batch needs it: parsed, a state takes about 6
// times the bytes (packed columns are varints on disk and 8-byte slots with room
// to grow in memory, each order id its own string), and keeping them parsed held
// 1.9 GB at 10M events (docs/benchmarks.md, run R). The busiest states stay
// parsed instead (kDefaultParsedStateBytes, outside this budget), so this cache
// holds the rest: 8 MiB ingested lines 4M-4.5M of the 10M stream as fast as 24
// MiB did, with less memory (run U).
inline constexpr size_t kDefaultStateCacheBytes = 8 << 20;

// The busiest customers appear in nearly every batch, and a state kept only
// serialized between batches is read or parsed at the start of each batch that
// uses it and destroyed at its end: reading, parsing and destroying states took
// 22% of the CPU of `loyalty ingest` at lines 4M-4.5M of the 10M-event stream,
// half of the ingesting thread's (docs/benchmarks.md, run U). States used in two
// batches in a row stay parsed (with their order id index) until a batch passes
// them by, within this many bytes of memory (SpaceUsedLong, measured again when a
// state has doubled or halved, plus the index). They are still serialized and
// stored at the end of each batch that changes them.
inline constexpr size_t kDefaultParsedStateBytes = 96 << 20;

// States in memory with at least this many orders keep a set of their order ids,
// so that a duplicate check costs one lookup instead of a pass over the orders.
inline constexpr size_t kDefaultOrderIndexFrom = 64;

// A batch that will ask for at least this many states not in memory has them read
// and parsed ahead on a second thread (Projector::Prefetch); fewer are not worth a
// thread's start.
inline constexpr size_t kPrefetchFrom = 64;

// The threads that serialize a batch's changed states, when it changed at least
// kParallelSerializeFrom of them (fewer are not worth a thread's start).
inline constexpr int kDefaultSerializeThreads = 2;
inline constexpr size_t kParallelSerializeFrom = 64;

class Projector final : public EventProcessor, public StateSource {
 public:
  // `log` is not owned and must outlive the projector. `program` is the one
  // configured now (complete; see LoadProgram): if it differs from the one in
  // force, the next batch records it first.
  static absl::StatusOr<std::unique_ptr<Projector>> Open(
      EventLog* log, const v1::Program& program,
      size_t state_cache_bytes = kDefaultStateCacheBytes,
      size_t order_index_from = kDefaultOrderIndexFrom,
      size_t parsed_state_bytes = kDefaultParsedStateBytes);
  ~Projector() override;

  // EventProcessor
  absl::Status BeginBatch(LogBatch* batch) override;
  // Reads and parses the states of `customer_ids` not in memory on a thread of its
  // own, in that order, while the batch's events are decided; Mutable takes each
  // from there (or reads it itself if the thread has not come to it yet).
  void Prefetch(absl::Span<const std::string_view> customer_ids) override;
  absl::Status Process(const v1::Event& event, uint64_t seq, v1::Applied* applied,
                       std::vector<std::string>* customers) override;
  absl::Status EndBatch(LogBatch* batch) override;
  void Committed() override;
  void AbortBatch() override;
  size_t LastBatchStateBytes() const override { return last_batch_state_bytes_; }
  absl::StatusOr<bool> Sweep(int64_t at, LogBatch* batch) override;

  // StateSource
  absl::StatusOr<v1::CustomerState*> Mutable(const std::string& customer_id) override;
  absl::StatusOr<std::optional<std::string>> Recall(const std::string& key) override;
  void Remember(const std::string& key, std::string value) override;
  OrderIdIndex* OrderIndex(const v1::CustomerState& state) override;

  // How many threads serialize a batch's changed states (at least 1).
  void set_serialize_threads(int threads) { serialize_threads_ = std::max(1, threads); }
  // Whether Prefetch reads states ahead (default true); off, Mutable reads each.
  void set_prefetch(bool on) { prefetch_enabled_ = on; }

  const Rules& rules() const { return *rules_; }
  uint32_t program_version() const { return in_force_.version(); }

  // States in memory, and the serialized bytes (as last stored) of those not kept
  // parsed.
  size_t cached_states() const { return cache_.size(); }
  size_t cached_bytes() const { return cached_bytes_; }
  // States kept parsed between batches, and the memory they hold.
  size_t parsed_states() const { return kept_.size(); }
  size_t parsed_bytes() const { return parsed_bytes_; }
  // States a batch took from those read ahead (Prefetch), since opened.
  uint64_t states_read_ahead() const { return states_read_ahead_; }

 private:
  struct Cached;
  class StatePrefetch;

  explicit Projector(EventLog* log);
  absl::Status Load();
  // The sweep's index: every customer's SignalState.next_check_at (0s left out),
  // loaded from the store at the first sweep and kept up to date by EndBatch.
  absl::Status LoadDue();
  // Drops the least recently used states the store holds as they are (not those
  // of a batch not yet committed, nor those kept parsed) until the cache is within
  // 90% of its budget. Only between batches.
  void Evict();
  // At the end of a batch: the states kept parsed that it did not use are kept
  // serialized from now on, and of those it changed, the ones used in the batch
  // before as well stay parsed as far as kDefaultParsedStateBytes allows.
  // `entries[i]` is dirty_[i]'s entry in cache_, and `serialized[i]` its state as
  // stored.
  void KeepParsed(const std::vector<Cached*>& entries, std::vector<std::string>* serialized);
  // The memory `cached` takes parsed (its state and its order id index), its state
  // `serialized_bytes` long when serialized.
  static size_t ParsedBytes(Cached* cached, size_t serialized_bytes);
  // A customer's state as the store holds it (a new one if it holds none), as an
  // entry of cache_.
  static absl::StatusOr<Cached> ReadStored(const EventLog& log, const std::string& customer_id);

  EventLog* log_;
  v1::Program configured_;
  v1::ProgramChange in_force_;  // version 0: none recorded yet
  std::unique_ptr<Rules> rules_;
  v1::ProgramChange committed_in_force_;  // as of the last committed batch
  struct Cached {
    // Parsed while a batch uses it (from Mutable to EndBatch) and while kept
    // parsed, else null and the state is `serialized`.
    std::unique_ptr<v1::CustomerState> state;
    std::string serialized;
    bool kept_parsed = false;  // between batches: `state` holds it
    size_t parsed_bytes = 0;   // when kept parsed: its memory, as counted
    // SpaceUsedLong per serialized byte, in 1/1024ths, as measured when its
    // serialized size was `measured_at` bytes (0: never). Measuring walks the whole
    // state by reflection: it took 5% of the ingesting thread when done for every
    // kept state at every batch (docs/benchmarks.md, run V). A state is measured
    // again once its size has doubled or halved since.
    uint32_t parsed_per_kib = 0;
    size_t measured_at = 0;
    bool was_kept = false;     // in a batch: it was kept parsed before it
    // The head stored for it when it is stored as chunks (projections/state_store.h),
    // else empty: the next batch that changes it writes only the chunks it changed.
    std::string head;
    size_t bytes = 0;   // serialized, as last read or written
    uint64_t used = 0;  // the last batch that asked for it
    uint64_t changed = 0;  // the last ended batch that changed it
    // The ids of state->ledger()'s orders, once it had order_index_from_ orders.
    std::unique_ptr<OrderIdIndex> order_ids;
  };
  absl::flat_hash_map<std::string, Cached> cache_;
  size_t state_cache_bytes_ = kDefaultStateCacheBytes;
  size_t order_index_from_ = kDefaultOrderIndexFrom;
  size_t parsed_state_bytes_ = kDefaultParsedStateBytes;
  int serialize_threads_ = kDefaultSerializeThreads;
  size_t cached_bytes_ = 0;  // serialized bytes of the states not kept parsed
  size_t parsed_bytes_ = 0;  // memory of the states kept parsed
  std::vector<std::string> kept_;  // the customers whose states are kept parsed
  std::vector<std::string> last_batch_;  // the customers the last ended batch used, sorted
  size_t last_batch_state_bytes_ = 0;
  uint64_t batch_number_ = 0;
  // The last batch reported committed: states changed after it are not stored yet.
  uint64_t committed_batch_ = 0;
  std::vector<v1::CustomerState*> dirty_;
  // Decision ids remembered in this batch, written by EndBatch; the store holds
  // the earlier ones, but for those of ended batches not yet committed.
  absl::flat_hash_map<std::string, std::string> remembered_;
  struct Ended {
    uint64_t batch = 0;
    v1::ProgramChange in_force;
    absl::flat_hash_map<std::string, std::string> remembered;
  };
  std::deque<Ended> ended_;  // ended, not yet reported committed; oldest first
  bool due_loaded_ = false;
  DueIndex due_;
  bool prefetch_enabled_ = true;
  uint64_t states_read_ahead_ = 0;
  // The states the batch in progress reads ahead (Prefetch), until it ends.
  std::unique_ptr<StatePrefetch> prefetch_;
};

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_PROJECTOR_H_
