// Time is injected: nothing in the engine reads the wall clock directly.
#ifndef LOYALTY_ENGINE_CLOCK_H_
#define LOYALTY_ENGINE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace loyalty {

// A source of the current time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The system's real-time clock. Thread-safe; the returned pointer is static.
Clock* RealClock();

// A clock that moves only when told to; for tests. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start) : micros_(absl::ToUnixMicros(start)) {}
  absl::Time Now() const override { return absl::FromUnixMicros(micros_.load()); }
  void Set(absl::Time t) { micros_.store(absl::ToUnixMicros(t)); }
  void Advance(absl::Duration d) { micros_.fetch_add(absl::ToInt64Microseconds(d)); }

 private:
  std::atomic<int64_t> micros_;
};

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_CLOCK_H_
