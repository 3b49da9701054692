#include "engine/event_log.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/internal/info_log.h"
#include "engine/internal/keys.h"
#include "engine/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "rocksdb/transaction_log.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace loyalty {

namespace internal {

// What RocksDB reports of its background errors that EventLog needs to know:
// whether the write that failed was a WAL write (see EventLog::ResumeWrites).
class StoreListener final : public rocksdb::EventListener {
 public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status*) override {
    if (reason == rocksdb::BackgroundErrorReason::kWriteCallback) wal_write_failed_ = true;
  }
  // Whether a WAL write failed since the last call.
  bool TakeWalWriteFailed() { return wal_write_failed_.exchange(false); }

 private:
  std::atomic<bool> wal_write_failed_{false};
};

}  // namespace internal

namespace {

constexpr char kFormatKey[] = "format";
// Format 1 stored every record with its chain hash; format 2 (new stores since
// 2026-12-03) only the last record of each batch (docs/log-format.md).
constexpr char kFormat1[] = "loyalty-log-v1";
constexpr char kFormat2[] = "loyalty-log-v2";
constexpr int kNewStoreFormat = 2;

const char* FormatValue(int format) { return format == 1 ? kFormat1 : kFormat2; }

constexpr char kLogCf[] = "log";
constexpr char kEventIdsCf[] = "event_ids";
constexpr char kCustomersCf[] = "customers";
constexpr char kSourcesCf[] = "sources";
constexpr char kDeadLettersCf[] = "dead_letters";
constexpr char kGenerationKey[] = "projection_generation";

// The projection column families' names, by LogBatch::ProjectionCf. They come in
// generations: generation 0 has the plain names, generation N the names with ".N".
constexpr std::array<const char*, LogBatch::kProjectionCfCount> kProjectionCfNames = {
    "customer_state", "projection_meta", "decision_ids", "state_chunks"};
std::string ProjectionCfName(int cf, uint64_t generation) {
  return generation == 0 ? kProjectionCfNames[cf]
                         : absl::StrCat(kProjectionCfNames[cf], ".", generation);
}
// Which projection column family `name` is of (any generation), or -1.
int ProjectionCfOf(const std::string& name) {
  for (int cf = 0; cf < LogBatch::kProjectionCfCount; ++cf) {
    const std::string base = kProjectionCfNames[cf];
    if (name == base || absl::StartsWith(name, base + ".")) return cf;
  }
  return -1;
}
bool IsProjectionCf(const std::string& name) { return ProjectionCfOf(name) >= 0; }

// A reader of a store whose projections predate a column family (the writer
// creates it when it opens the store).
absl::Status OutdatedProjections() {
  return absl::FailedPreconditionError(
      "the store's projections are from an older engine: open it for writing once (`loyalty "
      "serve` rebuilds them, or run `loyalty replay rebuild`)");
}

// EventLog::wal_at_fault_ when the WAL file of a failed write is not known.
constexpr uint64_t kUnknownWal = UINT64_MAX;

// The column families every store has, first in the list Open passes RocksDB.
constexpr size_t kFixedCfCount = 6;

// A new batch reserves at most this much for its write batch.
constexpr size_t kMaxReservedBatchBytes = 64 << 20;

// Puts per rebuild write: bounds the rebuild's memory.
constexpr size_t kRebuildBatchPuts = 10'000;

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTryAgain()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

rocksdb::ColumnFamilyOptions LogCfOptions(const LogOptions& options) {
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = options.write_buffer_bytes;
  cf.compression = rocksdb::kLZ4Compression;
  cf.bottommost_compression = rocksdb::kZSTD;
  // Records share most of their bytes with each other (field names, ids, times):
  // a ZSTD dictionary trained per table file shrinks them further at the bottom.
  cf.bottommost_compression_opts.enabled = true;
  cf.bottommost_compression_opts.max_dict_bytes = 16 << 10;
  cf.bottommost_compression_opts.zstd_max_train_bytes = 100 * (16 << 10);
  // Level 6 at the bottom (the ZSTD default is 3) in 32 KiB blocks: on 1M JSON
  // events, 145.9 bytes/event in all against 146.6 with level 9 in 16 KiB blocks
  // (run N's choice), for 42% less CPU in the compactions that write them (7.7
  // against 13.3 s for the whole log; docs/benchmarks.md, run V). 64 KiB blocks
  // saved a little more (144.3, 6.8 s), but a record read alone (a customer's
  // history, a balance as of a past time) decompresses a whole block.
  cf.bottommost_compression_opts.level = 6;
  // The dictionary is sampled from an output file's first 8 MiB of blocks, which
  // are held uncompressed until it is trained: without a bound, a file's whole
  // target size (64 MiB) per running compaction.
  cf.bottommost_compression_opts.max_dict_buffer_bytes = 8 << 20;
  rocksdb::BlockBasedTableOptions table;
  table.block_size = 32 * 1024;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

// Index column families are point-looked-up for keys that mostly do not exist:
// whole-key bloom filters in the tables and the memtable answer those quickly.
rocksdb::ColumnFamilyOptions IndexCfOptions(const LogOptions& options) {
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = options.write_buffer_bytes;
  cf.compression = rocksdb::kLZ4Compression;
  // ZSTD where most of the bytes end up: customer states 41.3 -> 33.9 bytes/event,
  // the event-id index 24.1 -> 20.8 (run N).
  cf.bottommost_compression = rocksdb::kZSTD;
  cf.memtable_prefix_bloom_size_ratio = 0.1;
  cf.memtable_whole_key_filtering = true;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return cf;
}

rocksdb::ReadOptions Ro(const LogSnapshot* snapshot) {
  rocksdb::ReadOptions ro;
  if (snapshot != nullptr) ro.snapshot = snapshot->rocks();
  return ro;
}

// The head of a log whose iterator `it` is at its last record (or invalid: empty).
absl::StatusOr<LogHead> HeadAt(int format, rocksdb::Iterator* it) {
  LogHead head;
  if (it->Valid()) {
    auto seq = internal::ParseSeqKey(it->key().ToStringView());
    std::string_view record, hash;
    if (!seq.has_value() || !SplitLogValue(format, it->value().ToStringView(), &record, &hash) ||
        hash.empty()) {
      return absl::DataLossError(
          "the last log record is malformed or carries no chain hash; run `loyalty replay verify`");
    }
    head.seq = *seq;
    std::copy_n(hash.data(), kChainHashBytes, head.hash.begin());
  }
  LOYALTY_RETURN_IF_ERROR(FromRocks(it->status(), "reading the log head"));
  return head;
}

}  // namespace

LogSnapshot::~LogSnapshot() { db_->ReleaseSnapshot(snapshot_); }

// ---------------------------------------------------------------- LogBatch

LogBatch::LogBatch(const EventLog* log, uint64_t first_seq, const Sha256Digest& prev_hash,
                   size_t reserve_bytes)
    : log_(log),
      first_seq_(first_seq),
      next_seq_(first_seq),
      head_hash_(prev_hash),
      write_batch_(std::make_unique<rocksdb::WriteBatch>(reserve_bytes)) {}

LogBatch::~LogBatch() = default;
LogBatch::LogBatch(LogBatch&&) = default;
LogBatch& LogBatch::operator=(LogBatch&&) = default;

uint64_t LogBatch::Append(v1::LogRecord* record) {
  const uint64_t seq = next_seq_++;
  record->set_seq(seq);
  std::string bytes = SerializeDeterministic(*record);
  head_hash_ = Sha256Of2(DigestView(head_hash_), bytes);
  // A rocksdb::WriteBatch::Put into memory fails only past its 4 GiB size limit,
  // which batches bounded by the ingest limits never reach.
  if (log_->format_ == 1) {
    bytes.append(DigestView(head_hash_));
    write_batch_->Put(log_->log_cf_, internal::SeqKey(seq), bytes).PermitUncheckedError();
    return seq;
  }
  // Format 2: the record before this one is not the batch's last; it is stored
  // without its hash (Commit stores the last one's).
  if (!last_value_.empty()) {
    write_batch_->Put(log_->log_cf_, internal::SeqKey(seq - 1), last_value_).PermitUncheckedError();
  }
  last_value_.assign(1, kValueWithoutHash);
  last_value_.append(bytes);
  return seq;
}

void LogBatch::IndexEventId(std::string_view event_id, uint64_t seq) {
  std::string value;
  internal::PutBigEndian64(&value, seq);
  event_id_puts_.emplace_back(std::string(event_id), std::move(value));
}

void LogBatch::IndexCustomer(std::string_view customer_id, uint64_t seq) {
  auto it = customer_seqs_.find(absl::string_view(customer_id.data(), customer_id.size()));
  if (it == customer_seqs_.end()) it = customer_seqs_.try_emplace(std::string(customer_id)).first;
  it->second.push_back(seq);
}

void LogBatch::IndexDeadLetter(const v1::SourcePosition& position, uint64_t seq,
                               std::string_view raw_sha256) {
  std::string value;
  internal::PutBigEndian64(&value, seq);
  value.append(raw_sha256);
  write_batch_->Put(log_->dead_letters_cf_, internal::PositionKey(position), value)
      .PermitUncheckedError();  // in-memory batch: see Append
}

void LogBatch::Put(ProjectionCf cf, std::string_view key, std::string_view value) {
  write_batch_->Put(log_->ProjectionHandle(cf), rocksdb::Slice(key.data(), key.size()),
                    rocksdb::Slice(value.data(), value.size()))
      .PermitUncheckedError();  // in-memory batch: see Append
}

void LogBatch::Delete(ProjectionCf cf, std::string_view key) {
  write_batch_->Delete(log_->ProjectionHandle(cf), rocksdb::Slice(key.data(), key.size()))
      .PermitUncheckedError();  // in-memory batch: see Append
}

void LogBatch::IndexDeadLetterEventId(std::string_view event_id, uint64_t seq) {
  std::string key = internal::DeadLetterEventKey(event_id);
  internal::PutBigEndian64(&key, seq);
  write_batch_->Put(log_->dead_letters_cf_, key, rocksdb::Slice())
      .PermitUncheckedError();  // in-memory batch: see Append
}

void LogBatch::SetSourcePosition(const v1::SourcePosition& position) {
  source_positions_[internal::SourceKey(position)] = SerializeDeterministic(position);
}

// ---------------------------------------------------------------- EventLog

EventLog::EventLog(const LogOptions& options) : options_(options) {}

EventLog::~EventLog() {
  {
    // The shared view's snapshot is released before the store closes.
    absl::MutexLock lock(&shared_mu_);
    shared_.reset();
  }
  if (db_ != nullptr) {
    for (auto* h : handles_) {
      // Closing a handle of an open DB does not fail in practice; nothing could
      // be done about it at destruction anyway.
      db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
    db_->Close().PermitUncheckedError();  // see above
    db_.reset();
  }
  if (!secondary_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(secondary_dir_, ec);  // a leftover temp dir is harmless
  }
}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(const LogOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("no data directory given");
  std::unique_ptr<EventLog> log(new EventLog(options));

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = !options.read_only;
  db_options.create_missing_column_families = !options.read_only;
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1 << 20;
  db_options.db_write_buffer_size = options.memtable_budget_bytes;
  if (options.env != nullptr) db_options.env = options.env;
  if (!options.read_only) {
    log->info_log_ = std::make_shared<internal::InfoLog>();
    db_options.info_log = log->info_log_;
    log->listener_ = std::make_shared<internal::StoreListener>();
    db_options.listeners.push_back(log->listener_);
  }

  // The fixed column families, the first generation of projections for a new
  // store, and whatever projection generations the store already has.
  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName, kLogCf, kEventIdsCf,
                                    kCustomersCf, kSourcesCf, kDeadLettersCf};
  static_assert(kFixedCfCount == 6);
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, options.data_dir, &existing).ok()) {
    for (const auto& name : existing) {
      if (IsProjectionCf(name)) names.push_back(name);
    }
  }
  if (existing.empty()) {
    for (const char* name : kProjectionCfNames) names.push_back(name);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& name : names) {
    cfs.emplace_back(name, name == kLogCf ? LogCfOptions(options) : IndexCfOptions(options));
  }

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  if (options.read_only) {
    if (!std::filesystem::exists(std::filesystem::path(options.data_dir) / "CURRENT")) {
      return absl::NotFoundError(
          absl::StrCat("no event log in ", options.data_dir));
    }
    // A writer creates the column families one by one: one killed while creating
    // them leaves a store without some (the next writer finishes the job).
    for (size_t i = 0; i < kFixedCfCount; ++i) {
      if (std::find(existing.begin(), existing.end(), names[i]) == existing.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            options.data_dir, " holds no initialized event log (its creation did not finish)"));
      }
    }
    char tmpl[] = "/tmp/loyalty-reader-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return absl::InternalError("cannot create a temporary directory for the reader");
    }
    log->secondary_dir_ = tmpl;
    db_options.max_open_files = -1;  // a secondary must keep every file it uses open
    s = rocksdb::DB::OpenAsSecondary(db_options, options.data_dir, log->secondary_dir_,
                                     cfs, &log->handles_, &raw);
  } else {
    s = rocksdb::DB::Open(db_options, options.data_dir, cfs, &log->handles_, &raw);
  }
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", options.data_dir,
          " is in use by another process writing it (", s.ToString(), ")"));
    }
    return FromRocks(s, absl::StrCat("opening the event log in ", options.data_dir));
  }
  log->db_.reset(raw);
  if (log->info_log_ != nullptr) {
    // RocksDB, too, runs on without an info log when it cannot create one; the
    // lines stay in memory, bounded.
    log->info_log_->Open(options.data_dir).IgnoreError();
  }
  log->log_cf_ = log->handles_[1];
  log->event_ids_cf_ = log->handles_[2];
  log->customers_cf_ = log->handles_[3];
  log->sources_cf_ = log->handles_[4];
  log->dead_letters_cf_ = log->handles_[5];

  // The format key is written last when a store is created: without it, the
  // store's creation did not finish (a writer killed while creating its column
  // families, one by one), and this writer finishes it.
  std::string format;
  s = log->db_->Get(rocksdb::ReadOptions(), log->handles_[0], kFormatKey, &format);
  const bool initialized = s.ok();
  if (s.IsNotFound()) {
    if (options.read_only) {
      return absl::FailedPreconditionError(
          absl::StrCat(options.data_dir, " holds no initialized event log"));
    }
  } else if (!s.ok()) {
    return FromRocks(s, "reading the log format");
  } else if (format == kFormat1) {
    log->format_ = 1;
  } else if (format == kFormat2) {
    log->format_ = 2;
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        options.data_dir, " holds a log of format '", format, "'; this engine reads '",
        kFormat1, "' and '", kFormat2, "'"));
  }
  if (!initialized) log->format_ = kNewStoreFormat;

  std::string generation;
  s = log->db_->Get(rocksdb::ReadOptions(), log->handles_[0], kGenerationKey, &generation);
  if (s.ok()) {
    if (!absl::SimpleAtoi(generation, &log->projection_generation_)) {
      return absl::DataLossError("the projection generation does not parse");
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading the projection generation");
  }
  std::vector<size_t> stale;
  for (size_t i = 0; i < names.size(); ++i) {
    const int cf = ProjectionCfOf(names[i]);
    if (cf < 0) continue;
    if (names[i] == ProjectionCfName(cf, log->projection_generation_)) {
      log->projection_cfs_[cf] = log->handles_[i];
    } else {
      stale.push_back(i);
    }
  }
  // Creates projection column family `cf` of the store's generation.
  auto create = [&](int cf, const char* what) -> absl::Status {
    rocksdb::ColumnFamilyHandle* h = nullptr;
    LOYALTY_RETURN_IF_ERROR(FromRocks(
        log->db_->CreateColumnFamily(IndexCfOptions(options),
                                     ProjectionCfName(cf, log->projection_generation_), &h),
        what));
    log->handles_.push_back(h);
    log->projection_cfs_[cf] = h;
    return absl::OkStatus();
  };
  using Cf = LogBatch::ProjectionCf;
  const int ids_cf = static_cast<int>(Cf::kDecisionIds);
  const int chunks_cf = static_cast<int>(Cf::kStateChunks);
  // A store from before decision_ids (projection version 2) or state_chunks
  // (version 4) existed: its projections are outdated and are rebuilt
  // (tools/serve_command.cc); until then the new column family stays empty.
  const bool has_states = log->projection_cfs_[static_cast<int>(Cf::kCustomerState)] != nullptr;
  for (int cf : {ids_cf, chunks_cf}) {
    if (log->projection_cfs_[cf] == nullptr && !options.read_only && has_states) {
      LOYALTY_RETURN_IF_ERROR(create(cf, absl::StrCat("creating the ", kProjectionCfNames[cf],
                                                      " column family")
                                             .c_str()));
    }
  }
  for (int cf = 0; cf < LogBatch::kProjectionCfCount && !initialized; ++cf) {
    if (log->projection_cfs_[cf] == nullptr) {
      LOYALTY_RETURN_IF_ERROR(create(cf, "creating the projections of a new store"));
    }
  }
  for (int cf = 0; cf < LogBatch::kProjectionCfCount; ++cf) {
    if (log->projection_cfs_[cf] == nullptr &&
        !(options.read_only && (cf == ids_cf || cf == chunks_cf))) {
      return absl::DataLossError(absl::StrCat("the projections of generation ",
                                              log->projection_generation_, " are missing ",
                                              kProjectionCfNames[cf]));
    }
  }
  if (!options.read_only) {
    // Leftovers of an earlier generation or an unfinished rebuild.
    for (size_t i : stale) {
      LOYALTY_RETURN_IF_ERROR(FromRocks(log->db_->DropColumnFamily(log->handles_[i]),
                                        "dropping stale projections"));
    }
  }

  if (!initialized) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    LOYALTY_RETURN_IF_ERROR(FromRocks(
        log->db_->Put(wo, log->handles_[0], kFormatKey, FormatValue(log->format_)),
        "initializing the log"));
  }
  LOYALTY_RETURN_IF_ERROR(log->LoadHead());
  if (!options.read_only) LOYALTY_RETURN_IF_ERROR(log->GuardMemtable());
  return log;
}

