#include "projections/ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace loyalty {
namespace {

absl::Status Inconsistent(const v1::LedgerEntry& e, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      "ledger entry ", v1::EntryKind_Name(e.kind()), " of customer ", e.customer_id(),
      " (event ", e.event_id(), ", seq ", e.seq(), ") does not fit the ledger: ", what));
}

// Lots that expired by t are settled into expired_settled; orders past the rules'
// horizon leave the state (their times stay for churn). Neither changes any answer
// at a time >= t. The ids of the orders that leave go to `dropped_orders`, if set.
template <typename T>
void ErasePrefix(int n, google::protobuf::RepeatedField<T>* column) {
  column->erase(column->begin(), column->begin() + n);
}

void Settle(const Rules& rules, int64_t t, v1::LedgerState* s,
            std::vector<std::string>* dropped_orders) {
  const int lots = s->lot_id_size();
  int kept = 0;
  for (int i = 0; i < lots; ++i) {
    if (s->lot_expires_at(i) <= t) {
      s->set_expired_settled(s->expired_settled() + s->lot_remaining(i));
      continue;
    }
    if (kept != i) {
      s->set_lot_id(kept, s->lot_id(i));
      s->set_lot_remaining(kept, s->lot_remaining(i));
      s->set_lot_available_at(kept, s->lot_available_at(i));
      s->set_lot_expires_at(kept, s->lot_expires_at(i));
    }
    ++kept;
  }
  if (kept < lots) {
    s->mutable_lot_id()->Truncate(kept);
    s->mutable_lot_remaining()->Truncate(kept);
    s->mutable_lot_available_at()->Truncate(kept);
    s->mutable_lot_expires_at()->Truncate(kept);
  }

  const int64_t horizon = t - rules.OrderHorizon();
  int drop = 0;
  while (drop < s->order_at_size() && s->order_at(drop) <= horizon) {
    if (NetAmount(*s, drop) > 0) s->add_old_purchase_at(s->order_at(drop));
    if (dropped_orders != nullptr) dropped_orders->push_back(s->order_id(drop));
    ++drop;
  }
  if (drop > 0) {
    s->mutable_order_id()->DeleteSubrange(0, drop);
    ErasePrefix(drop, s->mutable_order_at());
    ErasePrefix(drop, s->mutable_order_amount_minor());
    ErasePrefix(drop, s->mutable_order_refunded_minor());
    ErasePrefix(drop, s->mutable_order_points());
    ErasePrefix(drop, s->mutable_order_reversed());
    ErasePrefix(drop, s->mutable_order_lot_id());
  }
  const int excess = s->old_purchase_at_size() - static_cast<int>(rules.churn_interval_purchases);
  if (excess > 0) s->mutable_old_purchase_at()->erase(s->old_purchase_at().begin(),
                                                       s->old_purchase_at().begin() + excess);
}

absl::Status Credit(const v1::LedgerEntry& e, v1::LedgerState* s) {
  if (e.points() < 0 || e.debt_paid() < 0 || e.debt_paid() > s->debt() ||
      e.debt_paid() > e.points()) {
    return Inconsistent(e, "credit or debt payment out of range");
  }
  s->set_earned(s->earned() + e.points());
  s->set_debt(s->debt() - e.debt_paid());
  if (e.points() > 0) {
    if (e.lot_id() != s->next_lot_id() + 1) return Inconsistent(e, "lot id out of order");
    s->set_next_lot_id(e.lot_id());
    s->add_lot_id(e.lot_id());
    s->add_lot_remaining(e.points() - e.debt_paid());
    s->add_lot_available_at(e.available_at());
    s->add_lot_expires_at(e.expires_at());
  }
  return absl::OkStatus();
}

absl::Status Debit(const v1::LedgerEntry& e, v1::LedgerState* s) {
  int64_t total = e.debt_added();
  if (e.points() < 0 || e.debt_added() < 0) return Inconsistent(e, "negative debit");
  for (const v1::LotDraw& d : e.draws()) {
    const int i = FindLot(*s, d.lot_id());
    if (i < 0 || d.points() <= 0 || s->lot_remaining(i) < d.points()) {
      return Inconsistent(e, absl::StrCat("draw of ", d.points(), " from lot ", d.lot_id()));
    }
    s->set_lot_remaining(i, s->lot_remaining(i) - d.points());
    total += d.points();
  }
  if (total != e.points()) return Inconsistent(e, "draws and debt do not sum to the points");
  s->set_debt(s->debt() + e.debt_added());
  return absl::OkStatus();
}

