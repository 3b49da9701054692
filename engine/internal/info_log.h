// RocksDB's info log (the file LOG in the data directory), written by the engine
// instead of by RocksDB's own logger.
//
// Why: Debian's librocksdb 7.8 is built with assertions enabled. RocksDB's own
// logger writes through a WritableFileWriter, which remembers a failed write (a
// full disk) and fails an assertion on the next line logged: a full disk aborted
// the process (seen on a full tmpfs; docs/reliability.md). This logger writes each
// line with one write(2) and drops the lines the disk refuses, so the engine lives
// on to report the fault and to resume once the disk has room again.
#ifndef LOYALTY_ENGINE_INTERNAL_INFO_LOG_H_
#define LOYALTY_ENGINE_INTERNAL_INFO_LOG_H_

#include <cstdarg>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/env.h"

namespace loyalty::internal {

// Thread-safe (RocksDB logs from its background threads).
class InfoLog final : public rocksdb::Logger {
 public:
  InfoLog() : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL) {}
  ~InfoLog() override;

  // Starts writing to `dir`/LOG, after renaming an existing LOG to
  // LOG.old.<microseconds> (RocksDB's own naming, so that RocksDB still deletes the
  // oldest ones beyond DBOptions::keep_log_file_num). Lines logged before are kept
  // in memory (up to kPendingBytesMax) and written first. Call it once RocksDB holds
  // the directory's lock, so that a second process that tries to open the directory
  // cannot rename the log of the one writing it.
  absl::Status Open(const std::string& dir);

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;

  // Lines the disk refused, dropped.
  uint64_t dropped_lines() const;

 private:
  // Lines logged while RocksDB opens the store, before Open (its options dump is
  // some tens of KiB).
  static constexpr size_t kPendingBytesMax = 1 << 20;

  void WriteLocked(const std::string& text) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::string pending_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_lines_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace loyalty::internal

#endif  // LOYALTY_ENGINE_INTERNAL_INFO_LOG_H_
