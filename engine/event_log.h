// The append-only, hash-chained event log on RocksDB (docs/log-format.md).
//
// One log per data directory: one gapless sequence from 1, one SHA-256 chain.
// Records are only ever appended, in atomic batches (one RocksDB WriteBatch each,
// holding the records, their indexes and the source positions they cover); no API
// updates or deletes a record.
#ifndef LOYALTY_ENGINE_EVENT_LOG_H_
#define LOYALTY_ENGINE_EVENT_LOG_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/sha256.h"
#include "loyalty/v1/log.pb.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
class Snapshot;
class WriteBatch;
}  // namespace rocksdb

namespace loyalty {

class EventLog;

namespace internal {
class InfoLog;
class StoreListener;
}  // namespace internal

struct LogOptions {
  // The data directory. Created (with its column families) if missing, unless
  // read_only. Required.
  std::string data_dir;

  // Open for reading only, beside a process that may be writing: a RocksDB
  // secondary instance that catches up with the writer on CatchUp().
  // Default: false.
  bool read_only = false;

  // fsync the WAL with every batch, so an acknowledged batch survives power loss.
  // Off, a batch survives a process crash but not an OS crash.
  // Default: true.
  bool sync_writes = true;

  // The RocksDB environment; tests pass a fault-injecting or in-memory one.
  // Not owned; must outlive the log. Default: nullptr (rocksdb::Env::Default()).
  rocksdb::Env* env = nullptr;

  // Memtable size per column family. Larger memtables make the random-key index
  // inserts cheaper (notes/platform.md). Default: 64 MiB.
  size_t write_buffer_bytes = 64 << 20;

  // All memtables of all column families together (RocksDB's
  // db_write_buffer_size): past it the largest is flushed, so memory stays bounded
  // however many column families take writes. 256 MiB held 270 MB of memtable
  // arenas at the peak of 3M events, half of what was allocated then
  // (docs/benchmarks.md, run S). Default: 128 MiB.
  size_t memtable_budget_bytes = 128 << 20;
};

// The last record: its sequence number (0 for an empty log) and chain hash
// (32 zero bytes for an empty log).
struct LogHead {
  uint64_t seq = 0;
  Sha256Digest hash{};
};

// What the event-id index holds for an applied event: the record that applied it.
// (Its content is the record's: a repeat of the id is compared with the record.)
struct EventIdEntry {
  uint64_t seq = 0;
};

// What the dead-letter index holds for a dead letter at an input position.
struct DeadLetterEntry {
  uint64_t seq = 0;
  std::string raw_sha256;
};

// One batch being built: records get consecutive sequence numbers and their chain
// hashes as they are appended. Nothing is visible until EventLog::Commit.
// Thread-compatible.
class LogBatch {
 public:
  LogBatch(LogBatch&&);
  LogBatch& operator=(LogBatch&&);
  ~LogBatch();

  // Assigns the next sequence number to `record` (it must have none), serializes
  // it deterministically, chains it, and adds it. Returns the sequence number.
  uint64_t Append(v1::LogRecord* record);

  // Index entries for the records appended above.
  void IndexEventId(std::string_view event_id, uint64_t seq);
  void IndexCustomer(std::string_view customer_id, uint64_t seq);
  void IndexDeadLetter(const v1::SourcePosition& position, uint64_t seq,
                       std::string_view raw_sha256);
  // Indexes a dead letter by the event id it carried (if it decoded that far).
  void IndexDeadLetterEventId(std::string_view event_id, uint64_t seq);
  // Records that the input up to and including `position` has been taken; the
  // last position set per source wins.
  void SetSourcePosition(const v1::SourcePosition& position);