absl::Status EventLog::Write(rocksdb::WriteBatch* batch, bool sync, std::string_view what) {
  absl::MutexLock lock(&write_mu_);
  if (!write_fault_.ok()) return write_fault_;
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  const rocksdb::Status s = db_->Write(wo, batch);
  if (s.ok()) return absl::OkStatus();
  if (!s.IsIOError()) return FromRocks(s, std::string(what));
  write_fault_ = absl::UnavailableError(
      absl::StrCat("the store refused a write (", std::string(what), ": ", s.ToString(), ")"));
  if (listener_ != nullptr && listener_->TakeWalWriteFailed()) {
    absl::StatusOr<uint64_t> wal = CurrentWalNumber();
    // Without the number, ResumeWrites cannot tell the failed WAL writer from a new
    // one, and takes it for the failed one.
    wal_at_fault_ = wal.ok() ? *wal : kUnknownWal;
  }
  return write_fault_;
}

// RocksDB 7.8 recovers from a failed WAL write by flushing every memtable that
// holds data, and it starts a new WAL file only when it flushes one. With every
// memtable empty (as right after opening, and after a recovery, which flushed them
// all), it would carry on with the WAL writer whose write failed, which refuses
// every later write (RocksDB issues #11643 and #12998; Debian's build asserts on it
// and aborts the process). So after opening and after each recovery the default
// column family's memtable gets a write: the format key, rewritten with its own
// value, to the memtable only (the value never changes, so a crash that loses this
// write loses nothing). ResumeWrites checks the WAL file anyway: RocksDB may flush
// every memtable on its own too.
absl::Status EventLog::GuardMemtable() {
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  return FromRocks(db_->Put(wo, handles_[0], kFormatKey, FormatValue(format_)),
                   "writing the format key to the memtable");
}

