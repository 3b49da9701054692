#include "projections/decider.h"

#include <algorithm>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/status_macros.h"
#include "projections/ledger.h"

namespace loyalty {
namespace {

// t = max(at, the ledger's clock) (rules.md section 1); an empty ledger has no clock.
int64_t EffectiveTime(const v1::LedgerState& s, int64_t at) {
  return s.entries() == 0 ? at : std::max(at, s.clock());
}

// Everything one decision needs at hand.
struct Context {
  const v1::Event& event;
  uint64_t seq;
  const Rules& rules;
  StateSource* states;
  v1::Outcome* outcome;
};

v1::LedgerEntry NewEntry(const Context& c, const std::string& customer_id, int64_t t,
                         v1::EntryKind kind) {
  v1::LedgerEntry e;
  e.set_customer_id(customer_id);
  e.set_effective_at(t);
  e.set_kind(kind);
  e.set_event_id(c.event.event_id());
  e.set_seq(c.seq);
  return e;
}

// Records `entry` in the outcome and folds it into the customer's ledger. The ids
// of orders that leave the ledger (past the order horizon) are remembered.
absl::Status Commit(const Context& c, v1::CustomerState* customer, v1::LedgerEntry entry) {
  std::vector<std::string> dropped;
  LOYALTY_RETURN_IF_ERROR(ApplyEntry(c.rules, entry, customer->mutable_ledger(), &dropped));
  for (const std::string& id : dropped) {
    c.states->Remember(DecisionIdKey(customer->customer_id(), IdKind::kOrder, id), "");
  }
  customer->set_archived_orders(customer->archived_orders() + dropped.size());
  if (OrderIdIndex* index = c.states->OrderIndex(*customer)) {
    for (const std::string& id : dropped) index->Erase(id);
    if (entry.kind() == v1::PURCHASE) index->Insert(entry.order_id());
  }
  *c.outcome->add_entries() = std::move(entry);
  return absl::OkStatus();
}

// Whether the customer has an accepted purchase with this order id: one of the
// ledger's orders, or one remembered after it left them.
absl::StatusOr<bool> KnownOrder(const Context& c, const v1::CustomerState& me,
                                const std::string& order_id) {
  const OrderIdIndex* index = c.states->OrderIndex(me);
  if ((index == nullptr || index->MayContain(order_id)) && FindOrder(me.ledger(), order_id) >= 0) {
    return true;
  }
  if (me.archived_orders() == 0) return false;
  LOYALTY_ASSIGN_OR_RETURN(
      std::optional<std::string> v,
      c.states->Recall(DecisionIdKey(me.customer_id(), IdKind::kOrder, order_id)));
  return v.has_value();
}

// The redemption `id` of the customer: in the state (`*hot` points at it), or
// remembered past its cancel window (returned, `*hot` null). Nullopt if none.
absl::StatusOr<std::optional<v1::RedemptionRecord>> FindRedemption(
    const Context& c, v1::CustomerState* me, const std::string& id,
    v1::RedemptionRecord** hot) {
  *hot = nullptr;
  for (v1::RedemptionRecord& r : *me->mutable_redemptions()) {
    if (r.redemption_id() == id) {
      *hot = &r;
      return r;
    }
  }
  if (me->archived_redemptions() == 0) return std::nullopt;
  LOYALTY_ASSIGN_OR_RETURN(
      std::optional<std::string> v,
      c.states->Recall(DecisionIdKey(me->customer_id(), IdKind::kRedemption, id)));
  if (!v.has_value()) return std::nullopt;
  v1::RedemptionRecord rec;
  if (!rec.ParseFromString(*v)) {
    return absl::DataLossError(absl::StrCat("the remembered redemption ", id, " of customer ",
                                            me->customer_id(), " does not decode"));
  }
  rec.set_redemption_id(id);
  return rec;
}

// Remembers a redemption in the decision ids (without its id: the key holds it).
// Its draws go with it: a later program with a wider cancel window can still
// cancel it exactly.
void ArchiveRedemption(const Context& c, const v1::CustomerState& me,
                       const v1::RedemptionRecord& r) {
  v1::RedemptionRecord kept = r;
  kept.clear_redemption_id();
  c.states->Remember(DecisionIdKey(me.customer_id(), IdKind::kRedemption, r.redemption_id()),
                     SerializeDeterministic(kept));
}

// A credit of `points` creating a lot available at `available_at`; it pays debt
// first (rules.md section 2).
void MakeCredit(const Rules& rules, const v1::LedgerState& s, int64_t points,
                int64_t available_at, v1::LedgerEntry* e) {
  e->set_points(points);
  if (points <= 0) return;
  e->set_lot_id(s.next_lot_id() + 1);
  e->set_available_at(available_at);
  e->set_expires_at(available_at + rules.expiry_s);
  e->set_debt_paid(std::min(s.debt(), points));
}

// A debit of `points` at t: from lot `own_lot` first (if unexpired), then the
// other lots FIFO, then debt (or, for kAvailable, nothing: the caller checked).
void MakeDebit(const v1::LedgerState& s, int64_t t, int64_t points, uint64_t own_lot,
               DrawFrom from, v1::LedgerEntry* e) {
  e->set_points(points);
  int64_t left = points;
  int own = own_lot != 0 ? FindLot(s, own_lot) : -1;
  if (own >= 0 && s.lot_expires_at(own) > t && s.lot_remaining(own) > 0 && left > 0) {
    const int64_t take = std::min(left, s.lot_remaining(own));
    v1::LotDraw* d = e->add_draws();
    d->set_lot_id(own_lot);
    d->set_points(take);
    left -= take;
  }
  for (int i : FifoLots(s, t, from)) {
    if (left == 0) break;
    if (i == own) continue;
    const int64_t take = std::min(left, s.lot_remaining(i));
    v1::LotDraw* d = e->add_draws();
    d->set_lot_id(s.lot_id(i));
    d->set_points(take);
    left -= take;
  }
  e->set_debt_added(left);
}

void Reject(const Context& c, v1::RejectReason reason) {
  c.outcome->set_status(v1::REJECTED_BY_RULES);
  c.outcome->set_reason(reason);
}

absl::Status DecidePurchase(const Context& c, v1::CustomerState* me, int64_t t) {
  const v1::Purchase& p = c.event.purchase();
  const Rules& r = c.rules;
  if (p.currency() != r.currency) {
    Reject(c, v1::WRONG_CURRENCY);
    return absl::OkStatus();
  }
  LOYALTY_ASSIGN_OR_RETURN(const bool duplicate, KnownOrder(c, *me, p.order_id()));
  if (duplicate) {
    Reject(c, v1::DUPLICATE_ORDER);
    return absl::OkStatus();
  }
  // E in minor units x 10,000; P = floor(E x M x points_per_major /
  // (minor_per_major x 10^8)), rounded down once, in 128 bits.
  absl::int128 eligible = 0;
  if (p.lines_size() == 0) {
    eligible = absl::int128(p.amount_minor()) * 10'000;
  } else {
    for (const v1::PurchaseLine& line : p.lines()) {
      eligible += absl::int128(line.amount_minor()) * r.CategoryBp(line.category());
    }
  }
  const Tier tier = TierAt(r, me->ledger(), t);
  const absl::int128 m = r.tier_multiplier_bp[static_cast<int>(tier)];
  const absl::int128 points128 = eligible * m * r.points_per_major /
                                 (absl::int128(r.minor_per_major) * 100'000'000);
  // Validation bounds amount_minor to int64, and the program bounds the
  // multipliers, so P is far below 2^63.
  const int64_t points = static_cast<int64_t>(points128);
  const bool first_purchase = me->ledger().accepted_purchases() == 0;

  v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::PURCHASE);
  e.set_order_id(p.order_id());
  e.set_amount_minor(p.amount_minor());
  MakeCredit(r, me->ledger(), points, t + r.pending_s, &e);
  LOYALTY_RETURN_IF_ERROR(Commit(c, me, std::move(e)));

