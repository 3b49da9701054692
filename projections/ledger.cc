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
void Settle(const Rules& rules, int64_t t, v1::LedgerState* s,
            std::vector<std::string>* dropped_orders) {
  auto* lots = s->mutable_lots();
  int kept = 0;
  for (int i = 0; i < lots->size(); ++i) {
    v1::Lot* lot = lots->Mutable(i);
    if (lot->expires_at() <= t) {
      s->set_expired_settled(s->expired_settled() + lot->remaining());
      continue;
    }
    if (kept != i) lots->SwapElements(kept, i);
    ++kept;
  }
  lots->DeleteSubrange(kept, lots->size() - kept);

  const int64_t horizon = t - rules.OrderHorizon();
  int drop = 0;
  while (drop < s->orders_size() && s->orders(drop).at() <= horizon) {
    const v1::Order& o = s->orders(drop);
    if (o.amount_minor() - o.refunded_minor() > 0) s->add_old_purchase_at(o.at());
    if (dropped_orders != nullptr) dropped_orders->push_back(o.order_id());
    ++drop;
  }
  if (drop > 0) s->mutable_orders()->DeleteSubrange(0, drop);
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
    v1::Lot* lot = s->add_lots();
    lot->set_id(e.lot_id());
    lot->set_remaining(e.points() - e.debt_paid());
    lot->set_available_at(e.available_at());
    lot->set_expires_at(e.expires_at());
  }
  return absl::OkStatus();
}