absl::StatusOr<uint64_t> EventLog::CurrentWalNumber() const {
  std::unique_ptr<rocksdb::LogFile> file;
  LOYALTY_RETURN_IF_ERROR(
      FromRocks(db_->GetCurrentWalFile(&file), "finding the current WAL file"));
  return file->LogNumber();
}

absl::Status EventLog::write_fault() const {
  absl::MutexLock lock(&write_mu_);
  return write_fault_;
}

absl::Status EventLog::ResumeWrites() {
  absl::MutexLock lock(&write_mu_);
  if (write_fault_.ok() || write_fault_final_) return write_fault_;
  auto final_fault = [this](const std::string& why) {
    write_fault_ = absl::FailedPreconditionError(absl::StrCat(
        write_fault_.message(), "; RocksDB cannot recover from it in-process (", why,
        "): restart the engine once the fault is fixed (it resumes exactly before the "
        "failed batch)"));
    write_fault_final_ = true;
    return write_fault_;
  };
  // With a full disk, RocksDB's own recovery is under way from the first failed
  // write on (its SstFileManager polls free space every 5 s); Resume() then answers
  // Busy, and OK once it has recovered. Fatal errors have no recovery: Resume()
  // answers them at once. RocksDB's own recovery is left on rather than driven from
  // here: with it turned off, once a Resume() had failed on the full disk, the next
  // one hung waiting for a flush, even with room again.
  const rocksdb::Status s = db_->Resume();
  if (s.IsBusy()) {
    return absl::UnavailableError(absl::StrCat(
        write_fault_.message(), "; RocksDB resumes writing by itself once ",
        options_.write_buffer_bytes >> 20, " MiB are free on the data directory's filesystem"));
  }
  if (!s.ok()) {
    if (s.severity() >= rocksdb::Status::Severity::kFatalError) return final_fault(s.ToString());
    return absl::UnavailableError(
        absl::StrCat(write_fault_.message(), "; resuming failed: ", s.ToString()));
  }
  if (wal_at_fault_.has_value()) {
    absl::StatusOr<uint64_t> wal = CurrentWalNumber();
    if (!wal.ok() || *wal_at_fault_ == kUnknownWal || *wal == *wal_at_fault_) {
      return final_fault(
          "RocksDB 7.8 resumed on the WAL file whose write failed, and refuses to write it "
          "again");
    }
  }
  if (absl::Status guard = GuardMemtable(); !guard.ok()) {
    return absl::UnavailableError(absl::StrCat(write_fault_.message(), "; ", guard.message()));
  }
  write_fault_ = absl::OkStatus();
  wal_at_fault_.reset();
  return absl::OkStatus();
}