  // The referee's first accepted purchase decides an open referral (section 5).
  if (!first_purchase || !me->has_referral() || me->referral().closed()) {
    return absl::OkStatus();
  }
  v1::ReferralRecord* ref = me->mutable_referral();
  ref->set_closed(true);
  if (t > ref->at() + r.referral_window_s || p.amount_minor() < r.referral_min_amount) {
    v1::LedgerEntry closed = NewEntry(c, me->customer_id(), t, v1::REFERRAL_UNQUALIFIED);
    closed.set_counterparty_id(ref->referrer_id());
    return Commit(c, me, std::move(closed));
  }
  ref->set_qualified(true);
  ref->set_order_id(p.order_id());
  ref->set_purchase_at(t);
  v1::LedgerEntry bonus = NewEntry(c, me->customer_id(), t, v1::REFEREE_BONUS);
  bonus.set_counterparty_id(ref->referrer_id());
  bonus.set_order_id(p.order_id());
  MakeCredit(r, me->ledger(), r.referee_points, t + r.pending_s, &bonus);
  ref->set_referee_lot_id(bonus.lot_id());
  LOYALTY_RETURN_IF_ERROR(Commit(c, me, std::move(bonus)));

  // The referrer's bonus: an entry in the referrer's ledger (a cross-customer
  // effect), unless the cap is reached.
  const std::string referrer_id = ref->referrer_id();
  LOYALTY_ASSIGN_OR_RETURN(v1::CustomerState * referrer, c.states->Mutable(referrer_id));
  const int64_t tb = EffectiveTime(referrer->ledger(), t);
  int64_t recent = 0;
  for (int64_t at : referrer->referrer_bonus_at()) {
    if (at > tb - r.referrer_cap_window_s && at <= tb) ++recent;
  }
  if (recent >= r.referrer_cap) return absl::OkStatus();  // skipped: no entry, no clock move
  v1::LedgerEntry rb = NewEntry(c, referrer_id, tb, v1::REFERRER_BONUS);
  rb.set_counterparty_id(me->customer_id());
  rb.set_order_id(p.order_id());
  MakeCredit(r, referrer->ledger(), r.referrer_points, tb + r.pending_s, &rb);
  ref->set_referrer_paid(true);
  ref->set_referrer_lot_id(rb.lot_id());
  // Keep only what the cap can still count.
  auto* times = referrer->mutable_referrer_bonus_at();
  times->erase(std::remove_if(times->begin(), times->end(),
                              [&](int64_t at) { return at <= tb - r.referrer_cap_window_s; }),
               times->end());
  referrer->add_referrer_bonus_at(tb);
  return Commit(c, referrer, std::move(rb));
}

absl::Status DecideRefund(const Context& c, v1::CustomerState* me, int64_t t) {
  const v1::Refund& rf = c.event.refund();
  const Rules& r = c.rules;
  LOYALTY_ASSIGN_OR_RETURN(const bool known, KnownOrder(c, *me, rf.order_id()));
  if (!known) {
    Reject(c, v1::UNKNOWN_ORDER);
    return absl::OkStatus();
  }
  const v1::LedgerState& ledger = me->ledger();
  const int order = FindOrder(ledger, rf.order_id());
  // An accepted order no longer in the ledger is past the order horizon, which is
  // at least the refund window.
  if (order < 0 || t >= ledger.order_at(order) + r.refund_window_s) {
    Reject(c, v1::REFUND_WINDOW_CLOSED);
    return absl::OkStatus();
  }
  const int64_t amount = ledger.order_amount_minor(order);
  if (rf.amount_minor() > NetAmount(ledger, order)) {
    Reject(c, v1::REFUND_EXCEEDS_ORDER);
    return absl::OkStatus();
  }
  const int64_t refunded = ledger.order_refunded_minor(order) + rf.amount_minor();
  // target = ceil(P x R / A), in 128 bits.
  const absl::int128 num = absl::int128(ledger.order_points(order)) * refunded;
  const int64_t target = static_cast<int64_t>((num + amount - 1) / amount);
  const int64_t reverse = target - ledger.order_reversed(order);
  const std::string order_id = rf.order_id();
  const uint64_t own_lot = ledger.order_lot_id(order);
  const bool full = refunded == amount;

  v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::REFUND);
  e.set_order_id(order_id);
  e.set_amount_minor(rf.amount_minor());
  MakeDebit(me->ledger(), t, reverse, own_lot, DrawFrom::kUnexpired, &e);
  LOYALTY_RETURN_IF_ERROR(Commit(c, me, std::move(e)));