  // Projection state written in the same batch as the records it derives from
  // (docs/log-format.md): each customer's state (large ones as a head in
  // customer_state and content-defined chunks in state_chunks), the decision ids
  // the rules still need but the state no longer holds, and the projections' own
  // metadata.
  enum class ProjectionCf { kCustomerState, kProjectionMeta, kDecisionIds, kStateChunks };
  static constexpr int kProjectionCfCount = 4;
  void Put(ProjectionCf cf, std::string_view key, std::string_view value);
  void Delete(ProjectionCf cf, std::string_view key);

  // The sequence number the next Append will assign.
  uint64_t next_seq() const { return next_seq_; }
  uint64_t first_seq() const { return first_seq_; }
  // The last sequence number appended, or first_seq() - 1 if none.
  uint64_t last_seq() const { return next_seq_ - 1; }
  size_t record_count() const { return next_seq_ - first_seq_; }
  const Sha256Digest& head_hash() const { return head_hash_; }

 private:
  friend class EventLog;
  LogBatch(const EventLog* log, uint64_t first_seq, const Sha256Digest& prev_hash,
           size_t reserve_bytes);

  const EventLog* log_;
  uint64_t first_seq_;
  uint64_t next_seq_;
  Sha256Digest head_hash_;
  std::unique_ptr<rocksdb::WriteBatch> write_batch_;
  // Format 2: the last record appended, stored at Commit with the batch's head hash
  // (every record before it is stored without one as the next is appended).
  std::string last_value_;
  std::vector<std::pair<std::string, std::string>> event_id_puts_;
  // Sorted by customer at Commit.
  absl::flat_hash_map<std::string, std::vector<uint64_t>> customer_seqs_;
  std::map<std::string, std::string> source_positions_;
};

// A consistent read view: every read given the same snapshot sees the log and the
// projections exactly as of one committed batch, whatever commits meanwhile.
// Releases the view when destroyed; must not outlive its EventLog.
class LogSnapshot {
 public:
  ~LogSnapshot();
  LogSnapshot(const LogSnapshot&) = delete;
  LogSnapshot& operator=(const LogSnapshot&) = delete;
  // The last record the view holds (0 for an empty log).
  uint64_t seq() const { return head_.seq; }
  const LogHead& head() const { return head_; }
  const rocksdb::Snapshot* rocks() const { return snapshot_; }
  // The projections' generation the view reads.
  uint64_t projection_generation() const { return generation_; }

 private:
  friend class EventLog;
  LogSnapshot(rocksdb::DB* db, const rocksdb::Snapshot* snapshot)
      : db_(db), snapshot_(snapshot) {}
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
  LogHead head_;
  // The projections' generation in force when the view was taken: a rebuild that
  // switches meanwhile does not change what the view reads.
  std::array<rocksdb::ColumnFamilyHandle*, LogBatch::kProjectionCfCount> projection_cfs_{};
  uint64_t generation_ = 0;
};

// A rebuild of the projections into a new generation of their column families,
// invisible until EventLog::CommitProjectionRebuild switches to it atomically.
// Thread-compatible; one at a time.
class ProjectionRebuild {
 public:
  ~ProjectionRebuild();
  // Writes in chunks as it goes (bounded memory); an error ends the rebuild.
  absl::Status Put(LogBatch::ProjectionCf cf, std::string_view key, std::string_view value);
  uint64_t generation() const { return generation_; }

 private:
  friend class EventLog;
  ProjectionRebuild(rocksdb::DB* db, uint64_t generation);
  absl::Status Flush();
  rocksdb::DB* db_;
  uint64_t generation_;
  std::array<rocksdb::ColumnFamilyHandle*, LogBatch::kProjectionCfCount> cfs_{};
  std::unique_ptr<rocksdb::WriteBatch> pending_;
  size_t pending_puts_ = 0;
};

class EventLog {
 public:
  // Opens (or creates) the log in options.data_dir. FailedPrecondition with a
  // clear message if another process is writing the directory, or if it holds a
  // log of an unknown format.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(const LogOptions& options);
  ~EventLog();

  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // The last committed record. Thread-safe.
  LogHead head() const;

