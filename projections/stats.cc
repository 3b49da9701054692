#include "projections/stats.h"

#include <algorithm>

namespace loyalty {
namespace {

// The first time `elapsed` seconds after `last` at which elapsed * den >= interval *
// num holds: a churn ratio threshold (EvaluateChurn) crossed.
int64_t RatioCrossedAt(int64_t last, int64_t interval, int64_t num, int64_t den) {
  const __int128 need = static_cast<__int128>(interval) * num;  // >= 0
  const __int128 elapsed = (need + den - 1) / den;                // ceil, den > 0
  const __int128 at = static_cast<__int128>(last) + elapsed;
  return at > INT64_MAX ? INT64_MAX : static_cast<int64_t>(at);
}

// When lot i's points leave the outstanding figure (pending, then available) for
// the expired one: once T reaches both its availability and its expiry
// (EvaluateBalance).
int64_t LotGoneAt(const v1::LedgerState& state, int i) {
  return std::max(state.lot_available_at(i), state.lot_expires_at(i));
}

// Narrows [from, until) around t by a time at which the share changes.
void Bound(int64_t change_at, int64_t t, StatsShare* s) {
  if (change_at > t) {
    s->valid_until = std::min(s->valid_until, change_at);
  } else {
    s->valid_from = std::max(s->valid_from, change_at);
  }
}

}  // namespace

StatsShare ShareAt(const Rules& rules, const v1::LedgerState& state, int64_t t) {
  // The figures of AddToStats, without its allocations and full passes over the
  // orders (the timeline asks once per entry of every customer): one pass over the
  // lots, the tier by TierAt, the risk from the newest purchases back.
  StatsShare s;
  if (state.entries() == 0) return s;  // not a member at any time
  s.valid_from = state.clock();
  s.member = true;
  s.purchases = static_cast<uint8_t>(std::min<uint64_t>(state.accepted_purchases(), 2));
  s.earned = state.earned();
  s.redeemed = state.redeemed();
  // A lot's points are outstanding until LotGoneAt, then expired; maturing moves them
  // only from pending to available, which the share does not tell apart.
  int64_t outstanding = -state.debt(), expired = state.expired_settled();
  for (int i = 0; i < state.lot_id_size(); ++i) {
    const int64_t remaining = state.lot_remaining(i);
    const int64_t gone_at = LotGoneAt(state, i);
    if (t < gone_at) {
      outstanding += remaining;
    } else {
      expired += remaining;
    }
    if (remaining != 0) Bound(gone_at, t, &s);
  }
  s.points_outstanding = outstanding;
  s.expired = expired;
  // The tier is the highest one reached by an order of the status window: it can
  // only change when an order leaves the window. Orders are in time order, so the
  // next to leave is the first in the window with a positive net amount, and the
  // last to have left the one before the window.
  s.tier = static_cast<uint8_t>(TierAt(rules, state, t));
  const int in_window = FirstOrderAfter(state, t - rules.tier_status_s);
  for (int i = in_window; i < state.order_at_size(); ++i) {
    if (NetAmount(state, i) <= 0) continue;
    Bound(state.order_at(i) + rules.tier_status_s, t, &s);
    break;
  }
  for (int i = in_window - 1; i >= 0; --i) {
    if (NetAmount(state, i) <= 0) continue;
    Bound(state.order_at(i) + rules.tier_status_s, t, &s);
    break;
  }
  // Churn risk depends on the time since the last purchase alone (all purchases are
  // at or before the clock): it changes where that crosses a threshold.
  const ChurnView churn = EvaluateChurnRisk(rules, state, t);
  s.risk_level = static_cast<uint8_t>(churn.risk_level);
  if (churn.last_purchase_at.has_value()) {
    const int64_t last = *churn.last_purchase_at;
    const int64_t x = churn.expected_interval_s;
    Bound(last > INT64_MAX - rules.churned_s ? INT64_MAX : last + rules.churned_s, t, &s);
    Bound(RatioCrossedAt(last, x, rules.at_risk_num, rules.at_risk_den), t, &s);
    Bound(RatioCrossedAt(last, x, rules.cooling_num, rules.cooling_den), t, &s);
  }
  return s;
}

void AddShare(const StatsShare& share, int sign, StatsView* s) {
  if (!share.member) return;
  s->members += sign;
  if (share.purchases >= 1) s->purchasers += sign;
  if (share.purchases >= 2) s->repeat_purchasers += sign;
  s->points_outstanding += sign * share.points_outstanding;
  s->earned += sign * share.earned;
  s->redeemed += sign * share.redeemed;
  s->expired += sign * share.expired;
  s->per_tier[share.tier] += sign;
  s->per_risk_level[share.risk_level] += sign;
}

void ShareSteps(const Rules& rules, const v1::LedgerState& state, int64_t from, int64_t until,
                int sign, StatsStepFn step) {
  if (state.entries() == 0 || from >= until) return;
  const StatsShare first = ShareAt(rules, state, from);
  StatsView level;  // sign * the share, as the deltas so far add up
  AddShare(first, sign, &level);
  step(from, level);
  if (first.valid_until < until) {
    // Changes inside the span, each kind on its own: the fields they move are
    // disjoint (points by lots; the tier count; the risk level count).
    StatsView d;
    auto emit = [&](int64_t at) {
      for (int64_t* f : {&d.points_outstanding, &d.expired}) *f *= sign;
      for (int64_t& c : d.per_tier) c *= sign;
      for (int64_t& c : d.per_risk_level) c *= sign;
      step(at, d);
      AddStats(d, +1, &level);
      d = StatsView();
    };
    for (int i = 0; i < state.lot_id_size(); ++i) {
      const int64_t remaining = state.lot_remaining(i);
      const int64_t at = LotGoneAt(state, i);
      if (remaining == 0 || at <= from || at >= until) continue;
      d.points_outstanding = -remaining;
      d.expired = remaining;
      emit(at);
    }
    for (const TierLapse& lapse : TierLapses(rules, state, from)) {
      if (lapse.at >= until) break;
      d.per_tier[static_cast<int>(lapse.from)] = -1;
      d.per_tier[static_cast<int>(lapse.to)] = +1;
      emit(lapse.at);
    }
    // The risk level depends only on the time since the last purchase: it can change
    // only where that crosses a threshold.
    const ChurnView churn = EvaluateChurnRisk(rules, state, from);
    if (churn.last_purchase_at.has_value()) {
      const int64_t last = *churn.last_purchase_at;
      const int64_t x = churn.expected_interval_s;
      std::array<int64_t, 3> at = {
          RatioCrossedAt(last, x, rules.cooling_num, rules.cooling_den),
          RatioCrossedAt(last, x, rules.at_risk_num, rules.at_risk_den),
          last > INT64_MAX - rules.churned_s ? INT64_MAX : last + rules.churned_s};
      std::sort(at.begin(), at.end());
      RiskLevel risk = churn.risk_level;
      for (int64_t a : at) {
        if (a <= from || a >= until) continue;
        const RiskLevel next = EvaluateChurnRisk(rules, state, a).risk_level;
        if (next == risk) continue;
        d.per_risk_level[static_cast<int>(risk)] = -1;
        d.per_risk_level[static_cast<int>(next)] = +1;
        emit(a);
        risk = next;
      }
    }
  }
  if (until != INT64_MAX) {
    StatsView end;
    AddStats(level, -1, &end);
    step(until, end);
  }
}

void AddStats(const StatsView& delta, int sign, StatsView* s) {
  s->members += sign * delta.members;
  s->purchasers += sign * delta.purchasers;
  s->repeat_purchasers += sign * delta.repeat_purchasers;
  s->points_outstanding += sign * delta.points_outstanding;
  s->earned += sign * delta.earned;
  s->redeemed += sign * delta.redeemed;
  s->expired += sign * delta.expired;
  for (int k = 0; k < 4; ++k) s->per_tier[k] += sign * delta.per_tier[k];
  for (int k = 0; k < 5; ++k) s->per_risk_level[k] += sign * delta.per_risk_level[k];
}

void AddToStats(const Rules& rules, const v1::LedgerState& state, int64_t t, StatsView* s) {
  if (state.entries() == 0 || state.first_at() > t) return;
  // The plain evaluation, as a customer's own answers give it: the pass the index
  // and the timeline (through ShareAt) are held to.
  const BalanceView b = EvaluateBalance(rules, state, t);
  StatsShare share;
  share.member = true;
  share.purchases = static_cast<uint8_t>(std::min<uint64_t>(state.accepted_purchases(), 2));
  share.points_outstanding = b.available + b.pending;
  share.earned = b.earned;
  share.redeemed = b.redeemed;
  share.expired = b.expired;
  share.tier = static_cast<uint8_t>(EvaluateTier(rules, state, t).tier);
  share.risk_level = static_cast<uint8_t>(EvaluateChurn(rules, state, t).risk_level);
  AddShare(share, +1, s);
}

}  // namespace loyalty