absl::Status EventLog::LoadHead() {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), log_cf_));
  it->SeekToLast();
  LOYALTY_ASSIGN_OR_RETURN(LogHead head, HeadAt(format_, it.get()));
  absl::MutexLock lock(&head_mu_);
  head_ = head;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LogSnapshot>> EventLog::TakeSnapshot() const {
  std::unique_ptr<LogSnapshot> snap;
  std::optional<LogHead> committing;
  {
    // The snapshot, the generation it reads and the head are taken together. The
    // head is not looked up in the snapshot: the last log key of a snapshot taken
    // while a batch is inserted into the memtable lies behind the batch's records
    // already inserted, which a backward seek steps over one by one (a third of a
    // balance query's CPU while ingesting).
    absl::MutexLock lock(&generation_mu_);
    absl::MutexLock head_lock(&head_mu_);
    snap.reset(new LogSnapshot(db_.get(), db_->GetSnapshot()));
    snap->projection_cfs_ = projection_cfs_;
    snap->generation_ = projection_generation_;
    snap->head_ = head_;
    committing = committing_;
  }
  if (options_.read_only) {
    // A reader that follows another process's writes (CatchUp) moves its head after
    // the store: its snapshot's head is its last log key.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Ro(snap.get()), log_cf_));
    it->SeekToLast();
    LOYALTY_ASSIGN_OR_RETURN(snap->head_, HeadAt(format_, it.get()));
  } else if (committing.has_value()) {
    // A batch being written became visible before the snapshot or did not: all of
    // it or none (one atomic write), so its last record tells.
    std::string value;
    const rocksdb::Status s =
        db_->Get(Ro(snap.get()), log_cf_, internal::SeqKey(committing->seq), &value);
    if (s.ok()) {
      snap->head_ = *committing;
    } else if (!s.IsNotFound()) {
      LOYALTY_RETURN_IF_ERROR(FromRocks(s, "reading the log head"));
    }
  }
  return snap;
}