  // A consistent read view of the committed state. Thread-safe.
  absl::StatusOr<std::unique_ptr<LogSnapshot>> TakeSnapshot() const;
  // A view at least as new as every commit that returned before the call, shared:
  // the one taken last while no commit has finished since (the head has not moved)
  // and the projections' generation is the same, else a new one. For queries:
  // taking and releasing a RocksDB snapshot each locks the DB's mutex, which the
  // writer and background jobs hold at times.
  absl::StatusOr<std::shared_ptr<const LogSnapshot>> SharedSnapshot() const;

  // Waits until the head reaches `seq` or `timeout` passes; true if it did.
  // Thread-safe; woken by every Commit.
  bool WaitForSeq(uint64_t seq, absl::Duration timeout) const;

  // A new batch starting after the current head. Only one batch may be open at a
  // time (single writer). Not for read-only logs.
  LogBatch NewBatch() const;
  // A new batch starting after `pending`, the last record of a batch built but not
  // yet committed (pipelined ingestion: Ingestor::set_pipelined). The two must be
  // committed in order; if the first fails, the second must not be committed.
  LogBatch NewBatchAfter(const LogHead& pending) const;

  // Writes the batch atomically (records, indexes, source positions) and moves the
  // head. On error nothing of the batch is visible and the head stays; the caller
  // must not commit later batches built on it.
  absl::Status Commit(LogBatch batch);

  // Lookups in committed state, one result per key, in order.
  absl::Status LookupEventIds(const std::vector<std::string_view>& event_ids,
                              std::vector<std::optional<EventIdEntry>>* out,
                              const LogSnapshot* snapshot = nullptr) const;
  absl::Status LookupDeadLetters(const std::vector<std::string>& position_keys,
                                 std::vector<std::optional<DeadLetterEntry>>* out) const;
  // The dead letters that carried `event_id`, oldest first.
  absl::StatusOr<std::vector<uint64_t>> DeadLettersOf(std::string_view event_id,
                                                      const LogSnapshot* snapshot = nullptr) const;
  // The last position taken from the source of `position` (its topic/partition or
  // file), if any.
  absl::StatusOr<std::optional<v1::SourcePosition>> SourcePositionOf(
      const v1::SourcePosition& position) const;
  // Every stored source position.
  absl::StatusOr<std::vector<v1::SourcePosition>> SourcePositions(
      const LogSnapshot* snapshot = nullptr) const;

  // Calls `fn(seq, record_bytes, chain_hash)` for each stored record with
  // from <= seq <= to, in order, until fn returns an error (returned as is).
  // `chain_hash` is the hash stored with the record: every record's in format 1,
  // the last record of each batch's in format 2 (docs/log-format.md), else empty.
  // Reads raw storage: it does not check sequence or chain (see VerifyLog).
  using ScanFn = std::function<absl::Status(uint64_t seq, std::string_view key,
                                            std::string_view record_bytes,
                                            std::string_view chain_hash)>;
  absl::Status Scan(uint64_t from, uint64_t to, const ScanFn& fn,
                    const LogSnapshot* snapshot = nullptr) const;

  // The chain hash of record `seq`: stored, or computed from the nearest stored hash
  // before it (format 2). `known`, if given, is a record before `seq` whose hash
  // the caller has (the last call's answer, walking a customer's records in order):
  // the computation starts there when it is nearer. NotFound if there is no record
  // `seq`. It does not check the chain (see VerifyLog).
  absl::StatusOr<Sha256Digest> ChainHashAt(uint64_t seq, const LogSnapshot* snapshot = nullptr,
                                           const LogHead* known = nullptr) const;

  // Whether every record is stored with its chain hash (format 1) rather than only
  // the last record of each batch (format 2).
  bool hash_every_record() const { return format_ == 1; }

  // One record, parsed. NotFound if there is none.
  absl::StatusOr<v1::LogRecord> Read(uint64_t seq, const LogSnapshot* snapshot = nullptr) const;

