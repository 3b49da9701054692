#include "projections/signals.h"

#include <algorithm>
#include <vector>

#include "engine/status_macros.h"
#include "projections/ledger.h"

namespace loyalty {
namespace {

// The smallest e >= 0 with e * den >= x * num (the churn thresholds' elapsed time).
int64_t CeilThreshold(int64_t x, int64_t num, int64_t den) {
  const __int128 product = static_cast<__int128>(x) * num;
  return static_cast<int64_t>((product + den - 1) / den);
}

}  // namespace

void EvaluateSignals(const Rules& rules, int64_t t, v1::CustomerState* state, SignalList* out) {
  const v1::LedgerState& ledger = state->ledger();
  v1::SignalState* last = state->mutable_signals();
  int64_t next = 0;  // the earliest candidate > t, 0 if none
  auto candidate = [&](int64_t at) {
    if (at > t && (next == 0 || at < next)) next = at;
  };

  const Tier tier = TierAt(rules, ledger, t);
  if (static_cast<int32_t>(tier) != last->tier()) {
    v1::Signal* s = out->Add();
    s->set_customer_id(state->customer_id());
    s->set_kind(v1::TIER_CHANGED);
    s->set_at(t);
    s->mutable_tier_changed()->set_tier(TierName(tier));
    s->mutable_tier_changed()->set_previous_tier(TierName(static_cast<Tier>(last->tier())));
    last->set_tier(static_cast<int32_t>(tier));
  }
  // The tier can only fall when an order's status lapses: the first to lapse after
  // t is the oldest order in the status window that counts.
  for (int i = FirstOrderAfter(ledger, t - rules.tier_status_s);
       i < ledger.order_at_size() && ledger.order_at(i) <= t; ++i) {
    if (NetAmount(ledger, i) > 0) {
      candidate(ledger.order_at(i) + rules.tier_status_s);
      break;
    }
  }

  const ChurnView churn = EvaluateChurnRisk(rules, ledger, t);
  if (static_cast<int32_t>(churn.risk_level) != last->risk_level()) {
    v1::Signal* s = out->Add();
    s->set_customer_id(state->customer_id());
    s->set_kind(v1::CHURN_RISK_CHANGED);
    s->set_at(t);
    s->mutable_risk_changed()->set_risk_level(RiskLevelName(churn.risk_level));
    s->mutable_risk_changed()->set_previous_risk_level(
        RiskLevelName(static_cast<RiskLevel>(last->risk_level())));
    last->set_risk_level(static_cast<int32_t>(churn.risk_level));
  }
  if (churn.last_purchase_at.has_value()) {
    const int64_t lp = *churn.last_purchase_at;
    const int64_t x = churn.expected_interval_s;
    candidate(lp + CeilThreshold(x, rules.cooling_num, rules.cooling_den));
    candidate(lp + CeilThreshold(x, rules.at_risk_num, rules.at_risk_den));
    candidate(lp + rules.churned_s);
  }

  // Lots: announce each once, when it is available, has points left and expires
  // within the horizon (the balance's expiringSoon rule). Lots that expired are
  // forgotten at the next evaluation (lot ids are never reused).
  // The announced ids are written in lot order, so they ascend (sorted again in case).
  std::vector<uint64_t> announced(last->expiring_lots().begin(), last->expiring_lots().end());
  if (!std::is_sorted(announced.begin(), announced.end())) {
    std::sort(announced.begin(), announced.end());
  }
  last->clear_expiring_lots();
  for (int i = 0; i < ledger.lot_id_size(); ++i) {
    const uint64_t id = ledger.lot_id(i);
    const int64_t expires_at = ledger.lot_expires_at(i), remaining = ledger.lot_remaining(i);
    if (expires_at <= t) continue;  // expired by t
    const bool was_announced = std::binary_search(announced.begin(), announced.end(), id);
    const int64_t enters = std::max(expires_at - rules.expiring_soon_s, ledger.lot_available_at(i));
    if (!was_announced && remaining > 0 && enters <= t) {
      v1::Signal* s = out->Add();
      s->set_customer_id(state->customer_id());
      s->set_kind(v1::POINTS_EXPIRING);
      s->set_at(t);
      v1::LotExpiring* expiring = s->mutable_points_expiring();
      expiring->set_lot_id(id);
      expiring->set_points(remaining);
      expiring->set_expires_at(expires_at);
      last->add_expiring_lots(id);
    } else if (was_announced) {
      last->add_expiring_lots(id);
    } else if (remaining > 0) {
      candidate(enters);
    }
  }
  last->set_next_check_at(next);
}

void DueIndex::Set(const std::string& customer_id, int64_t next_check_at) {
  if (next_check_at == 0) {
    auto it = at_.find(customer_id);
    if (it == at_.end()) return;
    if (it->second.queued == 0) {
      at_.erase(it);
    } else {
      it->second.next = 0;  // its entry goes when a DueBy reaches it
    }
    return;
  }
  auto [it, added] = at_.try_emplace(customer_id);
  Times& times = it->second;
  times.next = next_check_at;
  if (times.queued != 0) {
    if (times.queued <= next_check_at) return;  // DueBy moves the entry on when it gets there
    by_time_.erase({times.queued, &it->first});
  }
  by_time_.emplace(next_check_at, &it->first);
  times.queued = next_check_at;
}

std::vector<std::string> DueIndex::DueBy(int64_t at) {
  std::vector<std::string> ids;
  std::vector<const std::string*> passed;
  while (!by_time_.empty() && by_time_.begin()->first <= at) {
    passed.push_back(by_time_.begin()->second);
    by_time_.erase(by_time_.begin());
  }
  for (const std::string* id : passed) {
    auto it = at_.find(*id);
    Times& times = it->second;
    if (times.next == 0) {
      at_.erase(it);
      continue;
    }
    if (times.next <= at) ids.push_back(*id);
    // Queued again at its time, due or not: a due customer stays due until a Set.
    by_time_.emplace(times.next, &it->first);
    times.queued = times.next;
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

void DueIndex::Clear() {
  by_time_.clear();
  at_.clear();
}

absl::Status SignalsAfterEvent(const Rules& rules, const std::string& customer_id,
                               const v1::Outcome& outcome, StateSource* states,
                               SignalList* out, DueIndex* due) {
  std::vector<const std::string*> customers = {&customer_id};
  for (const v1::LedgerEntry& e : outcome.entries()) {
    if (std::none_of(customers.begin(), customers.end(),
                     [&](const std::string* c) { return *c == e.customer_id(); })) {
      customers.push_back(&e.customer_id());
    }
  }
  for (const std::string* id : customers) {
    LOYALTY_ASSIGN_OR_RETURN(v1::CustomerState * state, states->Mutable(*id));
    // A customer with no entry yet (none of this event's) has nothing to signal.
    if (state->ledger().entries() == 0) continue;
    EvaluateSignals(rules, state->ledger().clock(), state, out);
    if (due != nullptr) due->Set(*id, state->signals().next_check_at());
  }
  return absl::OkStatus();
}

}  // namespace loyalty
