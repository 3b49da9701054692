// What the kernel reports of threads' time slices (SetThreadSlice,
// engine/cpu_priority.h), for tests.
#ifndef LOYALTY_TESTS_TESTING_THREAD_SLICE_H_
#define LOYALTY_TESTS_TESTING_THREAD_SLICE_H_

#include <sys/utsname.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace loyalty::testing {

// Whether the kernel honours a slice asked for by a normal thread (Linux 6.12 and
// later); where it does not, a test has nothing to check.
inline bool KernelHonoursThreadSlices() {
  utsname u;
  int major = 0, minor = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 12);
}

// The slice in nanoseconds of the thread whose /proc directory is `task_dir`
// (`/proc/self/task/<tid>`), as its `sched` file reports it; nullopt if it does not.
inline std::optional<uint64_t> SliceNsOf(const std::filesystem::path& task_dir) {
  std::ifstream in(task_dir / "sched");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("se.slice", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    return std::stoull(line.substr(colon + 1));
  }
  return std::nullopt;
}

// How many of this process's threads have a slice of `ns` nanoseconds.
inline int ThreadsWithSlice(uint64_t ns) {
  int count = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    if (SliceNsOf(task.path()) == ns) ++count;
  }
  return count;
}

}  // namespace loyalty::testing

#endif  // LOYALTY_TESTS_TESTING_THREAD_SLICE_H_
