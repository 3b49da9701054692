// Property tests of the ledger (rules.md): deterministic random streams of a few
// thousand events over a small, densely interacting set of customers, built to hit
// every edge of the rules, ingested in random batches through the real Ingestor +
// Projector (LedgerHarness); then invariants that must hold for every customer at
// every time, and rebuild / idempotency / clock properties of the log.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/event_log.h"
#include "loyalty/v1/ledger.pb.h"
#include "loyalty/v1/log.pb.h"
#include "projections/ledger.h"
#include "projections/ledger_reader.h"
#include "projections/program.h"
#include "projections/replay.h"
#include "tests/testing/ledger_harness.h"

namespace loyalty {
namespace {

using testing::Conserved;
using testing::LedgerHarness;
using testing::Rfc3339;

constexpr int64_t kDay = kDaySeconds;
constexpr int64_t kStart = 1704067200;  // 2024-01-01T00:00:00Z

// The seeds of the default-program streams, and their sizes (distinct events).
constexpr uint64_t kSeeds[] = {1, 7, 42, 1234, 987654321};
constexpr size_t kEvents = 3000;

// ------------------------------------------------------------------ generator

// One generated stream: the JSON lines in delivery order (duplicate deliveries
// included), and what the checks need to know about it.
struct Scenario {
  uint64_t seed = 0;
  std::vector<std::string> lines;
  std::vector<std::string> customers;  // every id that may have a ledger
  size_t events = 0;                   // distinct events
  size_t duplicate_lines = 0;          // lines that repeat an earlier line exactly
  int64_t first_at = INT64_MAX;        // range of occurred_at
  int64_t last_at = INT64_MIN;
};

struct Line {
  std::string sku, category;
  int64_t amount;
  int quantity;
};

std::string PurchaseJson(const std::string& order_id, int64_t amount, const std::string& currency,
                         const std::vector<Line>& lines, bool amount_as_string) {
  std::string out = absl::StrCat(R"("purchase":{"orderId":")", order_id, R"(","amountMinor":)",
                                 amount_as_string ? absl::StrCat("\"", amount, "\"")
                                                  : absl::StrCat(amount),
                                 R"(,"currency":")", currency, "\"");
  if (!lines.empty()) {
    absl::StrAppend(&out, R"(,"lines":[)");
    for (size_t i = 0; i < lines.size(); ++i) {
      absl::StrAppend(&out, i > 0 ? "," : "", R"({"sku":")", lines[i].sku, R"(","category":")",
                      lines[i].category, R"(","amountMinor":)", lines[i].amount,
                      R"(,"quantity":)", lines[i].quantity, "}");
    }
    absl::StrAppend(&out, "]");
  }
  absl::StrAppend(&out, "}");
  return out;
}
std::string RefundJson(const std::string& order_id, int64_t amount) {
  return absl::StrCat(R"("refund":{"orderId":")", order_id, R"(","amountMinor":)", amount, "}");
}
std::string ReferralJson(const std::string& referrer, const std::string& referee) {
  return absl::StrCat(R"("referral":{"referrerId":")", referrer, R"(","refereeId":")", referee,
                      R"("})");
}
std::string RedemptionJson(const std::string& id, int64_t points) {
  return absl::StrCat(R"("redemption":{"redemptionId":")", id, R"(","points":)", points,
                      R"(,"rewardId":"reward-)", points % 7, R"("})");
}
std::string CancelJson(const std::string& id) {
  return absl::StrCat(R"("redemptionCancel":{"redemptionId":")", id, R"("})");
}
std::string AdjustmentJson(int64_t points) {
  return absl::StrCat(R"("adjustment":{"points":)", points,
                      R"(,"reason":"goodwill","actor":"support-1"})");
}

// Builds a stream. Core customers c0..c<n-1> (6-12 of them) get most events; c0
// refers many newcomers (so its referrer bonus hits the cap), c1's clock runs far
// ahead of everyone else's (so its bonuses and claw-backs land later than the
// referee's purchase), c2's a little ahead; x-ext is a referrer with no events of
// its own. Newcomers n<k> are referred, then make their first purchase (qualifying
// or not, at and around the 90-day and 2,000 boundaries), then maybe refund it
// (claw-back within 14 days, at the boundary, after), or redeem everything and
// refund (debt). e<k> customers let a lot expire under a redemption and cancel it.
class Generator {
 public:
  Generator(uint64_t seed, size_t target_events) : rng_(seed), target_(target_events) {
    sc_.seed = seed;
  }

  Scenario Build() {
    const int core = static_cast<int>(U(6, 12));
    for (int k = 0; k < core; ++k) {
      const int i = Add(absl::StrCat("c", k));
      customers_[i].spend_class = static_cast<int>(U(0, 2));
      active_.push_back(i);
    }
    customers_[0].spend_class = 2;
    customers_[1].ahead = U(60, 200) * kDay + U(0, kDay - 1);
    customers_[2].ahead = U(3, 30) * kDay;
    ext_ = Add("x-ext");
    now_ = kStart;
    // Some core customers are referred before their first purchase.
    for (int k = 3; k < core; ++k) {
      if (P(0.5)) Emit(k, now_ + U(0, 3600), ReferralJson(customers_[OtherCore(k)].id,
                                                           customers_[k].id));
    }
    while (sc_.events < target_) {
      now_ += Jump();
      RunDue();
      Step();
    }
    // Let the scheduled follow-ups happen, in time order.
    while (!queue_.empty()) {
      now_ = std::max(now_, queue_.top().due);
      RunDue();
    }
    for (auto& d : dups_) Deliver(d.first, /*is_copy=*/true);
    dups_.clear();
    for (const Customer& c : customers_) sc_.customers.push_back(c.id);
    return std::move(sc_);
  }