absl::Status Debit(const v1::LedgerEntry& e, v1::LedgerState* s) {
  int64_t total = e.debt_added();
  if (e.points() < 0 || e.debt_added() < 0) return Inconsistent(e, "negative debit");
  for (const v1::LotDraw& d : e.draws()) {
    const int i = FindLot(*s, d.lot_id());
    if (i < 0 || d.points() <= 0 || s->lots(i).remaining() < d.points()) {
      return Inconsistent(e, absl::StrCat("draw of ", d.points(), " from lot ", d.lot_id()));
    }
    s->mutable_lots(i)->set_remaining(s->lots(i).remaining() - d.points());
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
    s->mutable_lots(i)->set_remaining(s->lots(i).remaining() + d.points());
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
  int lo = 0, hi = s.lots_size();
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (s.lots(mid).id() < id) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < s.lots_size() && s.lots(lo).id() == id ? lo : -1;
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
      if (!s->orders().empty() && s->orders(s->orders_size() - 1).at() > t) {
        return Inconsistent(e, "order time goes backwards");
      }
      v1::Order* o = s->add_orders();
      o->set_order_id(e.order_id());
      o->set_at(t);
      o->set_amount_minor(e.amount_minor());
      o->set_points(e.points());
      o->set_lot_id(e.points() > 0 ? e.lot_id() : 0);
      s->set_accepted_purchases(s->accepted_purchases() + 1);
      return Credit(e, s);
    }
    case v1::REFEREE_BONUS:
    case v1::REFERRER_BONUS:
    case v1::ADJUSTMENT_CREDIT:
      return Credit(e, s);
    case v1::REFUND: {
      v1::Order* order = nullptr;
      for (int i = s->orders_size() - 1; i >= 0; --i) {
        if (s->orders(i).order_id() == e.order_id()) {
          order = s->mutable_orders(i);
          break;
        }
      }
      if (order == nullptr) return Inconsistent(e, "refund of an order not in the ledger");
      if (order->refunded_minor() + e.amount_minor() > order->amount_minor()) {
        return Inconsistent(e, "refund exceeds the order");
      }
      order->set_refunded_minor(order->refunded_minor() + e.amount_minor());
      order->set_reversed(order->reversed() + e.points());
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
  for (const v1::Lot& lot : s.lots()) {
    if (lot.available_at() <= t && t < lot.expires_at()) sum += lot.remaining();
  }
  return sum - s.debt();
}

std::vector<int> FifoLots(const v1::LedgerState& s, int64_t t, DrawFrom from) {
  std::vector<int> out;
  for (int i = 0; i < s.lots_size(); ++i) {
    const v1::Lot& lot = s.lots(i);
    if (lot.remaining() <= 0 || lot.expires_at() <= t) continue;
    if (from == DrawFrom::kAvailable && lot.available_at() > t) continue;
    out.push_back(i);
  }
  std::stable_sort(out.begin(), out.end(), [&](int a, int b) {
    return s.lots(a).expires_at() < s.lots(b).expires_at();  // ties keep creation order
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
  std::vector<const v1::Lot*> soon;
  for (const v1::Lot& lot : s.lots()) {
    if (t < lot.available_at()) {
      b.pending += lot.remaining();
    } else if (t < lot.expires_at()) {
      b.available += lot.remaining();
      if (lot.remaining() > 0 && lot.expires_at() <= t + rules.expiring_soon_s) {
        soon.push_back(&lot);
      }
    } else {
      b.expired += lot.remaining();
    }
  }
  b.available -= s.debt();
  std::stable_sort(soon.begin(), soon.end(), [](const v1::Lot* a, const v1::Lot* b) {
    return a->expires_at() < b->expires_at();
  });
  for (const v1::Lot* lot : soon) b.expiring_soon.push_back({lot->remaining(), lot->expires_at()});
  return b;
}

int64_t RollingSpend(const Rules& rules, const v1::LedgerState& s, int64_t at) {
  int64_t sum = 0;
  for (const v1::Order& o : s.orders()) {
    if (o.at() > at) break;  // orders are in time order
    if (o.at() > at - rules.spend_window_s) sum += o.amount_minor() - o.refunded_minor();
  }
  return sum;
}

TierView EvaluateTier(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  TierView v;
  // Each order with a positive net amount and time in (t - status, t] reaches the
  // tier its rolling spend buys (net amounts of orders in (at - window, at]); the
  // tier is the highest reached. Orders are in time order, so one pass with a
  // sliding window does it: [lo, hi) are the orders in the window of order i.
  const auto& orders = s.orders();
  const int n = orders.size();
  int lo = 0, hi = 0;
  int64_t window = 0;
  int64_t latest = INT64_MIN;  // the latest order time that reached v.tier
  for (int i = 0; i < n; ++i) {
    const v1::Order& o = orders[i];
    if (o.at() > t) break;
    for (; hi < n && orders[hi].at() <= o.at(); ++hi) {
      window += orders[hi].amount_minor() - orders[hi].refunded_minor();
    }
    for (; lo < hi && orders[lo].at() <= o.at() - rules.spend_window_s; ++lo) {
      window -= orders[lo].amount_minor() - orders[lo].refunded_minor();
    }
    if (o.at() <= t - rules.tier_status_s) continue;
    if (o.amount_minor() - o.refunded_minor() <= 0) continue;
    const Tier k = rules.TierBySpend(window);
    if (k > v.tier) {
      v.tier = k;
      latest = o.at();
    } else if (k == v.tier) {
      latest = std::max(latest, o.at());
    }
  }
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

ChurnView EvaluateChurn(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  ChurnView v;
  // The purchase times: old_purchase_at, then the orders with a positive net amount
  // up to t, both in time order. Needed: the last one and the m-th from the end.
  auto counts = [&](const v1::Order& o) {
    return o.at() <= t && o.amount_minor() - o.refunded_minor() > 0;
  };
  const size_t old_count = static_cast<size_t>(s.old_purchase_at_size());
  size_t count = old_count;
  int64_t last = 0;
  if (old_count > 0) last = s.old_purchase_at(static_cast<int>(old_count) - 1);
  for (const v1::Order& o : s.orders()) {
    if (!counts(o)) continue;
    ++count;
    last = o.at();
  }
  if (count == 0) return v;
  const size_t m = std::min<size_t>(count, rules.churn_interval_purchases);
  const size_t first_index = count - m;  // the m-th time from the end
  int64_t first = 0;
  if (first_index < old_count) {
    first = s.old_purchase_at(static_cast<int>(first_index));
  } else {
    size_t k = old_count;
    for (const v1::Order& o : s.orders()) {
      if (!counts(o)) continue;
      if (k++ == first_index) {
        first = o.at();
        break;
      }
    }
  }
  int64_t expected = m == 1 ? rules.churn_default_interval_s
                            : (last - first) / static_cast<int64_t>(m - 1);
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
  for (const v1::Order& o : s.orders()) {
    if (o.at() > t - rules.churn_window_s && o.at() <= t &&
        o.amount_minor() - o.refunded_minor() > 0) {
      ++v.purchases_365d;
    }
  }
  v.spend_365d_minor = RollingSpend(rules, s, t);
  return v;
}

}  // namespace loyalty
