// Hand-worked tests, one or more per section of rules.md, each with its arithmetic.
// Events go in as JSON through the real ingest path; answers come out of the
// LedgerReader at chosen as_of times.
#include <catch2/catch.hpp>

#include "projections/ledger_reader.h"
#include "projections/stats.h"
#include "tests/testing/ledger_harness.h"

namespace loyalty {
namespace {

using testing::LedgerHarness;
using testing::T;

using testing::Day;
using testing::DayT;

int64_t EntryPoints(const v1::Outcome& o, v1::EntryKind kind, const std::string& customer = "") {
  int64_t sum = 0;
  for (const auto& e : o.entries()) {
    if (e.kind() == kind && (customer.empty() || e.customer_id() == customer)) sum += e.points();
  }
  return sum;
}

// ---------------------------------------------------------------- section 3

TEST_CASE("3: a purchase earns floor(amount x 10,000 x M / 10^10), pending for 14 days") {
  // 12,550 minor units, no lines, BRONZE: E = 125,500,000; P = floor(E x 10,000 /
  // 10^10) = floor(125.5) = 125. Lot available at t + 14 d, expiring 365 d later.
  LedgerHarness h;
  v1::Outcome o = h.Purchase("c1", Day(0), "o1", 12550);
  REQUIRE(o.status() == v1::ACCEPTED);
  REQUIRE(EntryPoints(o, v1::PURCHASE) == 125);
  const v1::LedgerEntry& e = o.entries(0);
  REQUIRE(e.available_at() == DayT(14));
  REQUIRE(e.expires_at() == DayT(14 + 365));

  BalanceView b = h.Balance("c1", Day(0));
  CHECK(b.pending == 125);
  CHECK(b.available == 0);
  CHECK(b.earned == 125);
  CHECK(h.Balance("c1", Day(14, -1)).pending == 125);
  b = h.Balance("c1", Day(14));
  CHECK(b.available == 125);
  CHECK(b.pending == 0);
  // expiringSoon lists a lot once asOf < expiresAt <= asOf + 30 d.
  CHECK(h.Balance("c1", Day(14 + 365 - 30, -1)).expiring_soon.empty());
  b = h.Balance("c1", Day(14 + 365 - 30));
  REQUIRE(b.expiring_soon.size() == 1);
  CHECK(b.expiring_soon[0].points == 125);
  CHECK(b.expiring_soon[0].expires_at == DayT(379));
  b = h.Balance("c1", Day(379));
  CHECK(b.available == 0);
  CHECK(b.expired == 125);
  CHECK(b.expiring_soon.empty());
  CHECK(testing::Conserved(b));
}

TEST_CASE("3: lines use category multipliers and the sum is rounded down once") {
  // Lines grocery 10,000 + gift_card 5,000 (multiplier 0): E = 10,000 x 10,000 =
  // 10^8; P = floor(10^8 x 10,000 / 10^10) = 100.
  LedgerHarness h;
  v1::Outcome o = h.Event(
      "c1", Day(0),
      R"("purchase":{"orderId":"o1","amountMinor":15000,"currency":"EUR","lines":[)"
      R"({"sku":"a","category":"grocery","amountMinor":10000,"quantity":1},)"
      R"({"sku":"g","category":"gift_card","amountMinor":5000,"quantity":1}]})");
  CHECK(EntryPoints(o, v1::PURCHASE) == 100);
  // Three lines of 150: E = 450 x 10,000; P = floor(4.5) = 4 (rounding each line
  // first would give 3).
  o = h.Event("c1", Day(1),
              R"("purchase":{"orderId":"o2","amountMinor":450,"currency":"EUR","lines":[)"
              R"({"sku":"a","category":"x","amountMinor":150},{"sku":"b","category":"y","amountMinor":150},)"
              R"({"sku":"c","category":"z","amountMinor":150}]})");
  CHECK(EntryPoints(o, v1::PURCHASE) == 4);
}

TEST_CASE("3: WRONG_CURRENCY and DUPLICATE_ORDER are recorded rejections") {
  // Both reject with no points; the customer is still known and the clock moves.
  LedgerHarness h;
  v1::Outcome o = h.Purchase("c1", Day(0), "o1", 5000, "USD");
  CHECK(o.status() == v1::REJECTED_BY_RULES);
  CHECK(o.reason() == v1::WRONG_CURRENCY);
  CHECK(h.Known("c1", Day(0)));
  CHECK(h.Balance("c1", Day(30)).earned == 0);
  REQUIRE(h.Purchase("c1", Day(1), "o1", 5000).status() == v1::ACCEPTED);  // USD did not take the id
  o = h.Purchase("c1", Day(2), "o1", 7000);
  CHECK(o.reason() == v1::DUPLICATE_ORDER);
  CHECK(h.Balance("c1", Day(30)).earned == 50);
}

TEST_CASE("3: the tier multiplier is the tier as of t before the purchase") {
  // 50,000 at day 0 (BRONZE, 500 points) reaches SILVER. At day 1 the customer is
  // SILVER: 10,000 -> floor(10,000 x 10,000 x 12,500 / 10^10) = 125; and 199 ->
  // floor(199 x 10,000 x 12,500 / 10^10) = floor(2.4875) = 2.
  LedgerHarness h;
  CHECK(EntryPoints(h.Purchase("c1", Day(0), "o1", 50000), v1::PURCHASE) == 500);
  CHECK(EntryPoints(h.Purchase("c1", Day(1), "o2", 10000), v1::PURCHASE) == 125);
  CHECK(EntryPoints(h.Purchase("c1", Day(1), "o3", 199), v1::PURCHASE) == 2);
}

// ---------------------------------------------------------------- section 4

TEST_CASE("4: partial refunds reverse ceil(P x R / A) cumulatively") {
  // A = 10,000, P = 100. R = 3,333: ceil(33.33) = 34. R = 6,666: ceil(66.66) = 67,
  // so 33 more. R = 10,000: 100, so 33 more. In all 100.
  LedgerHarness h;
  h.Purchase("c1", Day(0), "o1", 10000);
  CHECK(EntryPoints(h.Refund("c1", Day(1), "o1", 3333), v1::REFUND) == 34);
  CHECK(EntryPoints(h.Refund("c1", Day(2), "o1", 3333), v1::REFUND) == 33);
  v1::Outcome over = h.Refund("c1", Day(3), "o1", 3335);  // 6,666 + 3,335 > 10,000
  CHECK(over.reason() == v1::REFUND_EXCEEDS_ORDER);
  CHECK(EntryPoints(h.Refund("c1", Day(3), "o1", 3334), v1::REFUND) == 33);
  BalanceView b = h.Balance("c1", Day(20));
  CHECK(b.reversed == 100);
  CHECK(b.available == 0);
  CHECK(b.debt == 0);
  CHECK(testing::Conserved(b));
}

TEST_CASE("4: UNKNOWN_ORDER and REFUND_WINDOW_CLOSED at exactly 365 days") {
  LedgerHarness h;
  CHECK(h.Refund("c1", Day(0), "nope", 100).reason() == v1::UNKNOWN_ORDER);
  h.Purchase("c1", Day(1), "o1", 10000);
  h.Purchase("c1", Day(2), "o2", 10000);
  CHECK(h.Refund("c1", Day(1 + 365, -1), "o1", 100).status() == v1::ACCEPTED);
  CHECK(h.Refund("c1", Day(2 + 365), "o2", 100).reason() == v1::REFUND_WINDOW_CLOSED);
}

TEST_CASE("4: a reversal takes the order's lot, then other lots FIFO, then debt") {
  // Day 0: +50 adjustment (lot A, available day 0, expires day 365).
  // Day 1: purchase 10,000 -> lot B 100 (available day 15, expires day 380).
  // Day 20: redeem 80, FIFO by expiry: A gives 50, B gives 30 -> A 0, B 70.
  // Day 30: full refund reverses 100: B's 70, A has nothing, 30 becomes debt.
  // Balance: available = 0 - 30 = -30, reversed 100, redeemed 80, earned 150:
  // 150 = -30 + 0 + 80 + 100 + 0 + 0.
  LedgerHarness h;
  h.Adjust("c1", Day(0), 50);
  h.Purchase("c1", Day(1), "o1", 10000);
  v1::Outcome red = h.Redeem("c1", Day(20), "r1", 80);
  REQUIRE(red.status() == v1::ACCEPTED);
  REQUIRE(red.entries(0).draws_size() == 2);
  CHECK(red.entries(0).draws(0).points() == 50);  // lot A first: it expires first
  CHECK(red.entries(0).draws(1).points() == 30);
  v1::Outcome refund = h.Refund("c1", Day(30), "o1", 10000);
  const v1::LedgerEntry& e = refund.entries(0);
  REQUIRE(e.draws_size() == 1);
  CHECK(e.draws(0).points() == 70);
  CHECK(e.debt_added() == 30);
  BalanceView b = h.Balance("c1", Day(30));
  CHECK(b.available == -30);
  CHECK(b.debt == 30);
  CHECK(b.earned == 150);
  CHECK(testing::Conserved(b));
  // Day 31: +50 pays the debt first: 30 to debt, 20 stays in the new lot.
  v1::Outcome adj = h.Adjust("c1", Day(31), 50);
  CHECK(adj.entries(0).debt_paid() == 30);
  b = h.Balance("c1", Day(31));
  CHECK(b.available == 20);
  CHECK(b.debt == 0);
  CHECK(testing::Conserved(b));
}

// ---------------------------------------------------------------- section 5

TEST_CASE("5: a qualifying first purchase pays both referral bonuses") {
  // Referral at day 0; referee's first purchase 2,000 at day 10 (within 90 days,
  // >= 2,000): referee 20 + 250 points, referrer 500, both available day 24.
  LedgerHarness h;
  h.Purchase("old", Day(0), "p0", 1000);  // referrer: 10 points
  REQUIRE(h.Referral("new", Day(0), "old").status() == v1::ACCEPTED);
  v1::Outcome o = h.Purchase("new", Day(10), "p1", 2000);
  CHECK(EntryPoints(o, v1::PURCHASE) == 20);
  CHECK(EntryPoints(o, v1::REFEREE_BONUS, "new") == 250);
  CHECK(EntryPoints(o, v1::REFERRER_BONUS, "old") == 500);
  CHECK(h.Balance("new", Day(24)).available == 270);
  CHECK(h.Balance("old", Day(24)).available == 510);
  CHECK(h.Balance("old", Day(23)).pending == 500);
}

TEST_CASE("5: a first purchase under 2,000 or after 90 days closes the referral unqualified") {
  LedgerHarness h;
  h.Referral("a", Day(0), "r");
  v1::Outcome o = h.Purchase("a", Day(1), "p1", 1999);
  CHECK(EntryPoints(o, v1::REFEREE_BONUS) == 0);
  CHECK(o.entries(o.entries_size() - 1).kind() == v1::REFERRAL_UNQUALIFIED);
  // The first purchase decided it: a second, larger one pays nothing.
  CHECK(EntryPoints(h.Purchase("a", Day(2), "p2", 5000), v1::REFEREE_BONUS) == 0);
  CHECK_FALSE(h.Known("r", Day(400)));  // no entry was ever written for the referrer

  h.Referral("b", Day(0), "r");
  CHECK(EntryPoints(h.Purchase("b", Day(90, 1), "p1", 5000), v1::REFEREE_BONUS) == 0);
  h.Referral("c", Day(0), "r");
  CHECK(EntryPoints(h.Purchase("c", Day(90), "p1", 5000), v1::REFEREE_BONUS) == 250);
}

TEST_CASE("5: SELF_REFERRAL, ALREADY_CUSTOMER, ALREADY_REFERRED") {
  LedgerHarness h;
  CHECK(h.Referral("a", Day(0), "a").reason() == v1::SELF_REFERRAL);
  h.Purchase("b", Day(0), "p1", 1000);
  CHECK(h.Referral("b", Day(1), "x").reason() == v1::ALREADY_CUSTOMER);
  CHECK(h.Referral("c", Day(0), "x").status() == v1::ACCEPTED);
  CHECK(h.Referral("c", Day(1), "y").reason() == v1::ALREADY_REFERRED);
}

TEST_CASE("5: the referrer cap skips the 11th bonus in 365 days without an entry") {
  // Ten referees qualify on days 1..10: ten 500-point bonuses. The 11th on day 11
  // pays the referee 250 but writes nothing for the referrer (no clock move). On
  // day 366 the bonus of day 1 has left the window (t_b - 365 d, t_b]: paid again.
  LedgerHarness h;
  for (int i = 1; i <= 11; ++i) {
    const std::string referee = absl::StrCat("f", i);
    h.Referral(referee, Day(0), "boss");
    v1::Outcome o = h.Purchase(referee, Day(i), "p", 2000);
    CHECK(EntryPoints(o, v1::REFEREE_BONUS) == 250);
    CHECK(EntryPoints(o, v1::REFERRER_BONUS) == (i <= 10 ? 500 : 0));
  }
  auto boss = h.State("boss", DayT(400));
  REQUIRE(boss.has_value());
  CHECK(boss->clock() == DayT(10));
  CHECK(boss->earned() == 5000);
  // Day 365: the window (day 0, day 365] still holds days 1..10: skipped.
  h.Referral("g", Day(300), "boss");
  CHECK(EntryPoints(h.Purchase("g", Day(365), "p", 2000), v1::REFERRER_BONUS) == 0);
  // Day 366: (day 1, day 366] holds days 2..10, nine bonuses: paid.
  h.Referral("k", Day(300), "boss");
  CHECK(EntryPoints(h.Purchase("k", Day(366), "p", 2000), v1::REFERRER_BONUS) == 500);
  // Again on day 366: days 2..10 and 366 make ten: skipped. Clawed-back or not,
  // bonuses count.
  h.Referral("m", Day(300), "boss");
  CHECK(EntryPoints(h.Purchase("m", Day(366), "p", 2000), v1::REFERRER_BONUS) == 0);
}

TEST_CASE("5: a full refund within 14 days claws back both bonuses") {
  // Purchase 2,000 at day 10 qualifies; a full refund at day 24 - 1 s reverses the
  // purchase's 20, then the referee's 250 (from its own lot), then the referrer's
  // 500 in the referrer's ledger. Everything was still pending, so no debt.
  LedgerHarness h;
  h.Referral("a", Day(0), "r");
  h.Purchase("a", Day(10), "p1", 2000);
  v1::Outcome o = h.Refund("a", Day(24, -1), "p1", 2000);
  CHECK(EntryPoints(o, v1::REFUND, "a") == 20);
  CHECK(EntryPoints(o, v1::CLAWBACK, "a") == 250);
  CHECK(EntryPoints(o, v1::CLAWBACK, "r") == 500);
  BalanceView a = h.Balance("a", Day(30));
  CHECK(a.available == 0);
  CHECK(a.reversed == 270);
  CHECK(testing::Conserved(a));
  BalanceView r = h.Balance("r", Day(30));
  CHECK(r.available == 0);
  CHECK(r.reversed == 500);
  CHECK(testing::Conserved(r));
}

TEST_CASE("5: no claw-back at 14 days or for a partial refund") {
  LedgerHarness h;
  h.Referral("a", Day(0), "r");
  h.Purchase("a", Day(10), "p1", 2000);
  CHECK(EntryPoints(h.Refund("a", Day(24), "p1", 2000), v1::CLAWBACK) == 0);
  h.Referral("b", Day(0), "r");
  h.Purchase("b", Day(10), "p1", 4000);
  CHECK(EntryPoints(h.Refund("b", Day(11), "p1", 3999), v1::CLAWBACK) == 0);
  // The last minor unit makes R = A within the window: now both are clawed back.
  v1::Outcome o = h.Refund("b", Day(12), "p1", 1);
  CHECK(EntryPoints(o, v1::CLAWBACK, "b") == 250);
  CHECK(EntryPoints(o, v1::CLAWBACK, "r") == 500);
}

TEST_CASE("5: a referrer whose clock runs ahead gets the bonus at its own clock") {
  // The referrer's last event is at day 50; the referee qualifies at day 10: the
  // bonus entry's time is max(day 10, day 50) = day 50, available day 64.
  LedgerHarness h;
  h.Adjust("r", Day(50), 1);
  h.Referral("a", Day(0), "r");
  v1::Outcome o = h.Purchase("a", Day(10), "p1", 2000);
  const v1::LedgerEntry* bonus = nullptr;
  for (const auto& e : o.entries()) {
    if (e.kind() == v1::REFERRER_BONUS) bonus = &e;
  }
  REQUIRE(bonus != nullptr);
  CHECK(bonus->effective_at() == DayT(50));
  CHECK(bonus->available_at() == DayT(64));
  CHECK_FALSE(h.Known("r", Day(49)));  // the referrer's first entry is at day 50
  CHECK(h.Balance("r", Day(63)).pending == 500);
  CHECK(h.Balance("r", Day(64)).available == 501);
}

// ---------------------------------------------------------------- section 6

TEST_CASE("6: redemptions need available points, and ids are single-use") {
  // 10,000 -> 100 points, pending until day 14: a redemption at day 1 is refused,
  // at day 14 accepted. A reused id is a duplicate even after a rejection.
  LedgerHarness h;
  h.Purchase("c", Day(0), "o1", 10000);
  CHECK(h.Redeem("c", Day(1), "r1", 50).reason() == v1::INSUFFICIENT_POINTS);
  CHECK(h.Redeem("c", Day(14), "r1", 50).reason() == v1::DUPLICATE_REDEMPTION);
  CHECK(h.Redeem("c", Day(14), "r2", 101).reason() == v1::INSUFFICIENT_POINTS);
  CHECK(h.Redeem("c", Day(14), "r3", 100).status() == v1::ACCEPTED);
  BalanceView b = h.Balance("c", Day(14));
  CHECK(b.available == 0);
  CHECK(b.redeemed == 100);
  CHECK(testing::Conserved(b));
}

TEST_CASE("6: a cancel restores each portion to its lot, or counts it expired") {
  // Lot A: +40 at day 0 (expires day 365). Lot B: 10,000 at day 0 -> 100 (available
  // day 14, expires day 379). Redeem 120 at day 300: A 40, B 80. Cancel at day 370:
  // A has expired (40 expired, not restored), B has not (80 back).
  LedgerHarness h;
  h.Adjust("c", Day(0), 40);
  h.Purchase("c", Day(0), "o1", 10000);
  REQUIRE(h.Redeem("c", Day(300), "r1", 120).status() == v1::ACCEPTED);
  v1::Outcome o = h.Cancel("c", Day(370), "r1");
  REQUIRE(o.status() == v1::ACCEPTED);
  CHECK(o.entries(0).expired_points() == 40);
  BalanceView b = h.Balance("c", Day(370));
  CHECK(b.available == 100);
  CHECK(b.redeemed == 0);
  CHECK(b.expired == 40);
  CHECK(testing::Conserved(b));
  CHECK(h.Cancel("c", Day(371), "r1").reason() == v1::UNKNOWN_REDEMPTION);
  CHECK(h.Cancel("c", Day(371), "zz").reason() == v1::UNKNOWN_REDEMPTION);
  // The cancel window is 90 days: open at 90 d - 1 s, closed at 90 d.
  REQUIRE(h.Redeem("c", Day(371), "r2", 10).status() == v1::ACCEPTED);
  REQUIRE(h.Redeem("c", Day(371), "r3", 10).status() == v1::ACCEPTED);
  CHECK(h.Cancel("c", Day(371 + 90, -1), "r2").status() == v1::ACCEPTED);
  CHECK(h.Cancel("c", Day(371 + 90), "r3").reason() == v1::CANCEL_WINDOW_CLOSED);
}

TEST_CASE("6: a cancel with debt pays the debt first") {
  // +100 at day 0; redeem 100; -40 adjustment -> debt 40; cancel: 40 pays the
  // debt, 60 back in the lot. 100 = 60 + 0 + 0 + 0 + 40 + 0.
  LedgerHarness h;
  h.Adjust("c", Day(0), 100);
  h.Redeem("c", Day(1), "r1", 100);
  v1::Outcome adj = h.Adjust("c", Day(2), -40);
  CHECK(adj.entries(0).debt_added() == 40);
  v1::Outcome o = h.Cancel("c", Day(3), "r1");
  CHECK(o.entries(0).debt_paid() == 40);
  BalanceView b = h.Balance("c", Day(3));
  CHECK(b.available == 60);
  CHECK(b.debt == 0);
  CHECK(b.adjusted_out == 40);
  CHECK(testing::Conserved(b));
}

TEST_CASE("6: a negative adjustment takes unexpired lots FIFO, pending ones too") {
  // 10,000 at day 0 -> 100 pending until day 14; -30 at day 1 takes 30 of it.
  LedgerHarness h;
  h.Purchase("c", Day(0), "o1", 10000);
  v1::Outcome o = h.Adjust("c", Day(1), -30);
  REQUIRE(o.entries(0).draws_size() == 1);
  CHECK(o.entries(0).debt_added() == 0);
  BalanceView b = h.Balance("c", Day(1));
  CHECK(b.pending == 70);
  CHECK(b.adjusted_out == 30);
  CHECK(testing::Conserved(b));
}

// ---------------------------------------------------------------- section 7

TEST_CASE("7: tiers follow rolling net spend and last 365 days from the order") {
  // 50,000 at day 0 -> SILVER until day 365 (valid_until), next GOLD at 200,000.
  LedgerHarness h;
  h.Purchase("c", Day(0), "o1", 50000);
  TierView t = h.Tier("c", Day(0));
  CHECK(t.tier == Tier::kSilver);
  CHECK(t.rolling_spend_minor == 50000);
  REQUIRE(t.valid_until.has_value());
  CHECK(*t.valid_until == DayT(365));
  REQUIRE(t.next_tier.has_value());
  CHECK(*t.next_tier == Tier::kGold);
  CHECK(t.spend_to_next_tier_minor == 150000);
  CHECK(h.Tier("c", Day(365, -1)).tier == Tier::kSilver);
  t = h.Tier("c", Day(365));  // (day 0, day 365] no longer holds the order
  CHECK(t.tier == Tier::kBronze);
  CHECK_FALSE(t.valid_until.has_value());
  CHECK(t.rolling_spend_minor == 0);
}

TEST_CASE("7: a refund takes back the status the refunded spend bought") {
  // Refunding 1 of 50,000 leaves 49,999: the order now reaches BRONZE, also for
  // answers about times before the refund... as of times after it; before it the
  // refund is not yet applied.
  LedgerHarness h;
  h.Purchase("c", Day(0), "o1", 50000);
  h.Refund("c", Day(5), "o1", 1);
  CHECK(h.Tier("c", Day(4)).tier == Tier::kSilver);
  CHECK(h.Tier("c", Day(5)).tier == Tier::kBronze);
  CHECK(h.Tier("c", Day(5)).rolling_spend_minor == 49999);
}

TEST_CASE("7: an order reaches the tier of the rolling spend at its time") {
  // 30,000 at day 0 and 30,000 at day 100: the second order's rolling spend is
  // 60,000 -> SILVER, lasting until day 465 although the first order leaves the
  // window at day 365.
  LedgerHarness h;
  h.Purchase("c", Day(0), "o1", 30000);
  CHECK(h.Tier("c", Day(50)).tier == Tier::kBronze);
  h.Purchase("c", Day(100), "o2", 30000);
  TierView t = h.Tier("c", Day(400));
  CHECK(t.tier == Tier::kSilver);
  CHECK(*t.valid_until == DayT(465));
  CHECK(t.rolling_spend_minor == 30000);
  CHECK(t.spend_to_next_tier_minor == 170000);
  CHECK(h.Tier("c", Day(465)).tier == Tier::kBronze);
  // PLATINUM has no next tier.
  h.Purchase("c", Day(470), "o3", 600000);
  t = h.Tier("c", Day(470));
  CHECK(t.tier == Tier::kPlatinum);
  CHECK_FALSE(t.next_tier.has_value());
  CHECK(t.spend_to_next_tier_minor == 0);
}

// ---------------------------------------------------------------- section 8

TEST_CASE("8: churn risk from recency against the expected interval") {
  // Purchases at days 0, 10, 20: expected interval = (20 - 0) / 2 = 10 days.
  // Day 25: 5 d since -> ACTIVE (ratio 0.5). Day 35: 2 x 15 >= 3 x 10 -> COOLING.
  // Day 50: 30 >= 3 x 10 -> AT_RISK. Day 200: 180 days -> CHURNED.
  LedgerHarness h;
  h.Adjust("c", Day(0), 5);
  CHECK(h.Churn("c", Day(0)).risk_level == RiskLevel::kNew);
  h.Purchase("c", Day(0), "o1", 1000);
  h.Purchase("c", Day(10), "o2", 1000);
  h.Purchase("c", Day(20), "o3", 1000);
  ChurnView v = h.Churn("c", Day(25));
  CHECK(v.risk_level == RiskLevel::kActive);
  CHECK(v.expected_interval_s == 10 * kDaySeconds);
  CHECK(v.recency_ratio == 0.5);
  CHECK(v.days_since_last_purchase == 5);
  CHECK(v.purchases_365d == 3);
  CHECK(v.spend_365d_minor == 3000);
  CHECK(h.Churn("c", Day(35, -1)).risk_level == RiskLevel::kActive);
  CHECK(h.Churn("c", Day(35)).risk_level == RiskLevel::kCooling);
  CHECK(h.Churn("c", Day(50, -1)).risk_level == RiskLevel::kCooling);
  CHECK(h.Churn("c", Day(50)).risk_level == RiskLevel::kAtRisk);
  CHECK(h.Churn("c", Day(199)).risk_level == RiskLevel::kAtRisk);
  CHECK(h.Churn("c", Day(200)).risk_level == RiskLevel::kChurned);
}

TEST_CASE("8: one purchase means 30 days, never under 1 day, refunded orders do not count") {
  LedgerHarness h;
  h.Purchase("c", Day(0), "o1", 1000);
  CHECK(h.Churn("c", Day(1)).expected_interval_s == 30 * kDaySeconds);
  h.Purchase("c", Day(0), "o2", 1000);  // same second: a gap of 0
  CHECK(h.Churn("c", Day(0)).expected_interval_s == kDaySeconds);
  h.Refund("c", Day(1), "o1", 1000);
  h.Refund("c", Day(1), "o2", 1000);
  CHECK(h.Churn("c", Day(2)).risk_level == RiskLevel::kNew);
}

// ---------------------------------------------------------------- section 1

TEST_CASE("1: a late event takes the customer's clock, unknown before the first event") {
  // Purchase at day 10, then an adjustment that occurred at day 5: effective day 10.
  LedgerHarness h;
  h.Purchase("c", Day(10), "o1", 1000);
  v1::Outcome late = h.Adjust("c", Day(5), 7);
  CHECK(late.effective_at() == DayT(10));
  CHECK_FALSE(h.Known("c", Day(10, -1)));
  CHECK(h.Known("c", Day(10)));
  CHECK(h.Balance("c", Day(10)).available == 7);
  // Another customer's clock is their own.
  CHECK(h.Adjust("d", Day(5), 1).effective_at() == DayT(5));
}

}  // namespace
}  // namespace loyalty

