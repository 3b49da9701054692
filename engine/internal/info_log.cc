#include "engine/internal/info_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace loyalty::internal {

InfoLog::~InfoLog() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) ::close(fd_);  // nothing left to do about a failed close
}

absl::Status InfoLog::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path path = fs::path(dir) / "LOG";
  std::error_code ec;
  if (fs::exists(path, ec)) {
    const fs::path old =
        fs::path(dir) / absl::StrCat("LOG.old.", absl::ToUnixMicros(absl::Now()));
    fs::rename(path, old, ec);
    // A LOG that cannot be renamed is appended to instead: losing nothing.
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open RocksDB's info log ", path.string(), ": ", strerror(errno)));
  }
  absl::MutexLock lock(&mu_);
  fd_ = fd;
  std::string pending;
  pending.swap(pending_);
  if (!pending.empty()) WriteLocked(pending);
  return absl::OkStatus();
}

void InfoLog::Logv(const char* format, va_list ap) {
  // RocksDB's line layout: local time, thread, message.
  std::string line = absl::StrCat(
      absl::FormatTime("%Y/%m/%d-%H:%M:%E6S ", absl::Now(), absl::LocalTimeZone()),
      absl::StrFormat("%x ", static_cast<uint64_t>(pthread_self())));
  char small[512];
  va_list copy;
  va_copy(copy, ap);
  const int n = std::vsnprintf(small, sizeof(small), format, copy);
  va_end(copy);
  if (n < 0) return;  // a format RocksDB got wrong: nothing to log
  if (static_cast<size_t>(n) < sizeof(small)) {
    line.append(small, n);
  } else {
    std::vector<char> big(static_cast<size_t>(n) + 1);
    std::vsnprintf(big.data(), big.size(), format, ap);
    line.append(big.data(), n);
  }
  if (line.empty() || line.back() != '\n') line.push_back('\n');
  absl::MutexLock lock(&mu_);
  if (fd_ < 0) {
    if (pending_.size() + line.size() <= kPendingBytesMax) {
      pending_.append(line);
    } else {
      ++dropped_lines_;
    }
    return;
  }
  WriteLocked(line);
}

void InfoLog::WriteLocked(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The disk refuses (full, failing): the rest of the line is dropped and the
      // next line is tried afresh.
      ++dropped_lines_;
      return;
    }
    done += static_cast<size_t>(n);
  }
}

uint64_t InfoLog::dropped_lines() const {
  absl::MutexLock lock(&mu_);
  return dropped_lines_;
}

}  // namespace loyalty::internal