 private:
  struct Order {
    std::string id;
    int64_t at;
    int64_t amount;
    int64_t refunded = 0;  // a guess: what was sent, accepted or not
  };
  struct Customer {
    std::string id;
    int64_t ahead = 0;  // the customer's events occur this far ahead of the stream
    int64_t last_occ = INT64_MIN;
    int spend_class = 1;
    std::vector<Order> orders;
    std::vector<std::string> unknown_orders;  // rejected (USD) orders
    std::vector<std::pair<std::string, int64_t>> redemptions;  // id, occurred_at
    std::vector<std::string> cancelled;
  };
  struct Scheduled {
    int64_t due;
    uint64_t order;
    std::function<void()> fn;
    bool operator>(const Scheduled& o) const {
      return std::tie(due, order) > std::tie(o.due, o.order);
    }
  };

  int64_t U(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  double Unit() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  bool P(double p) { return Unit() < p; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(U(0, static_cast<int64_t>(v.size()) - 1))];
  }

  int Add(const std::string& id) {
    customers_.push_back(Customer{});
    customers_.back().id = id;
    return static_cast<int>(customers_.size()) - 1;
  }
  int OtherCore(int k) {
    int o;
    do {
      o = Pick(active_);
    } while (o == k || customers_[o].id[0] != 'c');
    return o;
  }

  // Time between steps: many events in the same second, then seconds, minutes,
  // hours, days and now and then weeks (about 2.5 years over 3,000 events).
  int64_t Jump() {
    const double r = Unit();
    if (r < 0.35) return 0;
    if (r < 0.55) return U(1, 59);
    if (r < 0.75) return U(60, 3599);
    if (r < 0.93) return U(3600, kDay);
    if (r < 0.99) return U(kDay, 5 * kDay);
    return U(7 * kDay, 28 * kDay);
  }

  // occurred_at of a customer's next spontaneous event: mostly the stream's time
  // (plus the customer's lead), 10% late (before the customer's previous event).
  int64_t OccFor(int ci) {
    const Customer& c = customers_[ci];
    if (c.last_occ != INT64_MIN && P(0.10)) {
      const double r = Unit();
      return c.last_occ - (r < 0.4 ? U(1, 600) : r < 0.8 ? U(600, 3 * kDay) : U(3 * kDay, 60 * kDay));
    }
    return std::max<int64_t>(now_ + c.ahead, kStart);
  }

