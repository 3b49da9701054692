#include "engine/cpu_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "rocksdb/env.h"

namespace loyalty {

absl::Status SetThreadNice(int nice) {
  if (nice < 0 || nice > 19) {
    return absl::InvalidArgumentError(absl::StrCat("nice ", nice, " is not in 0..19"));
  }
  // PRIO_PROCESS with a thread id sets that thread's nice value alone.
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  if (setpriority(PRIO_PROCESS, tid, nice) != 0) {
    return absl::InternalError(absl::StrCat("setpriority(", nice, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status LowerBackgroundPriority(rocksdb::Env* env) {
  for (rocksdb::Env::Priority pool : {rocksdb::Env::LOW, rocksdb::Env::HIGH}) {
    rocksdb::Status s = env->LowerThreadPoolCPUPriority(pool, rocksdb::CpuPriority::kLow);
    if (!s.ok()) return absl::InternalError(s.ToString());
  }
  return absl::OkStatus();
}

}  // namespace loyalty