absl::Status Restore(const v1::LedgerEntry& e, v1::LedgerState* s) {
  int64_t total = e.debt_paid() + e.expired_points();
  if (e.debt_paid() < 0 || e.debt_paid() > s->debt() || e.expired_points() < 0) {
    return Inconsistent(e, "restore out of range");
  }
  for (const v1::LotDraw& d : e.draws()) {
    const int i = FindLot(*s, d.lot_id());
    if (i < 0 || d.points() <= 0) {
      return Inconsistent(e, absl::StrCat("restore into lot ", d.lot_id()));
    }
    s->set_lot_remaining(i, s->lot_remaining(i) + d.points());
    total += d.points();
  }
  if (total != e.points()) return Inconsistent(e, "restores do not sum to the points");
  s->set_debt(s->debt() - e.debt_paid());
  s->set_redeemed(s->redeemed() - e.points());
  s->set_expired_settled(s->expired_settled() + e.expired_points());
  return absl::OkStatus();
}

}  // namespace

int64_t SignedPoints(const v1::LedgerEntry& e) {
  switch (e.kind()) {
    case v1::REFUND:
    case v1::CLAWBACK:
    case v1::ADJUSTMENT_DEBIT:
    case v1::REDEMPTION:
      return -e.points();
    default:
      return e.points();
  }
}

int FindLot(const v1::LedgerState& s, uint64_t id) {
  // Lots are kept in creation order, so ids ascend: binary search.
  const auto& ids = s.lot_id();
  const auto it = std::lower_bound(ids.begin(), ids.end(), id);
  return it != ids.end() && *it == id ? static_cast<int>(it - ids.begin()) : -1;
}

int FindOrder(const v1::LedgerState& s, std::string_view order_id) {
  // Newest first: refunds mostly follow their purchase closely.
  for (int i = s.order_id_size() - 1; i >= 0; --i) {
    if (s.order_id(i) == order_id) return i;
  }
  return -1;
}

bool ColumnsAgree(const v1::LedgerState& s) {
  const int lots = s.lot_id_size();
  const int orders = s.order_id_size();
  return s.lot_remaining_size() == lots && s.lot_available_at_size() == lots &&
         s.lot_expires_at_size() == lots && s.order_at_size() == orders &&
         s.order_amount_minor_size() == orders && s.order_refunded_minor_size() == orders &&
         s.order_points_size() == orders && s.order_reversed_size() == orders &&
         s.order_lot_id_size() == orders;
}

bool ParseCustomerState(std::string_view bytes, v1::CustomerState* state) {
  return state->ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) &&
         ColumnsAgree(state->ledger());
}

absl::Status ApplyEntry(const Rules& rules, const v1::LedgerEntry& e, v1::LedgerState* s,
                        std::vector<std::string>* dropped_orders) {
  const int64_t t = e.effective_at();
  if (s->entries() > 0 && t < s->clock()) return Inconsistent(e, "time goes backwards");
  Settle(rules, t, s, dropped_orders);
  if (s->entries() == 0) s->set_first_at(t);
  s->set_clock(t);
  s->set_entries(s->entries() + 1);
  switch (e.kind()) {
    case v1::PURCHASE: {
      if (s->order_at_size() > 0 && s->order_at(s->order_at_size() - 1) > t) {
        return Inconsistent(e, "order time goes backwards");
      }
      s->add_order_id(e.order_id());
      s->add_order_at(t);
      s->add_order_amount_minor(e.amount_minor());
      s->add_order_refunded_minor(0);
      s->add_order_points(e.points());
      s->add_order_reversed(0);
      s->add_order_lot_id(e.points() > 0 ? e.lot_id() : 0);
      s->set_accepted_purchases(s->accepted_purchases() + 1);
      return Credit(e, s);
    }
    case v1::REFEREE_BONUS:
    case v1::REFERRER_BONUS:
    case v1::ADJUSTMENT_CREDIT:
      return Credit(e, s);
    case v1::REFUND: {
      const int i = FindOrder(*s, e.order_id());
      if (i < 0) return Inconsistent(e, "refund of an order not in the ledger");
      if (s->order_refunded_minor(i) + e.amount_minor() > s->order_amount_minor(i)) {
        return Inconsistent(e, "refund exceeds the order");
      }
      s->set_order_refunded_minor(i, s->order_refunded_minor(i) + e.amount_minor());
      s->set_order_reversed(i, s->order_reversed(i) + e.points());
      s->set_reversed(s->reversed() + e.points());
      return Debit(e, s);
    }
    case v1::CLAWBACK:
      s->set_reversed(s->reversed() + e.points());
      return Debit(e, s);
    case v1::ADJUSTMENT_DEBIT:
      s->set_adjusted_out(s->adjusted_out() + e.points());
      return Debit(e, s);
    case v1::REDEMPTION:
      if (e.debt_added() != 0) return Inconsistent(e, "a redemption never creates debt");
      s->set_redeemed(s->redeemed() + e.points());
      return Debit(e, s);
    case v1::REDEMPTION_CANCEL:
      return Restore(e, s);
    case v1::REFERRAL_RECORDED:
    case v1::REFERRAL_UNQUALIFIED:
    case v1::REJECTED:
      return absl::OkStatus();
    default:
      return Inconsistent(e, "unknown entry kind");
  }
}