absl::StatusOr<std::shared_ptr<const LogSnapshot>> EventLog::SharedSnapshot() const {
  absl::MutexLock lock(&shared_mu_);
  if (shared_ != nullptr) {
    absl::MutexLock generation_lock(&generation_mu_);
    absl::MutexLock head_lock(&head_mu_);
    if (shared_->generation_ == projection_generation_ && shared_->head_.seq == head_.seq) {
      return shared_;
    }
  }
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, TakeSnapshot());
  shared_ = std::move(snap);
  return shared_;
}

bool EventLog::WaitForSeq(uint64_t seq, absl::Duration timeout) const {
  // A timeout is elapsed time: measured on the monotonic clock.
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  absl::MutexLock lock(&head_mu_);
  while (head_.seq < seq) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    head_moved_.WaitWithTimeout(&head_mu_, absl::FromChrono(left));
  }
  return true;
}

LogHead EventLog::head() const {
  absl::MutexLock lock(&head_mu_);
  return head_;
}

LogBatch EventLog::NewBatch() const { return NewBatchAfter(head()); }

LogBatch EventLog::NewBatchAfter(const LogHead& h) const {
  // Batches are alike in size: room for the last one's bytes (and a quarter more)
  // spares the write batch its regrowth copies, megabytes each with hot states.
  const size_t last = last_batch_bytes_.load(std::memory_order_relaxed);
  return LogBatch(this, h.seq + 1, h.hash, std::min(last + last / 4, kMaxReservedBatchBytes));
}