namespace loyalty {
namespace {

TEST_CASE("stats: program-wide figures at T equal the sum of the customers' answers") {
  // Proves /v1/stats arithmetic: members, purchasers, repeat rate, points, per-tier
  // and per-risk counts, also for a T before some customers' last events.
  LedgerHarness h;
  h.Purchase("a", Day(0), "o1", 60000);   // SILVER, 600 points
  h.Purchase("a", Day(10), "o2", 1000);   // SILVER multiplier: 12 points
  h.Purchase("b", Day(5), "o1", 1000);    // 10 points
  h.Adjust("c", Day(20), 40);             // no purchase: NEW
  LedgerReader reader(&h.log(), &h.projector().rules());
  auto s = reader.Stats(DayT(30));
  REQUIRE(s.ok());
  CHECK(s->members == 3);
  CHECK(s->purchasers == 2);
  CHECK(s->repeat_purchasers == 1);
  CHECK(s->repeat_purchase_rate() == 0.5);
  CHECK(s->earned == 600 + 12 + 10 + 40);
  CHECK(s->points_outstanding == 662);
  CHECK(s->per_tier[static_cast<int>(Tier::kSilver)] == 1);
  CHECK(s->per_tier[static_cast<int>(Tier::kBronze)] == 2);
  CHECK(s->per_risk_level[static_cast<int>(RiskLevel::kNew)] == 1);
  // As of day 7: c unknown, a has one purchase only (its day-10 one is later).
  s = reader.Stats(DayT(7));
  REQUIRE(s.ok());
  CHECK(s->members == 2);
  CHECK(s->repeat_purchasers == 0);
  CHECK(s->earned == 610);
}

}  // namespace
}  // namespace loyalty