int64_t AvailableAt(const v1::LedgerState& s, int64_t t) {
  int64_t sum = 0;
  for (int i = 0; i < s.lot_id_size(); ++i) {
    if (s.lot_available_at(i) <= t && t < s.lot_expires_at(i)) sum += s.lot_remaining(i);
  }
  return sum - s.debt();
}

std::vector<int> FifoLots(const v1::LedgerState& s, int64_t t, DrawFrom from) {
  std::vector<int> out;
  for (int i = 0; i < s.lot_id_size(); ++i) {
    if (s.lot_remaining(i) <= 0 || s.lot_expires_at(i) <= t) continue;
    if (from == DrawFrom::kAvailable && s.lot_available_at(i) > t) continue;
    out.push_back(i);
  }
  std::stable_sort(out.begin(), out.end(), [&](int a, int b) {
    return s.lot_expires_at(a) < s.lot_expires_at(b);  // ties keep creation order
  });
  return out;
}

BalanceView EvaluateBalance(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  BalanceView b;
  b.earned = s.earned();
  b.redeemed = s.redeemed();
  b.reversed = s.reversed();
  b.adjusted_out = s.adjusted_out();
  b.debt = s.debt();
  b.expired = s.expired_settled();
  for (int i = 0; i < s.lot_id_size(); ++i) {
    const int64_t remaining = s.lot_remaining(i), expires_at = s.lot_expires_at(i);
    if (t < s.lot_available_at(i)) {
      b.pending += remaining;
    } else if (t < expires_at) {
      b.available += remaining;
      if (remaining > 0 && expires_at <= t + rules.expiring_soon_s) {
        b.expiring_soon.push_back({remaining, expires_at});
      }
    } else {
      b.expired += remaining;
    }
  }
  b.available -= s.debt();
  std::stable_sort(b.expiring_soon.begin(), b.expiring_soon.end(),
                   [](const ExpiringLot& x, const ExpiringLot& y) {
                     return x.expires_at < y.expires_at;
                   });
  return b;
}

int64_t RollingSpend(const Rules& rules, const v1::LedgerState& s, int64_t at) {
  int64_t sum = 0;
  for (int i = 0; i < s.order_at_size(); ++i) {
    if (s.order_at(i) > at) break;  // orders are in time order
    if (s.order_at(i) > at - rules.spend_window_s) sum += NetAmount(s, i);
  }
  return sum;
}

int FirstOrderAfter(const v1::LedgerState& s, int64_t at) {
  const auto& times = s.order_at();
  return static_cast<int>(std::upper_bound(times.begin(), times.end(), at) - times.begin());
}

namespace {

// Calls reach(t_o, k) for each order with a positive net amount and time t_o in
// (t - status, t], in time order, with the tier k its rolling spend buys (the net
// amounts of orders in (t_o - window, t_o]); stops when reach returns false. Orders
// are in time order, so one pass with a sliding window does it: [lo, hi) are the
// orders in the window of order i.
template <typename Reach>
void ForEachTierReached(const Rules& rules, const v1::LedgerState& s, int64_t t, Reach reach) {
  const auto& at = s.order_at();
  const int n = at.size();
  const int from = FirstOrderAfter(s, t - rules.tier_status_s);  // the status window's first
  if (from >= n) return;
  int lo = FirstOrderAfter(s, at[from] - rules.spend_window_s), hi = lo;
  int64_t window = 0;
  for (int i = from; i < n && at[i] <= t; ++i) {
    const int64_t ti = at[i];
    for (; hi < n && at[hi] <= ti; ++hi) window += NetAmount(s, hi);
    for (; lo < hi && at[lo] <= ti - rules.spend_window_s; ++lo) window -= NetAmount(s, lo);
    if (NetAmount(s, i) <= 0) continue;
    if (!reach(ti, rules.TierBySpend(window))) return;
  }
}

}  // namespace

Tier TierAt(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  Tier tier = Tier::kBronze;
  ForEachTierReached(rules, s, t, [&](int64_t, Tier k) {
    tier = std::max(tier, k);
    return tier != Tier::kPlatinum;  // nothing is higher
  });
  return tier;
}

