// Program-wide figures over every customer as of a time T (interfaces.md
// /v1/stats): a pass over the customers' folded states, each evaluated at T.
#ifndef LOYALTY_PROJECTIONS_STATS_H_
#define LOYALTY_PROJECTIONS_STATS_H_

#include <array>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/ledger.h"
#include "projections/program.h"

namespace loyalty {

struct StatsView {
  int64_t members = 0;         // customers known as of T
  int64_t purchasers = 0;      // with >= 1 accepted purchase
  int64_t repeat_purchasers = 0;  // with >= 2 accepted purchases
  int64_t points_outstanding = 0;  // available + pending
  int64_t earned = 0;
  int64_t redeemed = 0;
  int64_t expired = 0;
  std::array<int64_t, 4> per_tier{};        // indexed by Tier
  std::array<int64_t, 5> per_risk_level{};  // indexed by RiskLevel
  // repeat_purchasers / purchasers, 0 when there are no purchasers.
  double repeat_purchase_rate() const {
    return purchasers == 0 ? 0.0 : static_cast<double>(repeat_purchasers) / purchasers;
  }
};

// One customer's part of StatsView at a time T, and the span of times around T
// over which the same state gives the same part: [valid_from, valid_until).
// valid_from is never before the state's clock (earlier, entries folded into the
// state may not have happened yet); valid_until is the first time after T at which
// a lot expires, an order leaves the tier-status window or churn risk rises.
struct StatsShare {
  int64_t valid_from = INT64_MIN;
  int64_t valid_until = INT64_MAX;
  int64_t points_outstanding = 0;
  int64_t earned = 0;
  int64_t redeemed = 0;
  int64_t expired = 0;
  bool member = false;
  uint8_t purchases = 0;  // accepted purchases, counted up to 2
  uint8_t tier = 0;       // a Tier
  uint8_t risk_level = 0; // a RiskLevel
};

// The share of a state folded up to T (T >= state.clock()), evaluated at T.
StatsShare ShareAt(const Rules& rules, const v1::LedgerState& state, int64_t t);

// Adds (sign +1) or removes (-1) a share.
void AddShare(const StatsShare& share, int sign, StatsView* stats);

// A customer's share of the stats as a step function of time, for the timeline
// (StatsTimeline): calls step(at, delta) so that the deltas at times <= T add up, for
// every T in [from, until), to sign * ShareAt(state, T), and to 0 outside that span
// (a delta of -sign * the last share at `until`, unless until is INT64_MAX). Needs
// from >= state.clock(): no entry after, so only time moves the share: a lot's points
// expire, an order leaves the tier-status window, churn risk rises. Nothing for a
// state without entries. Costs one ShareAt, and for a span with changes inside, one
// pass over the lots and the status window's orders.
using StatsStepFn = absl::FunctionRef<void(int64_t at, const StatsView& delta)>;
void ShareSteps(const Rules& rules, const v1::LedgerState& state, int64_t from, int64_t until,
                int sign, StatsStepFn step);

// Adds (sign +1) or subtracts (-1) one view to another, field by field.
void AddStats(const StatsView& delta, int sign, StatsView* stats);

// Adds one customer's state, folded up to T, evaluated at T.
void AddToStats(const Rules& rules, const v1::LedgerState& state, int64_t t, StatsView* stats);

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_STATS_H_