  // The sequence numbers of a customer's records, ascending.
  absl::StatusOr<std::vector<uint64_t>> CustomerSeqs(std::string_view customer_id,
                                                     const LogSnapshot* snapshot = nullptr) const;

  // Reads projection state (see LogBatch::Put). NotFound if absent.
  absl::StatusOr<std::string> GetProjection(LogBatch::ProjectionCf cf, std::string_view key,
                                            const LogSnapshot* snapshot = nullptr) const;
  // Calls fn(key, value) for every entry of a projection column family, in key
  // order, until fn returns an error.
  // `start` is the first key to visit (empty: from the beginning).
  absl::Status ScanProjection(
      LogBatch::ProjectionCf cf,
      const std::function<absl::Status(std::string_view key, std::string_view value)>& fn,
      const LogSnapshot* snapshot = nullptr, std::string_view start = {}) const;

  // Starts rebuilding the projections into fresh column families (not for
  // read-only logs). Nothing changes for readers until the commit.
  absl::StatusOr<std::unique_ptr<ProjectionRebuild>> BeginProjectionRebuild();
  // Writes the rest of the rebuild, then switches to it in one synced write and
  // drops the previous generation. A crash before the switch leaves the old
  // projections in force (the unfinished generation is dropped on the next open).
  absl::Status CommitProjectionRebuild(std::unique_ptr<ProjectionRebuild> rebuild);
  // Small named values of the engine's own (e.g. the outbox cursor), in the
  // default column family under "meta/". NotFound if absent. Put syncs; it fails
  // like Commit on a storage fault.
  absl::StatusOr<std::string> GetMeta(std::string_view name) const;
  absl::Status PutMeta(std::string_view name, std::string_view value);

  // Storage faults (docs/reliability.md). When the store refuses a write with an
  // I/O error (a full disk, a failing device), RocksDB refuses every later write;
  // from then on the log refuses them too, before they reach RocksDB (Commit and
  // PutMeta return the fault, as Unavailable), until ResumeWrites finds the store
  // writable again. Reads go on.
  //
  // OK, or the fault that stopped writes. Thread-safe.
  absl::Status write_fault() const;
  // After a fault: whether the store takes writes again, and if so, lifts the
  // refusal. OK: it does (or there was no fault). Unavailable: not yet; from a full
  // disk RocksDB recovers by itself once the data directory's filesystem has
  // LogOptions::write_buffer_bytes free, polling every 5 s: call again later.
  // FailedPrecondition: RocksDB cannot recover from this fault in-process (an I/O
  // error other than a full disk, or a recovery that kept the WAL writer that
  // failed): restart the engine once the fault is fixed; every later call and
  // write returns the same. Thread-safe.
  absl::Status ResumeWrites();

  // Bytes on disk: table files of every column family plus the live WAL.
  uint64_t ApproximateBytes() const;

  // The generation of the projections in force (0 for a new store).
  uint64_t projection_generation() const {
    absl::MutexLock lock(&generation_mu_);
    return projection_generation_;
  }

  // Read-only logs: catch up with the writer's latest committed state.
  absl::Status CatchUp();

  // The underlying database, for the projection store that writes beside the log
  // in the same batches.
  rocksdb::DB* db() const { return db_.get(); }

  const LogOptions& options() const { return options_; }

 private:
  friend class LogBatch;
  EventLog(const LogOptions& options);
  absl::Status LoadHead();
  // Every write after Open but the projection rebuild's chunks (no WAL) and
  // GuardMemtable goes through here: it refuses writes while a storage fault
  // stands, and records one when RocksDB refuses a write with an I/O error.
  absl::Status Write(rocksdb::WriteBatch* batch, bool sync, std::string_view what);
  // A write to the memtable alone, so that at least one memtable holds data: see
  // event_log.cc.
  absl::Status GuardMemtable();
  // The number of the WAL file RocksDB writes to.
  absl::StatusOr<uint64_t> CurrentWalNumber() const;