  // Referral claw-back (section 4): a full refund of the qualifying purchase
  // within the claw-back window reverses both bonuses that were paid.
  const v1::ReferralRecord& ref = me->referral();
  if (!full || !me->has_referral() || !ref.qualified() || ref.clawed_back() ||
      ref.order_id() != order_id || t >= ref.purchase_at() + r.clawback_s) {
    return absl::OkStatus();
  }
  me->mutable_referral()->set_clawed_back(true);
  const std::string referrer_id = ref.referrer_id();
  const bool referrer_paid = ref.referrer_paid();
  const uint64_t referee_lot = ref.referee_lot_id(), referrer_lot = ref.referrer_lot_id();
  v1::LedgerEntry back = NewEntry(c, me->customer_id(), t, v1::CLAWBACK);
  back.set_order_id(order_id);
  back.set_counterparty_id(referrer_id);
  MakeDebit(me->ledger(), t, r.referee_points, referee_lot, DrawFrom::kUnexpired, &back);
  LOYALTY_RETURN_IF_ERROR(Commit(c, me, std::move(back)));
  if (!referrer_paid) return absl::OkStatus();
  LOYALTY_ASSIGN_OR_RETURN(v1::CustomerState * referrer, c.states->Mutable(referrer_id));
  const int64_t tr = EffectiveTime(referrer->ledger(), t);
  v1::LedgerEntry rb = NewEntry(c, referrer_id, tr, v1::CLAWBACK);
  rb.set_order_id(order_id);
  rb.set_counterparty_id(c.event.customer_id());
  MakeDebit(referrer->ledger(), tr, r.referrer_points, referrer_lot, DrawFrom::kUnexpired, &rb);
  return Commit(c, referrer, std::move(rb));
}

