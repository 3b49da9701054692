#include "projections/stats.h"

namespace loyalty {

void AddToStats(const Rules& rules, const v1::LedgerState& state, int64_t t, StatsView* s) {
  if (state.entries() == 0 || state.first_at() > t) return;
  ++s->members;
  if (state.accepted_purchases() >= 1) ++s->purchasers;
  if (state.accepted_purchases() >= 2) ++s->repeat_purchasers;
  const BalanceView b = EvaluateBalance(rules, state, t);
  s->points_outstanding += b.available + b.pending;
  s->earned += b.earned;
  s->redeemed += b.redeemed;
  s->expired += b.expired;
  ++s->per_tier[static_cast<int>(EvaluateTier(rules, state, t).tier)];
  ++s->per_risk_level[static_cast<int>(EvaluateChurn(rules, state, t).risk_level)];
}

}  // namespace loyalty
