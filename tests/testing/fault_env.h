// A rocksdb::Env whose writes fail on demand, for tests of storage faults. Two
// faults, as RocksDB 7.8 tells them apart (docs/reliability.md):
//   kNoSpace: a full disk. Every append, flush and sync of a file (the WAL, tables)
//     fails with IOError subcode NoSpace, as RocksDB's POSIX Env reports ENOSPC; new
//     files can still be created (a full disk still has inodes); GetFreeSpace, which
//     RocksDB's SstFileManager polls before it resumes, says 0 bytes.
//   kIOError: a failing device. Every append, flush, sync and new file fails with
//     a plain IOError.
// It can also make every sync slow (a slow device), so that a write takes a known
// least time.
#ifndef LOYALTY_TESTS_TESTING_FAULT_ENV_H_
#define LOYALTY_TESTS_TESTING_FAULT_ENV_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "rocksdb/env.h"

namespace loyalty::testing {

class FaultEnv final : public rocksdb::EnvWrapper {
 public:
  enum class Fault { kNone, kNoSpace, kIOError };

  explicit FaultEnv(rocksdb::Env* base) : rocksdb::EnvWrapper(base) {}
  const char* Name() const override { return "LoyaltyFaultEnv"; }

  void Set(Fault fault) { fault_ = fault; }
  // Every sync of a file waits this long first.
  void SetSyncDelay(std::chrono::milliseconds delay) { sync_delay_ms_ = delay.count(); }
  // Write calls refused so far.
  int refused() const { return refused_; }

  rocksdb::Status NewWritableFile(const std::string& name,
                                  std::unique_ptr<rocksdb::WritableFile>* result,
                                  const rocksdb::EnvOptions& options) override {
    if (fault_ == Fault::kIOError) return Refuse();
    std::unique_ptr<rocksdb::WritableFile> base;
    rocksdb::Status s = target()->NewWritableFile(name, &base, options);
    if (s.ok()) result->reset(new File(std::move(base), this));
    return s;
  }

  rocksdb::Status GetFreeSpace(const std::string& path, uint64_t* free) override {
    if (fault_ == Fault::kNoSpace) {
      *free = 0;
      return rocksdb::Status::OK();
    }
    return target()->GetFreeSpace(path, free);
  }

 private:
  class File final : public rocksdb::WritableFileWrapper {
   public:
    File(std::unique_ptr<rocksdb::WritableFile> base, FaultEnv* env)
        : rocksdb::WritableFileWrapper(base.get()), base_(std::move(base)), env_(env) {}
    rocksdb::Status Append(const rocksdb::Slice& data) override {
      return env_->failing() ? env_->Refuse() : base_->Append(data);
    }
    rocksdb::Status Append(const rocksdb::Slice& data,
                           const rocksdb::DataVerificationInfo& info) override {
      return env_->failing() ? env_->Refuse() : base_->Append(data, info);
    }
    rocksdb::Status Flush() override { return env_->failing() ? env_->Refuse() : base_->Flush(); }
    rocksdb::Status Sync() override {
      env_->Delay();
      return env_->failing() ? env_->Refuse() : base_->Sync();
    }
    rocksdb::Status Fsync() override {
      env_->Delay();
      return env_->failing() ? env_->Refuse() : base_->Fsync();
    }

   private:
    std::unique_ptr<rocksdb::WritableFile> base_;
    FaultEnv* env_;
  };

  bool failing() const { return fault_ != Fault::kNone; }
  void Delay() const {
    if (const int64_t ms = sync_delay_ms_; ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }
  rocksdb::Status Refuse() {
    ++refused_;
    if (fault_ == Fault::kNoSpace) {
      return rocksdb::Status::NoSpace("injected full disk", "No space left on device");
    }
    return rocksdb::Status::IOError("injected storage fault", "Input/output error");
  }

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int> refused_{0};
  std::atomic<int64_t> sync_delay_ms_{0};
};

}  // namespace loyalty::testing

#endif  // LOYALTY_TESTS_TESTING_FAULT_ENV_H_