absl::Status DecideReferral(const Context& c, v1::CustomerState* me, int64_t t) {
  const v1::Referral& ref = c.event.referral();
  if (ref.referrer_id() == ref.referee_id()) {
    Reject(c, v1::SELF_REFERRAL);
  } else if (me->ledger().accepted_purchases() > 0) {
    Reject(c, v1::ALREADY_CUSTOMER);
  } else if (me->has_referral()) {
    Reject(c, v1::ALREADY_REFERRED);
  } else {
    v1::ReferralRecord* rec = me->mutable_referral();
    rec->set_referrer_id(ref.referrer_id());
    rec->set_at(t);
    v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::REFERRAL_RECORDED);
    e.set_counterparty_id(ref.referrer_id());
    return Commit(c, me, std::move(e));
  }
  return absl::OkStatus();
}

absl::Status DecideRedemption(const Context& c, v1::CustomerState* me, int64_t t) {
  const v1::Redemption& red = c.event.redemption();
  v1::RedemptionRecord* hot;
  LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::RedemptionRecord> earlier,
                           FindRedemption(c, me, red.redemption_id(), &hot));
  if (earlier.has_value()) {
    Reject(c, v1::DUPLICATE_REDEMPTION);
    return absl::OkStatus();
  }
  v1::RedemptionRecord* rec = me->add_redemptions();
  rec->set_redemption_id(red.redemption_id());
  rec->set_at(t);
  if (AvailableAt(me->ledger(), t) < red.points()) {
    Reject(c, v1::INSUFFICIENT_POINTS);
    return absl::OkStatus();
  }
  rec->set_accepted(true);
  v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::REDEMPTION);
  e.set_redemption_id(red.redemption_id());
  MakeDebit(me->ledger(), t, red.points(), 0, DrawFrom::kAvailable, &e);
  for (const v1::LotDraw& d : e.draws()) {
    *rec->add_draws() = d;
    rec->add_draw_expires_at(me->ledger().lot_expires_at(FindLot(me->ledger(), d.lot_id())));
  }
  return Commit(c, me, std::move(e));
}

absl::Status DecideCancel(const Context& c, v1::CustomerState* me, int64_t t) {
  const std::string& id = c.event.redemption_cancel().redemption_id();
  v1::RedemptionRecord* hot;
  LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::RedemptionRecord> found,
                           FindRedemption(c, me, id, &hot));
  if (!found.has_value() || !found->accepted() || found->cancelled()) {
    Reject(c, v1::UNKNOWN_REDEMPTION);
    return absl::OkStatus();
  }
  if (t >= found->at() + c.rules.cancel_window_s) {
    Reject(c, v1::CANCEL_WINDOW_CLOSED);
    return absl::OkStatus();
  }
  // A remembered redemption inside the window (a later program widened it) is
  // cancelled as one in the state, then remembered cancelled.
  v1::RedemptionRecord* rec = hot != nullptr ? hot : &*found;
  rec->set_cancelled(true);
  v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::REDEMPTION_CANCEL);
  e.set_redemption_id(id);
  int64_t total = 0, debt = me->ledger().debt();
  for (int i = 0; i < rec->draws_size(); ++i) {
    const v1::LotDraw& d = rec->draws(i);
    total += d.points();
    if (rec->draw_expires_at(i) <= t) {
      e.set_expired_points(e.expired_points() + d.points());
      continue;
    }
    const int64_t pay = std::min(debt, d.points());
    debt -= pay;
    e.set_debt_paid(e.debt_paid() + pay);
    if (d.points() - pay > 0) {
      v1::LotDraw* back = e.add_draws();
      back->set_lot_id(d.lot_id());
      back->set_points(d.points() - pay);
    }
  }
  e.set_points(total);
  rec->clear_draws();
  rec->clear_draw_expires_at();
  if (hot == nullptr) ArchiveRedemption(c, *me, *rec);
  return Commit(c, me, std::move(e));
}

