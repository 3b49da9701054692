// A customer's ledger: entries folded into state (LedgerState), and the answers
// rules.md gives for that state at a time T: balance, tier, churn.
//
// An answer as of T is the fold of the customer's entries with effective time <= T
// (in order), evaluated at T: pending points mature, lots expire, tiers lapse and
// churn risk rises as T moves, with no entry needed.
#ifndef LOYALTY_PROJECTIONS_LEDGER_H_
#define LOYALTY_PROJECTIONS_LEDGER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/program.h"

namespace loyalty {

// Applies one entry (effective_at >= state->clock(), unless the state is empty).
// Settles lots that expired by the entry's time and drops orders past the rules'
// horizon first (their ids go to `dropped_orders`, if set). FailedPrecondition if the entry does not fit the state (a draw
// from a lot that does not hold it, time going backwards): the ledger is then
// inconsistent and the state must be discarded.
absl::Status ApplyEntry(const Rules& rules, const v1::LedgerEntry& entry,
                        v1::LedgerState* state,
                        std::vector<std::string>* dropped_orders = nullptr);

struct ExpiringLot {
  int64_t points;
  int64_t expires_at;
};

struct BalanceView {
  int64_t available = 0;  // available lots minus debt
  int64_t pending = 0;
  int64_t earned = 0;
  int64_t redeemed = 0;
  int64_t reversed = 0;
  int64_t adjusted_out = 0;
  int64_t expired = 0;
  int64_t debt = 0;
  std::vector<ExpiringLot> expiring_soon;  // soonest first
};

struct TierView {
  Tier tier = Tier::kBronze;
  int64_t rolling_spend_minor = 0;
  std::optional<int64_t> valid_until;  // none at BRONZE
  std::optional<Tier> next_tier;       // none at PLATINUM
  int64_t spend_to_next_tier_minor = 0;
};

enum class RiskLevel { kNew, kActive, kCooling, kAtRisk, kChurned };
const char* RiskLevelName(RiskLevel level);

struct ChurnView {
  RiskLevel risk_level = RiskLevel::kNew;
  // Set unless NEW:
  std::optional<int64_t> last_purchase_at;
  int64_t days_since_last_purchase = 0;
  int64_t expected_interval_s = 0;
  double recency_ratio = 0;
  int64_t purchases_365d = 0;
  int64_t spend_365d_minor = 0;
};

// Answers at T for a state folded up to T (T >= state.clock()).
BalanceView EvaluateBalance(const Rules& rules, const v1::LedgerState& state, int64_t t);
TierView EvaluateTier(const Rules& rules, const v1::LedgerState& state, int64_t t);
ChurnView EvaluateChurn(const Rules& rules, const v1::LedgerState& state, int64_t t);

// The tier alone (EvaluateTier(...).tier), as a purchase's multiplier and the
// signals need it: it stops at the first order that reaches the top tier.
Tier TierAt(const Rules& rules, const v1::LedgerState& state, int64_t t);

// Where the tier falls after t, for a state folded up to t (t >= state.clock()) and
// no entry after: an order's status lapses at its time + tier_status_s, and the tier
// from then on is the highest reached by the orders still in the window. In time
// order; several may share a time (orders of one second). At most one per order.
struct TierLapse {
  int64_t at;
  Tier from;
  Tier to;
};
std::vector<TierLapse> TierLapses(const Rules& rules, const v1::LedgerState& state, int64_t t);

// EvaluateChurn without purchases_365d and spend_365d_minor (left 0): the risk level
// and what it is computed from, as the signals need them. It reads the orders from
// the newest back, only as far as the churn interval's purchases.
ChurnView EvaluateChurnRisk(const Rules& rules, const v1::LedgerState& state, int64_t t);

// The index of the first order with time > at (the order count if none).
int FirstOrderAfter(const v1::LedgerState& state, int64_t at);

// Sum of (amount - refunded) over orders with time in (s - spend window, s].
int64_t RollingSpend(const Rules& rules, const v1::LedgerState& state, int64_t s);

// Points available at t (available lots minus debt), and the lots to draw from in
// FIFO order (expires_at, then creation), as indexes into the lot columns.
int64_t AvailableAt(const v1::LedgerState& state, int64_t t);
enum class DrawFrom { kAvailable, kUnexpired };
std::vector<int> FifoLots(const v1::LedgerState& state, int64_t t, DrawFrom from);

// The points an entry moved, signed from the customer's view: debits (refunds,
// claw-backs, negative adjustments, redemptions) negative, the rest positive.
int64_t SignedPoints(const v1::LedgerEntry& entry);

// The index of the lot with `id` in the lot columns, or -1.
int FindLot(const v1::LedgerState& state, uint64_t id);

// The index of the order with `order_id` in the order columns, or -1.
int FindOrder(const v1::LedgerState& state, std::string_view order_id);

// Order i's net amount: its amount less what was refunded of it.
inline int64_t NetAmount(const v1::LedgerState& state, int i) {
  return state.order_amount_minor(i) - state.order_refunded_minor(i);
}

// Parses stored CustomerState bytes. False if they do not decode, or if the columns
// of the lots or of the orders differ in length (ColumnsAgree): every reader of a
// stored state goes through it (or ParseLedgerOnly), so no code indexes past a
// column's end.
bool ParseCustomerState(std::string_view bytes, v1::CustomerState* state);
bool ColumnsAgree(const v1::LedgerState& state);

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_LEDGER_H_