absl::Status EventLog::Commit(LogBatch batch) {
  if (options_.read_only) return absl::FailedPreconditionError("the log is open read-only");
  const LogHead before = head();
  if (batch.first_seq_ != before.seq + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "batch starts at ", batch.first_seq_, " but the head is ", before.seq));
  }
  rocksdb::WriteBatch* wb = batch.write_batch_.get();
  if (!batch.last_value_.empty()) {
    // Format 2: the batch's last record carries the chain hash, so the log's last
    // record always does.
    batch.last_value_[0] = kValueWithHash;
    batch.last_value_.append(DigestView(batch.head_hash_));
    wb->Put(log_cf_, internal::SeqKey(batch.last_seq()), batch.last_value_)
        .PermitUncheckedError();  // in-memory batch
  }
  // Sorted index keys let the memtable reuse its insertion point between puts.
  std::sort(batch.event_id_puts_.begin(), batch.event_id_puts_.end());
  for (const auto& [k, v] : batch.event_id_puts_) {
    wb->Put(event_ids_cf_, k, v).PermitUncheckedError();  // in-memory batch
  }
  std::vector<const std::pair<const std::string, std::vector<uint64_t>>*> by_customer;
  by_customer.reserve(batch.customer_seqs_.size());
  for (const auto& entry : batch.customer_seqs_) by_customer.push_back(&entry);
  std::sort(by_customer.begin(), by_customer.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  for (const auto* entry : by_customer) {
    const auto& [customer, seqs] = *entry;
    std::string value;
    PutVarint(&value, seqs.size());
    uint64_t prev = seqs.front();
    for (size_t i = 1; i < seqs.size(); ++i) {
      PutVarint(&value, seqs[i] - prev);
      prev = seqs[i];
    }
    wb->Put(customers_cf_, internal::CustomerKey(customer, seqs.front()), value)
        .PermitUncheckedError();  // in-memory batch
  }
  for (const auto& [k, v] : batch.source_positions_) {
    wb->Put(sources_cf_, k, v).PermitUncheckedError();  // in-memory batch
  }
  {
    absl::MutexLock lock(&head_mu_);
    committing_ = LogHead{batch.last_seq(), batch.head_hash_};
  }
  const absl::Status written = Write(wb, options_.sync_writes, "writing a log batch");
  last_batch_bytes_.store(wb->GetDataSize(), std::memory_order_relaxed);
  absl::MutexLock lock(&head_mu_);
  if (written.ok()) {
    head_ = *committing_;
    head_moved_.SignalAll();
  }
  committing_.reset();
  return written;
}

absl::Status EventLog::LookupEventIds(const std::vector<std::string_view>& event_ids,
                                      std::vector<std::optional<EventIdEntry>>* out,
                                      const LogSnapshot* snapshot) const {
  out->assign(event_ids.size(), std::nullopt);
  if (event_ids.empty()) return absl::OkStatus();
  std::vector<rocksdb::Slice> keys;
  keys.reserve(event_ids.size());
  for (auto id : event_ids) keys.emplace_back(id.data(), id.size());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(Ro(snapshot), event_ids_cf_, keys.size(), keys.data(),
                values.data(), statuses.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    LOYALTY_RETURN_IF_ERROR(FromRocks(statuses[i], "looking up an event id"));
    std::string_view v = values[i].ToStringView();
    // Stores written before 2026-12-03 keep a 16-byte content digest after the
    // sequence number; it is not needed (the record holds the content).
    if (v.size() < 8) return absl::DataLossError("malformed event-id index entry");
    (*out)[i] = EventIdEntry{internal::GetBigEndian64(v)};
  }
  return absl::OkStatus();
}

absl::Status EventLog::LookupDeadLetters(
    const std::vector<std::string>& position_keys,
    std::vector<std::optional<DeadLetterEntry>>* out) const {
  out->assign(position_keys.size(), std::nullopt);
  for (size_t i = 0; i < position_keys.size(); ++i) {
    std::string v;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), dead_letters_cf_, position_keys[i], &v);
    if (s.IsNotFound()) continue;
    LOYALTY_RETURN_IF_ERROR(FromRocks(s, "looking up a dead-letter position"));
    if (v.size() < 8) return absl::DataLossError("malformed dead-letter index entry");
    (*out)[i] = DeadLetterEntry{internal::GetBigEndian64(v), v.substr(8)};
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> EventLog::DeadLettersOf(std::string_view event_id,
                                                              const LogSnapshot* snapshot) const {
  std::vector<uint64_t> out;
  const std::string prefix = internal::DeadLetterEventKey(event_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Ro(snapshot), dead_letters_cf_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 8) continue;
    out.push_back(internal::GetBigEndian64(it->key().ToStringView().substr(prefix.size())));
  }
  LOYALTY_RETURN_IF_ERROR(FromRocks(it->status(), "reading the dead-letter index"));
  return out;
}

absl::StatusOr<std::optional<v1::SourcePosition>> EventLog::SourcePositionOf(
    const v1::SourcePosition& position) const {
  std::string v;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), sources_cf_, internal::SourceKey(position), &v);
  if (s.IsNotFound()) return std::optional<v1::SourcePosition>();
  LOYALTY_RETURN_IF_ERROR(FromRocks(s, "reading a source position"));
  v1::SourcePosition out;
  if (!out.ParseFromString(v)) return absl::DataLossError("malformed source position");
  return std::optional<v1::SourcePosition>(std::move(out));
}

absl::StatusOr<std::vector<v1::SourcePosition>> EventLog::SourcePositions(
    const LogSnapshot* snapshot) const {
  std::vector<v1::SourcePosition> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Ro(snapshot), sources_cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    v1::SourcePosition p;
    if (!p.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed source position");
    }
    out.push_back(std::move(p));
  }
  LOYALTY_RETURN_IF_ERROR(FromRocks(it->status(), "listing source positions"));
  return out;
}