absl::Status DecideAdjustment(const Context& c, v1::CustomerState* me, int64_t t) {
  const int64_t points = c.event.adjustment().points();
  if (points > 0) {
    v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::ADJUSTMENT_CREDIT);
    MakeCredit(c.rules, me->ledger(), points, t, &e);
    return Commit(c, me, std::move(e));
  }
  v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::ADJUSTMENT_DEBIT);
  // Validation bounds |points| to kMaxPoints, so the negation is safe.
  MakeDebit(me->ledger(), t, -points, 0, DrawFrom::kUnexpired, &e);
  return Commit(c, me, std::move(e));
}

// Moves the redemptions past their cancel window at t out of the state: from then
// on the rules need them only for DUPLICATE_REDEMPTION and CANCEL_WINDOW_CLOSED (or,
// under a later program with a wider window, for a cancel: their portions go along).
void Trim(const Context& c, int64_t t, v1::CustomerState* me) {
  auto* redemptions = me->mutable_redemptions();
  int kept = 0;
  for (int i = 0; i < redemptions->size(); ++i) {
    const v1::RedemptionRecord& rec = redemptions->Get(i);
    if (t >= rec.at() + c.rules.cancel_window_s) {
      ArchiveRedemption(c, *me, rec);
      me->set_archived_redemptions(me->archived_redemptions() + 1);
      continue;
    }
    if (kept != i) redemptions->SwapElements(kept, i);
    ++kept;
  }
  redemptions->DeleteSubrange(kept, redemptions->size() - kept);
}

}  // namespace

absl::StatusOr<v1::Outcome> Decide(const v1::Event& event, uint64_t seq, const Rules& rules,
                                   uint32_t program_version, StateSource* states) {
  LOYALTY_ASSIGN_OR_RETURN(v1::CustomerState * me, states->Mutable(event.customer_id()));
  if (me->customer_id().empty()) me->set_customer_id(event.customer_id());
  const int64_t t = EffectiveTime(me->ledger(), event.occurred_at().seconds());
  v1::Outcome outcome;
  outcome.set_status(v1::ACCEPTED);
  outcome.set_program_version(program_version);
  outcome.set_effective_at(t);
  Context c{event, seq, rules, states, &outcome};
  Trim(c, t, me);
  absl::Status s;
  switch (event.payload_case()) {
    case v1::Event::kPurchase: s = DecidePurchase(c, me, t); break;
    case v1::Event::kRefund: s = DecideRefund(c, me, t); break;
    case v1::Event::kReferral: s = DecideReferral(c, me, t); break;
    case v1::Event::kRedemption: s = DecideRedemption(c, me, t); break;
    case v1::Event::kRedemptionCancel: s = DecideCancel(c, me, t); break;
    case v1::Event::kAdjustment: s = DecideAdjustment(c, me, t); break;
    case v1::Event::PAYLOAD_NOT_SET:
      return absl::InvalidArgumentError("Decide: an event without payload was not validated");
  }
  LOYALTY_RETURN_IF_ERROR(s);
  if (outcome.status() == v1::REJECTED_BY_RULES) {
    // A rejected event still moves the customer's clock and makes them known.
    v1::LedgerEntry e = NewEntry(c, me->customer_id(), t, v1::REJECTED);
    LOYALTY_RETURN_IF_ERROR(Commit(c, me, std::move(e)));
  }
  return outcome;
}

std::string DecisionIdKey(std::string_view customer_id, IdKind kind, std::string_view id) {
  std::string key;
  key.reserve(2 + customer_id.size() + id.size());
  key.push_back(static_cast<char>(customer_id.size()));
  key.append(customer_id);
  key.push_back(static_cast<char>(kind));
  key.append(id);
  return key;
}

const char* RejectReasonName(v1::RejectReason reason) {
  return v1::RejectReason_Name(reason).c_str();
}

}  // namespace loyalty
