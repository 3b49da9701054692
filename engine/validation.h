// Validation before append: every case of rules.md section 10 that can be decided
// from one message and the engine clock. (EVENT_ID_CONFLICT needs the log and is
// decided by the Ingestor.)
#ifndef LOYALTY_ENGINE_VALIDATION_H_
#define LOYALTY_ENGINE_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "loyalty/v1/event.pb.h"
#include "loyalty/v1/log.pb.h"

namespace loyalty {

// Raw input over this many bytes is a dead letter (rules.md section 10).
inline constexpr size_t kMaxMessageBytes = 64 * 1024;
// Any id over this many bytes is a dead letter (rules.md section 10).
inline constexpr size_t kMaxIdBytes = 128;
// Amounts (minor units) and points beyond these are dead letters: they keep every
// per-customer counter far from int64 overflow (9.2 x 10^18 is 9 million such
// events of one customer). Not in rules.md; docs/rules.md states them.
inline constexpr int64_t kMaxAmountMinor = 1'000'000'000'000;
inline constexpr int64_t kMaxPoints = 1'000'000'000'000;
// An event that occurred more than this far ahead of the ingest clock is a dead
// letter (rules.md section 10).
inline constexpr absl::Duration kMaxFutureSkew = absl::Hours(24);

struct Rejection {
  v1::DeadLetterReason reason;
  std::string detail;
};

// Checks a decoded event. `ingest_clock` is the engine's clock reading when the
// event is ingested (kept in the record, so a replay reaches the same verdict).
// Returns nothing when the event may be applied.
std::optional<Rejection> ValidateEvent(const v1::Event& event, absl::Time ingest_clock);

// The stable name of a reason, e.g. "MISSING_FIELD".
std::string DeadLetterReasonName(v1::DeadLetterReason reason);

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_VALIDATION_H_