absl::Status EventLog::Scan(uint64_t from, uint64_t to, const ScanFn& fn,
                           const LogSnapshot* snapshot) const {
  if (from > to) return absl::OkStatus();
  rocksdb::ReadOptions ro = Ro(snapshot);
  ro.verify_checksums = true;
  ro.readahead_size = 2 << 20;
  std::string upper;
  rocksdb::Slice upper_slice;
  if (to < UINT64_MAX) {
    upper = internal::SeqKey(to + 1);
    upper_slice = rocksdb::Slice(upper);
    ro.iterate_upper_bound = &upper_slice;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, log_cf_));
  for (it->Seek(internal::SeqKey(from)); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    std::string_view value = it->value().ToStringView();
    auto seq = internal::ParseSeqKey(key);
    std::string_view record, hash;
    if (!SplitLogValue(format_, value, &record, &hash)) {
      return absl::DataLossError(
          absl::StrCat("the stored value of record ", seq.value_or(0), " is malformed"));
    }
    LOYALTY_RETURN_IF_ERROR(fn(seq.value_or(0), key, record, hash));
  }
  return FromRocks(it->status(), "reading the log");
}

absl::StatusOr<Sha256Digest> EventLog::ChainHashAt(uint64_t seq, const LogSnapshot* snapshot,
                                                   const LogHead* known) const {
  // Back from `seq` to the nearest record stored with its hash (or the start),
  // then forward, hashing.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Ro(snapshot), log_cf_));
  it->SeekForPrev(internal::SeqKey(seq));
  std::vector<std::string> after;  // records after the stored hash, newest first
  Sha256Digest hash{};
  bool found = false;
  for (; it->Valid(); it->Prev()) {
    auto at = internal::ParseSeqKey(it->key().ToStringView());
    std::string_view record, stored;
    if (!at.has_value() || !SplitLogValue(format_, it->value().ToStringView(), &record, &stored)) {
      return absl::DataLossError("a log record is malformed; run `loyalty replay verify`");
    }
    if (!found && *at != seq) return absl::NotFoundError(absl::StrCat("no record ", seq));
    found = true;
    if (known != nullptr && *at == known->seq && *at < seq) {
      hash = known->hash;
      break;
    }
    if (!stored.empty()) {
      std::copy_n(stored.data(), kChainHashBytes, hash.begin());
      break;
    }
    after.emplace_back(record);
  }
  LOYALTY_RETURN_IF_ERROR(FromRocks(it->status(), "reading the log"));
  if (!found) return absl::NotFoundError(absl::StrCat("no record ", seq));
  for (auto r = after.rbegin(); r != after.rend(); ++r) hash = Sha256Of2(DigestView(hash), *r);
  return hash;
}

bool SplitLogValue(int format, std::string_view value, std::string_view* record,
                   std::string_view* hash) {
  if (format == 1) {
    if (value.size() < kChainHashBytes) return false;
    *record = value.substr(0, value.size() - kChainHashBytes);
    *hash = value.substr(value.size() - kChainHashBytes);
    return true;
  }
  if (value.empty()) return false;
  if (value[0] == kValueWithoutHash) {
    *record = value.substr(1);
    *hash = {};
    return true;
  }
  if (value[0] != kValueWithHash || value.size() < 1 + kChainHashBytes) return false;
  *record = value.substr(1, value.size() - 1 - kChainHashBytes);
  *hash = value.substr(value.size() - kChainHashBytes);
  return true;
}

absl::StatusOr<v1::LogRecord> EventLog::Read(uint64_t seq, const LogSnapshot* snapshot) const {
  std::string value;
  rocksdb::Status s = db_->Get(Ro(snapshot), log_cf_, internal::SeqKey(seq), &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("no record ", seq));
  LOYALTY_RETURN_IF_ERROR(FromRocks(s, "reading a record"));
  v1::LogRecord record;
  std::string_view bytes, hash;
  if (!SplitLogValue(format_, value, &bytes, &hash) ||
      !record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat("record ", seq, " does not decode"));
  }
  return record;
}

absl::StatusOr<std::vector<uint64_t>> EventLog::CustomerSeqs(
    std::string_view customer_id, const LogSnapshot* snapshot) const {
  std::vector<uint64_t> out;
  const std::string prefix = internal::CustomerPrefix(customer_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Ro(snapshot), customers_cf_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view key = it->key().ToStringView();
    if (key.size() != prefix.size() + 8) continue;  // a longer id sharing the prefix
    uint64_t seq = internal::GetBigEndian64(key.substr(prefix.size()));
    std::string_view v = it->value().ToStringView();
    uint64_t count = 0;
    if (!GetVarint(&v, &count) || count == 0) {
      return absl::DataLossError("malformed customer index entry");
    }
    out.push_back(seq);
    for (uint64_t i = 1; i < count; ++i) {
      uint64_t delta = 0;
      if (!GetVarint(&v, &delta)) return absl::DataLossError("malformed customer index entry");
      seq += delta;
      out.push_back(seq);
    }
  }
  LOYALTY_RETURN_IF_ERROR(FromRocks(it->status(), "reading the customer index"));
  return out;
}

ProjectionRebuild::ProjectionRebuild(rocksdb::DB* db, uint64_t generation)
    : db_(db), generation_(generation), pending_(std::make_unique<rocksdb::WriteBatch>()) {}

ProjectionRebuild::~ProjectionRebuild() = default;

absl::Status ProjectionRebuild::Put(LogBatch::ProjectionCf cf, std::string_view key,
                                    std::string_view value) {
  pending_->Put(cfs_[static_cast<int>(cf)], rocksdb::Slice(key.data(), key.size()),
                rocksdb::Slice(value.data(), value.size()))
      .PermitUncheckedError();  // in-memory batch, bounded by kRebuildBatchPuts
  return ++pending_puts_ >= kRebuildBatchPuts ? Flush() : absl::OkStatus();
}

