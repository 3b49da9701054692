// Tests of the threads' CPU priorities: the nice value and the time slice a thread
// asks the scheduler for.
#include "engine/cpu_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace loyalty {
namespace {

int ThreadNice() {
  return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
}

// The calling thread's slice in nanoseconds, as the kernel reports it in
// /proc/self/task/<tid>/sched (EEVDF kernels); nullopt where it reports none.
std::optional<uint64_t> ThreadSliceNs() {
  std::ifstream in(absl::StrCat("/proc/self/task/", syscall(SYS_gettid), "/sched"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "se.slice")) continue;
    const size_t colon = rest.find(':');
    uint64_t ns = 0;
    if (colon != absl::string_view::npos &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest.substr(colon + 1)), &ns)) {
      return ns;
    }
  }
  return std::nullopt;
}

TEST_CASE("a thread's slice is set and its nice value kept") {
  // On a thread of its own: the test runner's thread keeps its settings.
  std::thread([] {
    REQUIRE(SetThreadNice(7).ok());
    const std::optional<uint64_t> before = ThreadSliceNs();
    REQUIRE(SetThreadSlice(absl::Microseconds(400)).ok());
    CHECK(ThreadNice() == 7);  // sched_setattr sets the nice value too
    const std::optional<uint64_t> after = ThreadSliceNs();
    if (before.has_value()) {
      // The kernel reports slices (6.6 and later) and honours a custom one from 6.12.
      INFO("slice before " << *before << " ns");
      REQUIRE(after.has_value());
      CHECK(*after == 400'000);
    }
    // Threads started from it inherit both.
    std::thread([] {
      CHECK(ThreadNice() == 7);
      if (const auto slice = ThreadSliceNs()) CHECK(*slice == 400'000);
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
