// Tests of the threads' CPU priorities: the nice value and the time slice a thread
// asks the scheduler for.
#include "engine/cpu_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/testing/thread_slice.h"

namespace loyalty {
namespace {

int ThreadNice() {
  return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
}

// The calling thread's slice in nanoseconds; nullopt where the kernel reports none.
std::optional<uint64_t> ThreadSliceNs() {
  return testing::SliceNsOf(absl::StrCat("/proc/self/task/", syscall(SYS_gettid)));
}

TEST_CASE("a thread's slice is set and its nice value kept") {
  // On a thread of its own: the test runner's thread keeps its settings.
  std::thread([] {
    REQUIRE(SetThreadNice(7).ok());
    const std::optional<uint64_t> before = ThreadSliceNs();
    REQUIRE(SetThreadSlice(absl::Microseconds(400)).ok());
    CHECK(ThreadNice() == 7);  // sched_setattr sets the nice value too
    const std::optional<uint64_t> after = ThreadSliceNs();
    const bool honoured = testing::KernelHonoursThreadSlices();
    if (honoured) {
      // The kernel reports slices from 6.6 and honours a thread's own from 6.12.
      INFO("slice before " << before.value_or(0) << " ns");
      REQUIRE(after.has_value());
      CHECK(*after == 400'000);
    } else {
      WARN("this kernel does not honour a thread's slice (before 6.12): not checked");
    }
    // Threads started from it inherit both.
    std::thread([honoured] {
      CHECK(ThreadNice() == 7);
      if (honoured) CHECK(ThreadSliceNs() == uint64_t{400'000});
    }).join();
  }).join();
}

TEST_CASE("a nice value outside 0 to 19 is refused") {
  std::thread([] {
    CHECK(absl::IsInvalidArgument(SetThreadNice(-1)));
    CHECK(absl::IsInvalidArgument(SetThreadNice(20)));
    CHECK(ThreadNice() == 0);
  }).join();
}

}  // namespace
}  // namespace loyalty