absl::Status ProjectionRebuild::Flush() {
  if (pending_puts_ == 0) return absl::OkStatus();
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;  // the switch flushes the new column families first
  LOYALTY_RETURN_IF_ERROR(FromRocks(db_->Write(wo, pending_.get()), "writing rebuilt projections"));
  pending_->Clear();
  pending_puts_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<std::string> EventLog::GetMeta(std::string_view name) const {
  std::string value;
  const std::string key = absl::StrCat("meta/", std::string(name));
  LOYALTY_RETURN_IF_ERROR(
      FromRocks(db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), key, &value), "reading meta"));
  return value;
}

absl::Status EventLog::PutMeta(std::string_view name, std::string_view value) {
  if (options_.read_only) return absl::FailedPreconditionError("the log is open read-only");
  const std::string key = absl::StrCat("meta/", std::string(name));
  rocksdb::WriteBatch batch;
  // An in-memory batch: see LogBatch::Append.
  batch.Put(db_->DefaultColumnFamily(), key, rocksdb::Slice(value.data(), value.size()))
      .PermitUncheckedError();
  return Write(&batch, /*sync=*/true, "writing meta");
}

uint64_t EventLog::ApproximateBytes() const {
  uint64_t total = 0;
  absl::MutexLock lock(&generation_mu_);
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) total += v;
  }
  rocksdb::VectorLogPtr files;
  if (db_->GetSortedWalFiles(files).ok()) {
    for (const auto& f : files) total += f->SizeFileBytes();
  }
  return total;
}

absl::StatusOr<std::unique_ptr<ProjectionRebuild>> EventLog::BeginProjectionRebuild() {
  if (options_.read_only) return absl::FailedPreconditionError("the log is open read-only");
  std::unique_ptr<ProjectionRebuild> r(
      new ProjectionRebuild(db_.get(), projection_generation() + 1));
  const rocksdb::ColumnFamilyOptions options = IndexCfOptions(options_);
  for (int cf = 0; cf < LogBatch::kProjectionCfCount; ++cf) {
    LOYALTY_RETURN_IF_ERROR(
        FromRocks(db_->CreateColumnFamily(options, ProjectionCfName(cf, r->generation_),
                                          &r->cfs_[cf]),
                  "creating the rebuild's column families"));
    absl::MutexLock lock(&generation_mu_);
    handles_.push_back(r->cfs_[cf]);
  }
  return r;
}

absl::Status EventLog::CommitProjectionRebuild(std::unique_ptr<ProjectionRebuild> r) {
  // Everything the rebuild wrote is made durable before the switch that exposes it.
  LOYALTY_RETURN_IF_ERROR(r->Flush());
  LOYALTY_RETURN_IF_ERROR(
      FromRocks(db_->Flush(rocksdb::FlushOptions(),
                           std::vector<rocksdb::ColumnFamilyHandle*>(r->cfs_.begin(), r->cfs_.end())),
                "flushing rebuilt projections"));
  rocksdb::WriteBatch generation;
  // An in-memory batch: see LogBatch::Append.
  generation.Put(db_->DefaultColumnFamily(), kGenerationKey, absl::StrCat(r->generation_))
      .PermitUncheckedError();
  std::array<rocksdb::ColumnFamilyHandle*, LogBatch::kProjectionCfCount> old;
  {
    // A snapshot is taken either before the switch (and reads the old generation
    // whole) or after it (and reads the new one whole).
    absl::MutexLock lock(&generation_mu_);
    LOYALTY_RETURN_IF_ERROR(
        Write(&generation, /*sync=*/true, "switching to the rebuilt projections"));
    old = projection_cfs_;
    projection_cfs_ = r->cfs_;
    projection_generation_ = r->generation_;
  }
  // The old generation is no longer read; a failure here leaves it to be dropped
  // on the next open.
  for (rocksdb::ColumnFamilyHandle* h : old) {
    if (h != nullptr) db_->DropColumnFamily(h).PermitUncheckedError();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> EventLog::GetProjection(LogBatch::ProjectionCf cf,
                                                   std::string_view key,
                                                   const LogSnapshot* snapshot) const {
  rocksdb::ColumnFamilyHandle* h = ProjectionHandle(cf, snapshot);
  if (h == nullptr) return OutdatedProjections();
  std::string value;
  rocksdb::Status s = db_->Get(Ro(snapshot), h,
                               rocksdb::Slice(key.data(), key.size()), &value);
  LOYALTY_RETURN_IF_ERROR(FromRocks(s, "reading projection state"));
  return value;
}

absl::Status EventLog::ScanProjection(
    LogBatch::ProjectionCf cf,
    const std::function<absl::Status(std::string_view, std::string_view)>& fn,
    const LogSnapshot* snapshot, std::string_view start) const {
  rocksdb::ColumnFamilyHandle* h = ProjectionHandle(cf, snapshot);
  if (h == nullptr) return OutdatedProjections();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Ro(snapshot), h));
  for (it->Seek(rocksdb::Slice(start.data(), start.size())); it->Valid(); it->Next()) {
    LOYALTY_RETURN_IF_ERROR(fn(it->key().ToStringView(), it->value().ToStringView()));
  }
  return FromRocks(it->status(), "scanning projection state");
}

absl::Status EventLog::CatchUp() {
  if (!options_.read_only) return absl::OkStatus();
  LOYALTY_RETURN_IF_ERROR(FromRocks(db_->TryCatchUpWithPrimary(), "catching up with the writer"));
  return LoadHead();
}

}  // namespace loyalty
