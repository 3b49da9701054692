#include "engine/cpu_priority.h"

#include <sched.h>
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

namespace {

// The kernel's struct sched_attr, its first version (SCHED_ATTR_SIZE_VER0): glibc
// 2.36 has no wrapper, and <linux/sched/types.h> clashes with <sched.h>.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
static_assert(sizeof(SchedAttr) == 48);

}  // namespace

absl::Status SetThreadSlice(absl::Duration slice) {
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, tid);
  if (nice == -1 && errno != 0) {
    return absl::InternalError(absl::StrCat("getpriority: ", std::strerror(errno)));
  }
  SchedAttr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.sched_policy = SCHED_OTHER;
  attr.sched_nice = nice;  // sched_setattr sets the nice value too: keep it
  attr.sched_runtime = static_cast<uint64_t>(absl::ToInt64Nanoseconds(slice));
  if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
    return absl::InternalError(absl::StrCat("sched_setattr: ", std::strerror(errno)));
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