std::vector<TierLapse> TierLapses(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  // The orders of the status window at t with the tier each reached; none comes
  // later, so the tier at T >= t is the highest of those with time + status > T: a
  // maximum over a suffix of this list, which shrinks from the front as T grows.
  std::vector<std::pair<int64_t, Tier>> reached;
  ForEachTierReached(rules, s, t, [&](int64_t ti, Tier k) {
    reached.emplace_back(ti, k);
    return true;
  });
  std::vector<Tier> suffix(reached.size() + 1, Tier::kBronze);
  for (size_t i = reached.size(); i-- > 0;) suffix[i] = std::max(suffix[i + 1], reached[i].second);
  std::vector<TierLapse> out;
  for (size_t i = 0; i < reached.size(); ++i) {
    if (suffix[i + 1] != suffix[i]) {
      out.push_back({reached[i].first + rules.tier_status_s, suffix[i], suffix[i + 1]});
    }
  }
  return out;
}

TierView EvaluateTier(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  TierView v;
  // The tier is the highest reached by an order of the status window.
  int64_t latest = INT64_MIN;  // the latest order time that reached v.tier
  ForEachTierReached(rules, s, t, [&](int64_t ti, Tier k) {
    if (k > v.tier) {
      v.tier = k;
      latest = ti;
    } else if (k == v.tier) {
      latest = std::max(latest, ti);
    }
    return true;
  });
  if (v.tier != Tier::kBronze) v.valid_until = latest + rules.tier_status_s;
  v.rolling_spend_minor = RollingSpend(rules, s, t);
  if (v.tier != Tier::kPlatinum) {
    const int next = static_cast<int>(v.tier) + 1;
    v.next_tier = static_cast<Tier>(next);
    v.spend_to_next_tier_minor =
        std::max<int64_t>(0, rules.tier_threshold[next] - v.rolling_spend_minor);
  }
  return v;
}

const char* RiskLevelName(RiskLevel level) {
  switch (level) {
    case RiskLevel::kNew: return "NEW";
    case RiskLevel::kActive: return "ACTIVE";
    case RiskLevel::kCooling: return "COOLING";
    case RiskLevel::kAtRisk: return "AT_RISK";
    case RiskLevel::kChurned: return "CHURNED";
  }
  return "NEW";
}

ChurnView EvaluateChurnRisk(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  ChurnView v;
  // The purchase times: old_purchase_at, then the orders with a positive net amount
  // up to t, both in time order. Needed: the last one and the m-th from the end (m
  // the churn interval's count, or all if fewer), so a walk back from the end.
  const int64_t want = rules.churn_interval_purchases;
  int64_t m = 0, last = 0, first = 0;
  auto take = [&](int64_t at) {
    if (m == 0) last = at;
    first = at;
    ++m;
  };
  for (int i = s.order_at_size() - 1; i >= 0 && m < want; --i) {
    if (s.order_at(i) <= t && NetAmount(s, i) > 0) take(s.order_at(i));
  }
  for (int i = s.old_purchase_at_size() - 1; i >= 0 && m < want; --i) take(s.old_purchase_at(i));
  if (m == 0) return v;
  int64_t expected = m == 1 ? rules.churn_default_interval_s : (last - first) / (m - 1);
  expected = std::max(expected, rules.churn_min_interval_s);
  const int64_t elapsed = t - last;
  v.last_purchase_at = last;
  v.days_since_last_purchase = elapsed / kDaySeconds;
  v.expected_interval_s = expected;
  v.recency_ratio = static_cast<double>(elapsed) / static_cast<double>(expected);
  const __int128 e = elapsed, x = expected;
  if (elapsed >= rules.churned_s) {
    v.risk_level = RiskLevel::kChurned;
  } else if (e * rules.at_risk_den >= x * rules.at_risk_num) {
    v.risk_level = RiskLevel::kAtRisk;
  } else if (e * rules.cooling_den >= x * rules.cooling_num) {
    v.risk_level = RiskLevel::kCooling;
  } else {
    v.risk_level = RiskLevel::kActive;
  }
  return v;
}

ChurnView EvaluateChurn(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  ChurnView v = EvaluateChurnRisk(rules, s, t);
  if (!v.last_purchase_at.has_value()) return v;
  for (int i = FirstOrderAfter(s, t - rules.churn_window_s); i < s.order_at_size(); ++i) {
    if (s.order_at(i) > t) break;
    if (NetAmount(s, i) > 0) ++v.purchases_365d;
  }
  v.spend_365d_minor = RollingSpend(rules, s, t);
  return v;
}

}  // namespace loyalty