  void Emit(int ci, int64_t occ, const std::string& payload) {
    Customer& c = customers_[ci];
    std::string at = Rfc3339(occ);
    if (P(0.05)) at = absl::StrCat(at.substr(0, at.size() - 1), ".", U(100, 999), "Z");
    std::string line = absl::StrCat(R"({"eventId":"ev-)", ++event_no_, R"(","customerId":")",
                                    c.id, R"(","occurredAt":")", at, R"(",)", payload, "}");
    c.last_occ = std::max(c.last_occ, occ);
    ++sc_.events;
    sc_.first_at = std::min(sc_.first_at, occ);
    sc_.last_at = std::max(sc_.last_at, occ);
    if (P(0.03)) dups_.emplace_back(line, U(0, 40));
    Deliver(line, /*is_copy=*/false);
  }
  void Deliver(const std::string& line, bool is_copy) {
    sc_.lines.push_back(line);
    if (is_copy) ++sc_.duplicate_lines;
    if (is_copy) return;
    std::vector<std::pair<std::string, int64_t>> keep;
    std::vector<std::string> now_due;
    for (auto& d : dups_) {
      if (--d.second < 0) {
        now_due.push_back(d.first);
      } else {
        keep.push_back(d);
      }
    }
    dups_ = std::move(keep);
    for (const auto& l : now_due) Deliver(l, /*is_copy=*/true);
  }

  // Runs `fn(occurred_at)` for customer ci when the stream reaches `occ`.
  void Schedule(int ci, int64_t occ, std::function<void(int64_t)> fn) {
    const int64_t due = occ - customers_[ci].ahead;
    queue_.push(Scheduled{due, ++schedule_no_, [fn, occ] { fn(occ); }});
  }
  void RunDue() {
    while (!queue_.empty() && queue_.top().due <= now_) {
      Scheduled s = queue_.top();
      queue_.pop();
      s.fn();
    }
  }

  int64_t Amount(int ci) {
    const double r = Unit();
    switch (customers_[ci].spend_class) {
      case 0: return U(300, 6000);
      case 1: return r < 0.8 ? U(500, 15'000) : U(15'000, 60'000);
      default:
        return r < 0.6 ? U(1000, 20'000) : r < 0.85 ? U(20'000, 80'000) : U(80'000, 300'000);
    }
  }
  std::vector<Line> MaybeLines(int64_t amount) {
    std::vector<Line> lines;
    if (!P(0.3)) return lines;
    static const char* kCategories[] = {"gift_card", "food", "electronics", "books", "gift_card"};
    const int n = static_cast<int>(U(1, 4));
    int64_t left = amount;
    for (int i = 0; i < n; ++i) {
      const int64_t a = i == n - 1 ? left : U(0, left);
      left -= a;
      lines.push_back({absl::StrCat("sku-", U(1, 50)), kCategories[U(0, 4)], a,
                       static_cast<int>(U(1, 3))});
    }
    return lines;
  }

  void Step() {
    const int ci = P(0.5) ? active_[static_cast<size_t>(U(0, std::min<int64_t>(3, active_.size() - 1)))]
                          : Pick(active_);
    const double r = Unit();
    if (r < 0.48) {
      Purchase(ci);
    } else if (r < 0.60) {
      Refund(ci);
    } else if (r < 0.76) {
      Redeem(ci, OccFor(ci));
    } else if (r < 0.83) {
      Cancel(ci);
    } else if (r < 0.90) {
      Adjust(ci);
    } else if (r < 0.96) {
      Newcomer();
    } else if (r < 0.98) {
      // Referrals of existing customers: SELF_REFERRAL, ALREADY_CUSTOMER.
      const std::string referrer = P(0.4) ? customers_[ci].id : customers_[OtherCore(ci)].id;
      Emit(ci, OccFor(ci), ReferralJson(referrer, customers_[ci].id));
    } else if (r < 0.995) {
      DebtPattern(ci);
    } else {
      ExpiryPattern();
    }
  }

  void Purchase(int ci) {
    Customer& c = customers_[ci];
    const int64_t occ = OccFor(ci);
    const bool usd = P(0.05);
    std::string id;
    if (!c.orders.empty() && P(0.05)) {
      id = Pick(c.orders).id;  // DUPLICATE_ORDER
    } else if (P(0.02)) {
      const Customer& other = customers_[OtherCore(ci)];
      id = other.orders.empty() ? absl::StrCat("o", ++order_no_) : Pick(other.orders).id;
    } else {
      id = absl::StrCat("o", ++order_no_);
    }
    const int64_t amount = Amount(ci);
    Emit(ci, occ, PurchaseJson(id, amount, usd ? "USD" : "EUR", MaybeLines(amount), P(0.05)));
    if (usd) {
      c.unknown_orders.push_back(id);
      return;
    }
    const bool known = std::any_of(c.orders.begin(), c.orders.end(),
                                   [&](const Order& o) { return o.id == id; });
    if (known) return;
    c.orders.push_back({id, occ, amount});
    // The refund window's boundary.
    if (P(0.03)) Schedule(ci, occ + 365 * kDay, [=, this](int64_t at) { Emit(ci, at, RefundJson(id, 1)); });
    if (P(0.03)) {
      Schedule(ci, occ + 365 * kDay - 1, [=, this](int64_t at) { Emit(ci, at, RefundJson(id, amount)); });
    }
  }

  void Refund(int ci) {
    Customer& c = customers_[ci];
    const int64_t occ = OccFor(ci);
    const double r = Unit();
    if (c.orders.empty() || r < 0.08) {
      const std::string id = !c.unknown_orders.empty() && P(0.5) ? Pick(c.unknown_orders)
                                                                 : absl::StrCat("o-none-", U(1, 99));
      Emit(ci, occ, RefundJson(id, U(1, 10'000)));
      return;
    }
    Order& o = r < 0.6 ? c.orders[static_cast<size_t>(U(
                             std::max<int64_t>(0, static_cast<int64_t>(c.orders.size()) - 8),
                             static_cast<int64_t>(c.orders.size()) - 1))]
                       : c.orders[static_cast<size_t>(U(0, static_cast<int64_t>(c.orders.size()) - 1))];
    const int64_t remaining = o.amount - o.refunded;
    const double k = Unit();
    int64_t amount;
    if (k < 0.35 && remaining > 0) {
      amount = remaining;
    } else if (k < 0.80 && remaining > 1) {
      amount = U(1, remaining - 1);
    } else {
      amount = std::max<int64_t>(remaining, 0) + U(1, 5000);  // REFUND_EXCEEDS_ORDER
    }
    if (amount <= remaining) o.refunded += amount;
    Emit(ci, occ, RefundJson(o.id, amount));
  }

  void Redeem(int ci, int64_t occ) {
    Customer& c = customers_[ci];
    std::string id;
    if (!c.redemptions.empty() && P(0.05)) {
      id = Pick(c.redemptions).first;  // DUPLICATE_REDEMPTION
    } else {
      id = absl::StrCat("r", ++redemption_no_);
    }
    const double r = Unit();
    const int64_t points = r < 0.4 ? U(1, 300) : r < 0.75 ? U(300, 3000) : U(3000, 40'000);
    Emit(ci, occ, RedemptionJson(id, points));
    c.redemptions.emplace_back(id, occ);
    if (P(0.35)) {
      const double w = Unit();
      const int64_t delay = w < 0.5    ? U(0, 60 * kDay)
                            : w < 0.65 ? U(60 * kDay, 90 * kDay - 1)
                            : w < 0.75 ? 90 * kDay - 1
                            : w < 0.85 ? 90 * kDay
                                       : U(90 * kDay, 200 * kDay);
      Schedule(ci, occ + delay, [=, this](int64_t at) { Emit(ci, at, CancelJson(id)); });
      if (P(0.1)) {  // twice
        Schedule(ci, occ + delay + U(0, 10 * kDay), [=, this](int64_t at) { Emit(ci, at, CancelJson(id)); });
      }
    }
  }

  void Cancel(int ci) {
    Customer& c = customers_[ci];
    const int64_t occ = OccFor(ci);
    const double r = Unit();
    std::string id;
    if (c.redemptions.empty() || r < 0.1) {
      id = absl::StrCat("r-none-", U(1, 99));  // UNKNOWN_REDEMPTION
    } else if (r < 0.2 && !c.cancelled.empty()) {
      id = Pick(c.cancelled);  // cancelled already
    } else if (r < 0.8) {
      id = c.redemptions[static_cast<size_t>(U(
                             std::max<int64_t>(0, static_cast<int64_t>(c.redemptions.size()) - 5),
                             static_cast<int64_t>(c.redemptions.size()) - 1))]
               .first;
    } else {
      id = Pick(c.redemptions).first;
    }
    c.cancelled.push_back(id);
    Emit(ci, occ, CancelJson(id));
  }

  void Adjust(int ci) {
    int64_t points;
    const double r = Unit();
    if (r < 0.6) {
      points = U(1, 3000);
    } else if (r < 0.88) {
      points = -U(1, 500);
    } else {
      points = -U(5000, 200'000);  // debt
    }
    Emit(ci, OccFor(ci), AdjustmentJson(points));
  }

  // A big purchase, most of its points redeemed once available, then refunded.
  void DebtPattern(int ci) {
    const int64_t occ = OccFor(ci);
    const std::string id = absl::StrCat("o", ++order_no_);
    const int64_t amount = U(20'000, 300'000);
    Emit(ci, occ, PurchaseJson(id, amount, "EUR", {}, false));
    customers_[ci].orders.push_back({id, occ, amount, amount});
    const int64_t t_red = occ + 14 * kDay + U(0, 3 * kDay);
    Schedule(ci, t_red, [=, this](int64_t at) { Redeem(ci, at); });
    Schedule(ci, t_red + U(1, 30 * kDay), [=, this](int64_t at) { Emit(ci, at, RefundJson(id, amount)); });
  }

  // A lot that expires under a redemption, and the redemption cancelled after.
  void ExpiryPattern() {
    const int ei = Add(absl::StrCat("e", ++expiry_no_));
    const int64_t t0 = now_;
    const int64_t points = U(50, 500);
    Emit(ei, t0, AdjustmentJson(points));
    const std::string rid = absl::StrCat("r-", customers_[ei].id);
    const int64_t t_red = t0 + 365 * kDay - U(1, 30 * kDay);
    Schedule(ei, t_red, [=, this](int64_t at) { Emit(ei, at, RedemptionJson(rid, points)); });
    Schedule(ei, t0 + 365 * kDay + U(0, 30 * kDay),
             [=, this](int64_t at) { Emit(ei, at, CancelJson(rid)); });
    if (P(0.5)) {
      Schedule(ei, t0 + 365 * kDay + U(31 * kDay, 60 * kDay),
               [=, this](int64_t at) { Emit(ei, at, AdjustmentJson(-U(1, 100))); });
    }
  }

  void Newcomer() {
    const int ni = Add(absl::StrCat("n", ++newcomer_no_));
    const std::string nid = customers_[ni].id;
    double r = Unit();
    const int referrer = r < 0.5 ? 0 : r < 0.7 ? 1 : r < 0.8 ? ext_ : OtherCore(ni);
    const std::string referrer_id = customers_[referrer].id;
    const int64_t t_r = now_;
    Emit(ni, t_r, ReferralJson(referrer_id, nid));
    if (P(0.15)) {  // ALREADY_REFERRED (or ALREADY_CUSTOMER once the purchase came)
      const std::string other = customers_[OtherCore(ni)].id;
      Schedule(ni, t_r + U(0, 3 * kDay),
               [=, this](int64_t at) { Emit(ni, at, ReferralJson(other, nid)); });
    }
    r = Unit();
    const int64_t d = r < 0.55   ? U(0, 60 * kDay)
                      : r < 0.65 ? U(60 * kDay, 90 * kDay)
                      : r < 0.73 ? 90 * kDay
                      : r < 0.80 ? 90 * kDay + 1
                                 : U(91 * kDay, 200 * kDay);
    r = Unit();
    const int64_t amount = r < 0.65 ? U(2000, 40'000) : r < 0.75 ? 2000 : r < 0.85 ? 1999 : U(100, 1999);
    const int64_t t_p = t_r + d;
    const bool qualifies = d <= 90 * kDay && amount >= 2000;
    const std::string oid = absl::StrCat("o-", nid, "-1");
    if (P(0.08)) {
      Schedule(ni, t_p - U(0, 3600), [=, this](int64_t at) {
        Emit(ni, at, PurchaseJson(absl::StrCat(oid, "-usd"), amount, "USD", {}, false));
      });
    }
    const std::vector<Line> lines = MaybeLines(amount);
    Schedule(ni, t_p, [=, this](int64_t at) {
      Emit(ni, at, PurchaseJson(oid, amount, "EUR", lines, false));
      customers_[ni].orders.push_back({oid, at, amount, 0});
    });
    auto refund = [=, this](int64_t at, int64_t amt) {
      Schedule(ni, at, [=, this](int64_t occ) { Emit(ni, occ, RefundJson(oid, amt)); });
    };
    r = Unit();
    if (r < 0.25) {
      refund(t_p + U(0, 14 * kDay - 1), amount);  // claw-back
    } else if (r < 0.30) {
      refund(t_p + 14 * kDay, amount);  // just too late for a claw-back
    } else if (r < 0.35) {
      refund(t_p + 14 * kDay - 1, amount);  // just in time
    } else if (r < 0.45) {
      const int64_t part = U(1, amount - 1);
      const int64_t t1 = t_p + U(0, 7 * kDay);
      refund(t1, part);
      refund(t1 + U(0, 7 * kDay - 1), amount - part);  // full, in two parts
    } else if (r < 0.55) {
      refund(t_p + U(0, 30 * kDay), U(1, amount - 1));
    } else if (r < 0.75) {
      // Redeem everything once available, then refund: debt.
      int64_t points = amount / 100;
      for (const Line& l : lines) {
        if (l.category == "gift_card") points -= l.amount / 100;
      }
      points = std::max<int64_t>(1, points + (qualifies ? 250 : 0));
      const std::string rid = absl::StrCat("r-", nid, "-all");
      const int64_t t_red = t_p + 14 * kDay + U(0, 5 * kDay);
      Schedule(ni, t_red, [=, this](int64_t at) { Emit(ni, at, RedemptionJson(rid, points)); });
      const int64_t t_ref = t_red + U(1, 60 * kDay);
      refund(t_ref, amount);
      if (P(0.5)) {  // the cancel's restores pay the debt
        Schedule(ni, t_ref + U(0, 20 * kDay), [=, this](int64_t at) { Emit(ni, at, CancelJson(rid)); });
      }
      if (P(0.5)) {  // a new purchase's credit pays the debt
        const std::string oid2 = absl::StrCat("o-", nid, "-2");
        const int64_t amount2 = U(500, 50'000);
        Schedule(ni, t_ref + U(1, 100 * kDay), [=, this](int64_t at) {
          Emit(ni, at, PurchaseJson(oid2, amount2, "EUR", {}, false));
        });
      }
    }
    if (P(0.3) && active_.size() < 16) active_.push_back(ni);
  }

  std::mt19937_64 rng_;
  size_t target_;
  Scenario sc_;
  std::deque<Customer> customers_;
  std::vector<int> active_;
  int ext_ = -1;
  int64_t now_ = kStart;
  uint64_t event_no_ = 0, order_no_ = 0, redemption_no_ = 0, newcomer_no_ = 0, expiry_no_ = 0,
           schedule_no_ = 0;
  std::priority_queue<Scheduled, std::vector<Scheduled>, std::greater<Scheduled>> queue_;
  std::vector<std::pair<std::string, int64_t>> dups_;  // line, deliveries to wait
};

Scenario Generate(uint64_t seed, size_t events = kEvents) { return Generator(seed, events).Build(); }

// Ingests `lines` in batches of random sizes (1..200).
IngestCounts IngestInBatches(LedgerHarness& h, const std::vector<std::string>& lines,
                             uint64_t seed) {
  std::mt19937_64 rng(seed);
  IngestCounts total;
  size_t i = 0;
  while (i < lines.size()) {
    const size_t max = std::uniform_int_distribution<int>(0, 1)(rng) ? 20 : 200;
    const size_t n = std::min(lines.size() - i, std::uniform_int_distribution<size_t>(1, max)(rng));
    std::vector<std::string> batch(lines.begin() + static_cast<std::ptrdiff_t>(i),
                                   lines.begin() + static_cast<std::ptrdiff_t>(i + n));
    total.Add(h.IngestLines(batch));
    i += n;
  }
  return total;
}

// A generated stream, ingested.
struct Run {
  Scenario sc;
  std::unique_ptr<LedgerHarness> h;
  const Rules& rules() const { return h->projector().rules(); }
};

Run GenerateAndIngest(uint64_t seed, size_t events = kEvents,
                      const v1::Program& program = DefaultProgram()) {
  Run run{Generate(seed, events), std::make_unique<LedgerHarness>(program)};
  const IngestCounts counts = IngestInBatches(*run.h, run.sc.lines, seed * 31 + 17);
  INFO("seed " << seed);
  REQUIRE(counts.dead_letters == 0);
  REQUIRE(counts.applied == run.sc.events);
  REQUIRE(counts.duplicates == run.sc.duplicate_lines);
  REQUIRE(counts.accepted + counts.rejected == counts.applied);
  return run;
}

// ------------------------------------------------------------------ helpers

// Collects failures with their context; reports the first few, counts all.
class Failures {
 public:
  explicit Failures(std::string context) : context_(std::move(context)) {}
  void Check(bool ok, const std::function<std::string()>& what) {
    ++checks_;
    if (ok) return;
    if (++count_ <= 8) FAIL_CHECK(context_ << ": " << what());
  }
  int count() const { return count_; }
  uint64_t checks() const { return checks_; }

 private:
  std::string context_;
  int count_ = 0;
  uint64_t checks_ = 0;
};

std::vector<v1::LedgerEntry> EntriesOf(const Run& run, const std::string& customer) {
  LedgerReader reader(&run.h->log(), &run.rules());
  auto entries = reader.Entries(customer, INT64_MIN, INT64_MAX);
  REQUIRE(entries.ok());
  return *std::move(entries);
}

bool IsCredit(v1::EntryKind k) {
  return k == v1::PURCHASE || k == v1::REFEREE_BONUS || k == v1::REFERRER_BONUS ||
         k == v1::ADJUSTMENT_CREDIT;
}

std::string Opt(const std::optional<int64_t>& v) { return v ? absl::StrCat(*v) : "none"; }
std::string OptTier(const std::optional<Tier>& v) { return v ? TierName(*v) : "none"; }

std::string Describe(const BalanceView& b) {
  std::string s = absl::StrCat("{available ", b.available, ", pending ", b.pending, ", earned ",
                               b.earned, ", redeemed ", b.redeemed, ", reversed ", b.reversed,
                               ", adjusted_out ", b.adjusted_out, ", expired ", b.expired,
                               ", debt ", b.debt, ", expiring_soon [");
  for (const auto& e : b.expiring_soon) absl::StrAppend(&s, e.points, "@", e.expires_at, " ");
  return absl::StrCat(s, "]}");
}

// Field by field: "" when equal, else what differs.
std::string DiffBalance(const BalanceView& a, const BalanceView& b) {
  std::string d;
  auto f = [&](const char* name, int64_t x, int64_t y) {
    if (x != y) absl::StrAppend(&d, name, " ", x, " vs ", y, "; ");
  };
  f("available", a.available, b.available);
  f("pending", a.pending, b.pending);
  f("earned", a.earned, b.earned);
  f("redeemed", a.redeemed, b.redeemed);
  f("reversed", a.reversed, b.reversed);
  f("adjusted_out", a.adjusted_out, b.adjusted_out);
  f("expired", a.expired, b.expired);
  f("debt", a.debt, b.debt);
  if (a.expiring_soon.size() != b.expiring_soon.size()) {
    absl::StrAppend(&d, "expiring_soon size ", a.expiring_soon.size(), " vs ",
                    b.expiring_soon.size(), "; ");
  } else {
    for (size_t i = 0; i < a.expiring_soon.size(); ++i) {
      f("expiring_soon.points", a.expiring_soon[i].points, b.expiring_soon[i].points);
      f("expiring_soon.expires_at", a.expiring_soon[i].expires_at, b.expiring_soon[i].expires_at);
    }
  }
  return d;
}

std::string DiffTier(const TierView& a, const TierView& b) {
  std::string d;
  if (a.tier != b.tier) absl::StrAppend(&d, "tier ", TierName(a.tier), " vs ", TierName(b.tier), "; ");
  if (a.rolling_spend_minor != b.rolling_spend_minor) {
    absl::StrAppend(&d, "rolling_spend ", a.rolling_spend_minor, " vs ", b.rolling_spend_minor, "; ");
  }
  if (a.valid_until != b.valid_until) {
    absl::StrAppend(&d, "valid_until ", Opt(a.valid_until), " vs ", Opt(b.valid_until), "; ");
  }
  if (a.next_tier != b.next_tier) {
    absl::StrAppend(&d, "next_tier ", OptTier(a.next_tier), " vs ", OptTier(b.next_tier), "; ");
  }
  if (a.spend_to_next_tier_minor != b.spend_to_next_tier_minor) {
    absl::StrAppend(&d, "spend_to_next ", a.spend_to_next_tier_minor, " vs ",
                    b.spend_to_next_tier_minor, "; ");
  }
  return d;
}

std::string DiffChurn(const ChurnView& a, const ChurnView& b) {
  std::string d;
  if (a.risk_level != b.risk_level) {
    absl::StrAppend(&d, "risk ", RiskLevelName(a.risk_level), " vs ", RiskLevelName(b.risk_level), "; ");
  }
  if (a.last_purchase_at != b.last_purchase_at) {
    absl::StrAppend(&d, "last_purchase_at ", Opt(a.last_purchase_at), " vs ", Opt(b.last_purchase_at), "; ");
  }
  auto f = [&](const char* name, int64_t x, int64_t y) {
    if (x != y) absl::StrAppend(&d, name, " ", x, " vs ", y, "; ");
  };
  f("days_since_last_purchase", a.days_since_last_purchase, b.days_since_last_purchase);
  f("expected_interval_s", a.expected_interval_s, b.expected_interval_s);
  f("purchases_365d", a.purchases_365d, b.purchases_365d);
  f("spend_365d", a.spend_365d_minor, b.spend_365d_minor);
  if (a.recency_ratio != b.recency_ratio) {  // computed the same way: exactly equal
    absl::StrAppend(&d, "recency_ratio ", a.recency_ratio, " vs ", b.recency_ratio, "; ");
  }
  return d;
}

// The as-of times to check a customer's ledger at: every effective time in it and
// +/- 1 s, +14 days, +365 days, +379 days; every lot's available_at and expires_at
// and +/- 1 s; times before the first entry; random times across the stream's span
// and beyond. Sorted, distinct.
std::vector<int64_t> AsOfTimes(const std::vector<v1::LedgerEntry>& entries, const Scenario& sc,
                               std::mt19937_64& rng) {
  std::set<int64_t> ts;
  for (const v1::LedgerEntry& e : entries) {
    const int64_t t = e.effective_at();
    for (int64_t x : {t - 1, t, t + 1, t + 14 * kDay, t + 365 * kDay, t + 379 * kDay}) ts.insert(x);
    if (IsCredit(e.kind()) && e.points() > 0) {
      for (int64_t x : {e.available_at() - 1, e.available_at(), e.expires_at() - 1, e.expires_at(),
                        e.expires_at() + 1}) {
        ts.insert(x);
      }
    }
  }
  std::uniform_int_distribution<int64_t> span(sc.first_at - 60 * kDay, sc.last_at + 800 * kDay);
  for (int i = 0; i < 40; ++i) ts.insert(span(rng));
  if (!entries.empty()) {
    const int64_t first = entries.front().effective_at();
    ts.insert(first - 1);
    ts.insert(first - std::uniform_int_distribution<int64_t>(1, 400 * kDay)(rng));
    ts.insert(INT64_MIN / 4);
  }
  return {ts.begin(), ts.end()};
}

// Walks `times` (sorted) and folds the customer's entries with effective_at <= T
// into a fresh LedgerState for each; calls fn(T, state or nullptr while empty).
void FoldOverTimes(const Rules& rules, const std::vector<v1::LedgerEntry>& entries,
                   const std::vector<int64_t>& times,
                   const std::function<void(int64_t, const v1::LedgerState*)>& fn) {
  v1::LedgerState state;
  size_t next = 0;
  for (int64_t t : times) {
    while (next < entries.size() && entries[next].effective_at() <= t) {
      const absl::Status s = ApplyEntry(rules, entries[next], &state);
      if (!s.ok()) FAIL(s.ToString() << " folding " << entries[next].ShortDebugString());
      ++next;
    }
    fn(t, state.entries() > 0 ? &state : nullptr);
  }
}

// Calls fn(seq, event, outcome) for every applied record, in log order.
void ForEachApplied(const Run& run,
                    const std::function<void(uint64_t, const v1::Event&, const v1::Outcome&)>& fn) {
  v1::LogRecord record;
  const absl::Status s = run.h->log().Scan(
      1, UINT64_MAX,
      [&](uint64_t seq, std::string_view, std::string_view bytes, std::string_view) {
        REQUIRE(record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
        if (!record.has_applied()) return absl::OkStatus();
        auto event = RecordEvent(record);
        REQUIRE(event.ok());
        fn(seq, *event, record.applied().outcome());
        return absl::OkStatus();
      });
  REQUIRE(s.ok());
}

// The conservation law and the debt invariants of one balance.
void CheckBalanceLaws(const BalanceView& b, Failures& f, const std::function<std::string()>& where) {
  f.Check(Conserved(b), [&] { return absl::StrCat(where(), " not conserved: ", Describe(b)); });
  f.Check(b.pending >= 0 && b.expired >= 0 && b.debt >= 0 && b.earned >= 0 && b.redeemed >= 0 &&
              b.reversed >= 0 && b.adjusted_out >= 0,
          [&] { return absl::StrCat(where(), " negative component: ", Describe(b)); });
  f.Check(b.debt == 0 || (b.available == -b.debt && b.pending == 0), [&] {
    return absl::StrCat(where(), " debt with a non-empty unexpired lot: ", Describe(b));
  });
  f.Check(b.debt > 0 || b.available >= 0,
          [&] { return absl::StrCat(where(), " negative available without debt: ", Describe(b)); });
}

// ------------------------------------------------------------------ properties

// Proves rules.md section 9 and the debt invariant of section 2: for every customer of
// several random streams, at every time where something changes (entries, lot
// boundaries, +14/+365/+379 days) and at random times, the balance the harness
// answers (BalanceAt = State + EvaluateBalance) conserves points, no component is
// negative, and while debt > 0 available == -debt and nothing is pending.
TEST_CASE("ledger property: points are conserved at every as-of time", "[property][ledger]") {
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    std::mt19937_64 rng(seed ^ 0x5eed);
    Failures f(absl::StrCat("seed ", seed));
    uint64_t known = 0;
    for (const std::string& c : run.sc.customers) {
      const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
      if (entries.empty()) continue;
      const int64_t first = entries.front().effective_at();
      for (int64_t t : AsOfTimes(entries, run.sc, rng)) {
        if (t < first) continue;  // unknown then: checked in the point-in-time test
        const BalanceView b = run.h->BalanceAt(c, t);
        ++known;
        CheckBalanceLaws(b, f, [&] { return absl::StrCat(c, " as of ", t, " (", Rfc3339(t), ")"); });
      }
    }
    CHECK(known > 10'000);
    REQUIRE(f.count() == 0);
  }
}

// Proves that an as-of answer is exactly the ledger's prefix (rules.md section 1): for
// every customer, folding the entries with effective_at <= T through ApplyEntry into
// a fresh state gives the same balance, tier and churn answers at T as State(c, T),
// for T before the first entry (unknown: nullopt), at and around every entry and lot
// boundary, and long after the last entry.
TEST_CASE("ledger property: point-in-time answers equal the fold of the ledger prefix",
          "[property][ledger]") {
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    const Rules& rules = run.rules();
    std::mt19937_64 rng(seed ^ 0xab);
    Failures f(absl::StrCat("seed ", seed));
    for (const std::string& c : run.sc.customers) {
      const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
      if (entries.empty()) {
        f.Check(!run.h->State(c, INT64_MAX / 4).has_value(),
                [&] { return absl::StrCat(c, " has no entries but a state"); });
        continue;
      }
      FoldOverTimes(rules, entries, AsOfTimes(entries, run.sc, rng),
                    [&](int64_t t, const v1::LedgerState* folded) {
                      const std::optional<v1::LedgerState> state = run.h->State(c, t);
                      auto where = [&] { return absl::StrCat(c, " as of ", t, " (", Rfc3339(t), ")"); };
                      if (folded == nullptr) {
                        f.Check(!state.has_value(), [&] {
                          return absl::StrCat(where(), ": known before its first entry");
                        });
                        return;
                      }
                      f.Check(state.has_value(), [&] { return absl::StrCat(where(), ": unknown"); });
                      if (!state.has_value()) return;
                      const std::string db =
                          DiffBalance(EvaluateBalance(rules, *folded, t), EvaluateBalance(rules, *state, t));
                      f.Check(db.empty(), [&] { return absl::StrCat(where(), " balance: ", db); });
                      const std::string dt =
                          DiffTier(EvaluateTier(rules, *folded, t), EvaluateTier(rules, *state, t));
                      f.Check(dt.empty(), [&] { return absl::StrCat(where(), " tier: ", dt); });
                      const std::string dc =
                          DiffChurn(EvaluateChurn(rules, *folded, t), EvaluateChurn(rules, *state, t));
                      f.Check(dc.empty(), [&] { return absl::StrCat(where(), " churn: ", dc); });
                    });
    }
    REQUIRE(f.count() == 0);
  }
}

// Proves that every customer's ledger is in time order (rules.md section 1) and that
// credits create lots (section 2): Entries() effective times never decrease; every
// credit with points > 0 names the next lot id, expires 365 days after it becomes
// available, and becomes available 14 days after the entry (at once for an
// adjustment); a credit of 0 points names no lot.
TEST_CASE("ledger property: entries are in time order and credits create lots",
          "[property][ledger]") {
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    const Rules& rules = run.rules();
    Failures f(absl::StrCat("seed ", seed));
    for (const std::string& c : run.sc.customers) {
      int64_t prev = INT64_MIN;
      uint64_t last_lot = 0;
      for (const v1::LedgerEntry& e : EntriesOf(run, c)) {
        auto what = [&] { return absl::StrCat(c, ": ", e.ShortDebugString()); };
        f.Check(e.customer_id() == c, what);
        f.Check(e.effective_at() >= prev, [&] { return absl::StrCat("time goes back to ", what()); });
        prev = e.effective_at();
        f.Check(e.points() >= 0 && e.debt_added() >= 0 && e.debt_paid() >= 0, what);
        if (!IsCredit(e.kind())) continue;
        if (e.points() == 0) {
          f.Check(e.lot_id() == 0, [&] { return absl::StrCat("a lot for no points: ", what()); });
          continue;
        }
        f.Check(e.lot_id() == last_lot + 1,
                [&] { return absl::StrCat("lot id after ", last_lot, ": ", what()); });
        last_lot = e.lot_id();
        const int64_t pending = e.kind() == v1::ADJUSTMENT_CREDIT ? 0 : rules.pending_s;
        f.Check(e.available_at() == e.effective_at() + pending,
                [&] { return absl::StrCat("available_at: ", what()); });
        f.Check(e.expires_at() == e.available_at() + rules.expiry_s,
                [&] { return absl::StrCat("expires_at: ", what()); });
        f.Check(e.debt_paid() <= e.points(), what);
      }
    }
    REQUIRE(f.count() == 0);
  }
}

// Proves that rebuild equals live: ReplayLog re-decides every applied event from
// scratch and derives exactly the recorded outcome (first_mismatch_seq == 0), and its
// rebuilt customer states, serialized deterministically, equal the stored ones byte
// for byte, for the same set of customers.
TEST_CASE("ledger property: replaying the log rebuilds the live states byte for byte",
          "[property][ledger][replay]") {
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    INFO("seed " << seed);
    auto replay = ReplayLog(run.h->log(), UINT64_MAX);
    REQUIRE(replay.ok());
    INFO(replay->mismatch);
    CHECK(replay->first_mismatch_seq == 0);
    CHECK(replay->records == run.h->log().head().seq);
    CHECK(replay->events == run.sc.events);

    std::map<std::string, std::string> stored;
    REQUIRE(run.h->log()
                .ScanProjection(LogBatch::ProjectionCf::kCustomerState,
                                [&](std::string_view key, std::string_view value) {
                                  stored.emplace(std::string(key), std::string(value));
                                  return absl::OkStatus();
                                })
                .ok());
    std::vector<std::string> stored_ids, rebuilt_ids;
    for (const auto& [id, bytes] : stored) stored_ids.push_back(id);
    for (const auto& [id, state] : replay->states) rebuilt_ids.push_back(id);
    REQUIRE(stored_ids == rebuilt_ids);
    for (const auto& [id, state] : replay->states) {
      INFO("customer " << id);
      const std::string rebuilt = SerializeDeterministic(*state);
      if (rebuilt != stored[id]) {
        v1::CustomerState live;
        REQUIRE(live.ParseFromString(stored[id]));
        FAIL("stored " << live.ShortDebugString() << "\nrebuilt " << state->ShortDebugString());
      }
    }
  }
}

// Proves idempotency (rules.md section 10): ingesting the whole stream a second time,
// in different batches, applies nothing (every line is a duplicate delivery), appends
// no record (same log head, same hash) and changes no stored state.
TEST_CASE("ledger property: re-ingesting the same lines changes nothing",
          "[property][ledger][idempotency]") {
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    INFO("seed " << seed);
    auto snapshot = [&] {
      std::map<std::string, std::string> out;
      REQUIRE(run.h->log()
                  .ScanProjection(LogBatch::ProjectionCf::kCustomerState,
                                  [&](std::string_view key, std::string_view value) {
                                    out.emplace(std::string(key), std::string(value));
                                    return absl::OkStatus();
                                  })
                  .ok());
      return out;
    };
    const LogHead head = run.h->log().head();
    const std::map<std::string, std::string> before = snapshot();
    const IngestCounts again = IngestInBatches(*run.h, run.sc.lines, seed * 977 + 3);
    CHECK(again.messages == run.sc.lines.size());
    CHECK(again.duplicates == run.sc.lines.size());
    CHECK(again.applied == 0);
    CHECK(again.dead_letters == 0);
    const LogHead after = run.h->log().head();
    CHECK(after.seq == head.seq);
    CHECK(after.hash == head.hash);
    CHECK(snapshot() == before);
  }
}

// Proves the customer clocks of rules.md section 1, from the outcomes recorded in the
// log: an event's effective time is max(occurred_at, the customer's clock), so per
// customer it never decreases and is never before occurred_at (late events are
// clamped to the clock); the event's own entries carry it; an entry in another
// customer's ledger (referrer bonus, claw-back) gets max(t, that customer's clock).
TEST_CASE("ledger property: effective times follow the customers' clocks",
          "[property][ledger][time]") {
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    Failures f(absl::StrCat("seed ", seed));
    std::map<std::string, int64_t> clock;         // from every entry so far
    std::map<std::string, int64_t> last_outcome;  // per event customer
    uint64_t late = 0, cross = 0, cross_ahead = 0;
    ForEachApplied(run, [&](uint64_t seq, const v1::Event& ev, const v1::Outcome& o) {
      auto what = [&] { return absl::StrCat("seq ", seq, " ", ev.ShortDebugString(), " -> ", o.ShortDebugString()); };
      const std::string& c = ev.customer_id();
      const int64_t occurred = ev.occurred_at().seconds();
      auto it = clock.find(c);
      const int64_t expected = it == clock.end() ? occurred : std::max(occurred, it->second);
      if (it != clock.end() && occurred < it->second) ++late;
      f.Check(o.effective_at() == expected,
              [&] { return absl::StrCat("effective_at != ", expected, ": ", what()); });
      f.Check(o.effective_at() >= occurred, what);
      auto last = last_outcome.find(c);
      f.Check(last == last_outcome.end() || o.effective_at() >= last->second,
              [&] { return absl::StrCat("effective time went back: ", what()); });
      last_outcome[c] = o.effective_at();
      f.Check(o.entries_size() > 0 && o.entries(0).customer_id() == c,
              [&] { return absl::StrCat("no entry of the event's customer first: ", what()); });
      for (const v1::LedgerEntry& e : o.entries()) {
        if (e.customer_id() == c) {
          f.Check(e.effective_at() == o.effective_at(), what);
        } else {
          ++cross;
          auto other = clock.find(e.customer_id());
          const int64_t want = other == clock.end() ? o.effective_at()
                                                    : std::max(o.effective_at(), other->second);
          if (want > o.effective_at()) ++cross_ahead;
          f.Check(e.effective_at() == want,
                  [&] { return absl::StrCat("cross entry not at ", want, ": ", what()); });
        }
        clock[e.customer_id()] = e.effective_at();
      }
    });
    CHECK(late > run.sc.events / 30);  // ~10% of spontaneous events are late
    CHECK(cross > 0);
    CHECK(cross_ahead > 0);
    REQUIRE(f.count() == 0);
  }
}

}  // namespace
}  // namespace loyalty