  LogOptions options_;
  int format_ = 2;  // the store's format (docs/log-format.md): 1 or 2
  std::string secondary_dir_;  // read_only: RocksDB's secondary directory
  std::unique_ptr<rocksdb::DB> db_;
  // Guards the projection generation in force and the handles list, which a
  // rebuild changes while readers (queries on other threads) use them. Handles of
  // a dropped generation stay open until the log closes, so a reader still on the
  // old generation reads it whole.
  mutable absl::Mutex generation_mu_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* log_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* event_ids_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* customers_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* sources_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* dead_letters_cf_ = nullptr;
  // The projection column families in force, by LogBatch::ProjectionCf.
  std::array<rocksdb::ColumnFamilyHandle*, LogBatch::kProjectionCfCount> projection_cfs_
      ABSL_GUARDED_BY(generation_mu_){};
  uint64_t projection_generation_ ABSL_GUARDED_BY(generation_mu_) = 0;
  // The handle to read `cf` through: the snapshot's generation if one is given.
  rocksdb::ColumnFamilyHandle* ProjectionHandle(LogBatch::ProjectionCf cf,
                                                const LogSnapshot* snapshot = nullptr) const {
    const int i = static_cast<int>(cf);
    if (snapshot != nullptr && snapshot->projection_cfs_[0] != nullptr) {
      return snapshot->projection_cfs_[i];
    }
    absl::MutexLock lock(&generation_mu_);
    return projection_cfs_[i];
  }

  // RocksDB's info log (internal/info_log.h) and what RocksDB reports of its
  // background errors; writers only.
  std::shared_ptr<internal::InfoLog> info_log_;
  std::shared_ptr<internal::StoreListener> listener_;
  // Held across each write, so that no write slips through between a fault and its
  // recording (after RocksDB's own recovery, a write could reach a WAL writer that
  // RocksDB 7.8 keeps poisoned; see ResumeWrites).
  mutable absl::Mutex write_mu_;
  absl::Status write_fault_ ABSL_GUARDED_BY(write_mu_);
  bool write_fault_final_ ABSL_GUARDED_BY(write_mu_) = false;  // FailedPrecondition
  // The WAL file in use when a WAL write failed (RocksDB's kWriteCallback), if one did.
  std::optional<uint64_t> wal_at_fault_ ABSL_GUARDED_BY(write_mu_);

  // The data size of the last batch committed: what the next one reserves.
  std::atomic<size_t> last_batch_bytes_{0};
  mutable absl::Mutex head_mu_;
  LogHead head_ ABSL_GUARDED_BY(head_mu_);
  // The head the batch being written makes, while Commit writes it: a snapshot taken
  // meanwhile holds either all of that batch or none of it (TakeSnapshot).
  std::optional<LogHead> committing_ ABSL_GUARDED_BY(head_mu_);
  // The view SharedSnapshot hands out. Lock order: shared_mu_, generation_mu_,
  // head_mu_.
  mutable absl::Mutex shared_mu_;
  mutable std::shared_ptr<const LogSnapshot> shared_ ABSL_GUARDED_BY(shared_mu_);
  mutable absl::CondVar head_moved_;
};

// The length of a chain hash (SHA-256).
inline constexpr size_t kChainHashBytes = 32;

// A stored log value split into the record's encoding and the chain hash stored
// with it (empty if none). Format 1: the record followed by its hash. Format 2: one
// byte, kValueWithHash or kValueWithoutHash, then the record, then the hash if the
// byte says so. False if the value is malformed.
inline constexpr char kValueWithoutHash = 0;
inline constexpr char kValueWithHash = 1;
bool SplitLogValue(int format, std::string_view value, std::string_view* record,
                   std::string_view* hash);

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_EVENT_LOG_H_
