// A rocksdb::Env whose writes fail on demand, as a full disk or a failing device
// does: while failing, every append, flush and sync of a file (the WAL, tables)
// and every new file returns an IOError. For tests of storage faults.
#ifndef LOYALTY_TESTS_TESTING_FAULT_ENV_H_
#define LOYALTY_TESTS_TESTING_FAULT_ENV_H_

#include <atomic>
#include <memory>
#include <string>

#include "rocksdb/env.h"

namespace loyalty::testing {

class FaultEnv final : public rocksdb::EnvWrapper {
 public:
  explicit FaultEnv(rocksdb::Env* base) : rocksdb::EnvWrapper(base) {}
  const char* Name() const override { return "LoyaltyFaultEnv"; }

  void SetFailing(bool failing) { failing_ = failing; }
  // Write calls refused so far.
  int refused() const { return refused_; }

  rocksdb::Status NewWritableFile(const std::string& name,
                                  std::unique_ptr<rocksdb::WritableFile>* result,
                                  const rocksdb::EnvOptions& options) override {
    if (Refuse()) return Injected();
    std::unique_ptr<rocksdb::WritableFile> base;
    rocksdb::Status s = target()->NewWritableFile(name, &base, options);
    if (s.ok()) result->reset(new File(std::move(base), this));
    return s;
  }

 private:
  class File final : public rocksdb::WritableFileWrapper {
   public:
    File(std::unique_ptr<rocksdb::WritableFile> base, FaultEnv* env)
        : rocksdb::WritableFileWrapper(base.get()), base_(std::move(base)), env_(env) {}
    rocksdb::Status Append(const rocksdb::Slice& data) override {
      return env_->Refuse() ? Injected() : base_->Append(data);
    }
    rocksdb::Status Append(const rocksdb::Slice& data,
                           const rocksdb::DataVerificationInfo& info) override {
      return env_->Refuse() ? Injected() : base_->Append(data, info);
    }
    rocksdb::Status Flush() override { return env_->Refuse() ? Injected() : base_->Flush(); }
    rocksdb::Status Sync() override { return env_->Refuse() ? Injected() : base_->Sync(); }
    rocksdb::Status Fsync() override { return env_->Refuse() ? Injected() : base_->Fsync(); }

   private:
    std::unique_ptr<rocksdb::WritableFile> base_;
    FaultEnv* env_;
  };

  static rocksdb::Status Injected() {
    return rocksdb::Status::IOError("injected storage fault", "No space left on device");
  }
  bool Refuse() {
    if (!failing_) return false;
    ++refused_;
    return true;
  }

  std::atomic<bool> failing_{false};
  std::atomic<int> refused_{0};
};

}  // namespace loyalty::testing

#endif  // LOYALTY_TESTS_TESTING_FAULT_ENV_H_
