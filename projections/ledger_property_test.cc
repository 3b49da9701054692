// Property tests of the ledger (rules.md): deterministic random streams of a few
// thousand events over a small, densely interacting set of customers, built to hit
// every edge of the rules, ingested in random batches through the real Ingestor +
// Projector (LedgerHarness); then invariants that must hold for every customer at
// every time, and rebuild / idempotency / clock properties of the log.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <fstream>
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
#include "projections/stats.h"
#include "projections/stats_index.h"
#include "projections/stats_timeline.h"
#include "tests/testing/ledger_harness.h"

namespace loyalty {
namespace {

using testing::Conserved;
using testing::LedgerHarness;
using testing::Rfc3339;

constexpr int64_t kDay = kDaySeconds;
constexpr int64_t kStart = 1704067200;  // 2024-01-01T00:00:00Z

// The seeds of the default-program streams, and their sizes (distinct events).
// Under the sanitizers (the CI's Debug ASan+UBSan run, many times slower) fewer and
// shorter streams: the same properties, in seconds rather than minutes.
#if defined(__SANITIZE_ADDRESS__)
#define LOYALTY_PROPERTY_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOYALTY_PROPERTY_SANITIZED 1
#endif
#endif
#ifdef LOYALTY_PROPERTY_SANITIZED
constexpr uint64_t kSeeds[] = {1, 42};
constexpr size_t kEvents = 1500;
#else
constexpr uint64_t kSeeds[] = {1, 7, 42, 1234, 987654321};
constexpr size_t kEvents = 3000;
#endif

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
    // Let the follow-ups of the last two months happen, in time order.
    const int64_t end = now_ + 60 * kDay;
    while (!queue_.empty() && queue_.top().due <= end) {
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
    if (r < 0.99) return U(kDay, 4 * kDay);
    return U(7 * kDay, 21 * kDay);
  }

  // occurred_at of a customer's next spontaneous event: mostly the stream's time
  // (plus the customer's lead), 10% late (before the customer's previous event).
  int64_t OccFor(int ci) {
    const Customer& c = customers_[ci];
    if (c.last_occ != INT64_MIN && P(0.10)) {
      const double r = Unit();
      const int64_t by = r < 0.4 ? U(1, 600) : r < 0.8 ? U(600, 3 * kDay) : U(3 * kDay, 60 * kDay);
      return c.last_occ - by;
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
    const int64_t busy = std::min<int64_t>(3, static_cast<int64_t>(active_.size()) - 1);
    const int ci = P(0.25) ? active_[static_cast<size_t>(U(0, busy))] : Pick(active_);
    const double r = Unit();
    if (r < 0.48) {
      Purchase(ci);
    } else if (r < 0.60) {
      Refund(ci);
    } else if (r < 0.76) {
      Redeem(ci, OccFor(ci));
    } else if (r < 0.83) {
      Cancel(ci);
    } else if (r < 0.915) {
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
    auto refund = [=, this](int64_t at, int64_t amt) {
      Schedule(ci, at, [=, this](int64_t t) { Emit(ci, t, RefundJson(id, amt)); });
    };
    if (P(0.03)) refund(occ + 365 * kDay, 1);
    if (P(0.03)) refund(occ + 365 * kDay - 1, amount);
  }

  void Refund(int ci) {
    Customer& c = customers_[ci];
    const int64_t occ = OccFor(ci);
    const double r = Unit();
    if (c.orders.empty() || r < 0.08) {
      const std::string id = !c.unknown_orders.empty() && P(0.5)
                                 ? Pick(c.unknown_orders)
                                 : absl::StrCat("o-none-", U(1, 99));
      Emit(ci, occ, RefundJson(id, U(1, 10'000)));
      return;
    }
    const int64_t n = static_cast<int64_t>(c.orders.size());
    Order& o = c.orders[static_cast<size_t>(r < 0.6 ? U(std::max<int64_t>(0, n - 8), n - 1)
                                                    : U(0, n - 1))];
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
        Schedule(ci, occ + delay + U(0, 10 * kDay),
                 [=, this](int64_t at) { Emit(ci, at, CancelJson(id)); });
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
    Schedule(ci, t_red + U(1, 30 * kDay),
             [=, this](int64_t at) { Emit(ci, at, RefundJson(id, amount)); });
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
    // The lot expires at t0 + 365 days: cancel at that very second, one before, or later.
    const double w = Unit();
    const int64_t t_cancel = t0 + 365 * kDay + (w < 0.3 ? 0 : w < 0.5 ? -1 : U(1, 30 * kDay));
    Schedule(ei, t_cancel, [=, this](int64_t at) { Emit(ei, at, CancelJson(rid)); });
    if (P(0.5)) {
      Schedule(ei, t0 + 365 * kDay + U(31 * kDay, 60 * kDay),
               [=, this](int64_t at) { Emit(ei, at, AdjustmentJson(-U(1, 100))); });
    }
  }

  void Newcomer() {
    const int ni = Add(absl::StrCat("n", ++newcomer_no_));
    const std::string nid = customers_[ni].id;
    double r = Unit();
    const int referrer = r < 0.55 ? 0 : r < 0.75 ? 1 : r < 0.83 ? ext_ : OtherCore(ni);
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
    const int64_t amount = r < 0.65   ? U(2000, 40'000)
                           : r < 0.75 ? 2000
                           : r < 0.85 ? 1999
                                      : U(100, 1999);
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
      Schedule(ni, at, [=, this](int64_t t) { Emit(ni, t, RefundJson(oid, amt)); });
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
        Schedule(ni, t_ref + U(0, 20 * kDay),
                 [=, this](int64_t at) { Emit(ni, at, CancelJson(rid)); });
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

Scenario Generate(uint64_t seed, size_t events = kEvents) {
  return Generator(seed, events).Build();
}

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
  if (a.tier != b.tier) {
    absl::StrAppend(&d, "tier ", TierName(a.tier), " vs ", TierName(b.tier), "; ");
  }
  if (a.rolling_spend_minor != b.rolling_spend_minor) {
    absl::StrAppend(&d, "rolling_spend ", a.rolling_spend_minor, " vs ", b.rolling_spend_minor,
                    "; ");
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
    absl::StrAppend(&d, "risk ", RiskLevelName(a.risk_level), " vs ", RiskLevelName(b.risk_level),
                    "; ");
  }
  if (a.last_purchase_at != b.last_purchase_at) {
    absl::StrAppend(&d, "last_purchase_at ", Opt(a.last_purchase_at), " vs ",
                    Opt(b.last_purchase_at), "; ");
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

// The three answers at one time.
struct Answers {
  BalanceView balance;
  TierView tier;
  ChurnView churn;
};
Answers Evaluate(const Rules& rules, const v1::LedgerState& s, int64_t t) {
  Answers a{EvaluateBalance(rules, s, t), EvaluateTier(rules, s, t), EvaluateChurn(rules, s, t)};
  // The short cuts the decider and the signals take agree with the full answers.
  if (TierAt(rules, s, t) != a.tier.tier) FAIL("TierAt differs from EvaluateTier at " << t);
  const ChurnView risk = EvaluateChurnRisk(rules, s, t);
  if (risk.risk_level != a.churn.risk_level || risk.last_purchase_at != a.churn.last_purchase_at ||
      risk.expected_interval_s != a.churn.expected_interval_s) {
    FAIL("EvaluateChurnRisk differs from EvaluateChurn at " << t);
  }
  return a;
}
std::string DiffAnswers(const Answers& a, const Answers& b) {
  std::string d;
  if (std::string x = DiffBalance(a.balance, b.balance); !x.empty()) {
    absl::StrAppend(&d, "balance: ", x);
  }
  if (std::string x = DiffTier(a.tier, b.tier); !x.empty()) absl::StrAppend(&d, "tier: ", x);
  if (std::string x = DiffChurn(a.churn, b.churn); !x.empty()) absl::StrAppend(&d, "churn: ", x);
  return d;
}
std::string At(const std::string& customer, int64_t t) {
  return absl::StrCat(customer, " as of ", t, " (", Rfc3339(t), ")");
}

// The as-of times to check a customer's ledger at: every effective time in it and
// +/- 1 s, +14 days, +365 days, +379 days; every lot's available_at and expires_at
// and +/- 1 s; churn boundaries; times before the first entry; random times across
// the stream's span and beyond. Sorted, distinct. `core`, if given, receives the
// entry-based times and the random ones (not the lot and churn boundaries).
std::vector<int64_t> AsOfTimes(const std::vector<v1::LedgerEntry>& entries, const Scenario& sc,
                               std::mt19937_64& rng, std::set<int64_t>* core = nullptr) {
  std::set<int64_t> ts;
  for (const v1::LedgerEntry& e : entries) {
    const int64_t t = e.effective_at();
    for (int64_t x : {t - 1, t, t + 1, t + 14 * kDay, t + 365 * kDay, t + 379 * kDay}) {
      ts.insert(x);
      if (core != nullptr) core->insert(x);
    }
    if (IsCredit(e.kind()) && e.points() > 0) {
      for (int64_t x : {e.available_at() - 1, e.available_at(), e.expires_at() - 1, e.expires_at(),
                        e.expires_at() + 1}) {
        ts.insert(x);
      }
    }
  }
  // Churn boundaries (default rules): from each purchase, 180 days, and 1.5x and 3x
  // the expected interval of the last up to 6 purchases then.
  std::vector<int64_t> purchases;
  for (const v1::LedgerEntry& e : entries) {
    if (e.kind() != v1::PURCHASE) continue;
    purchases.push_back(e.effective_at());
    const size_t m = std::min<size_t>(purchases.size(), 6);
    const int64_t last = purchases.back();
    const int64_t first = purchases[purchases.size() - m];
    int64_t expected = m == 1 ? 30 * kDay : (last - first) / static_cast<int64_t>(m - 1);
    expected = std::max(expected, kDay);
    for (int64_t x : {last + 180 * kDay, last + 3 * expected, last + (3 * expected + 1) / 2}) {
      for (int64_t dx : {-1, 0, 1}) ts.insert(x + dx);
    }
  }
  std::uniform_int_distribution<int64_t> span(sc.first_at - 60 * kDay, sc.last_at + 800 * kDay);
  for (int i = 0; i < 40; ++i) {
    const int64_t x = span(rng);
    ts.insert(x);
    if (core != nullptr) core->insert(x);
  }
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
void CheckBalanceLaws(const BalanceView& b, Failures& f,
                      const std::function<std::string()>& where) {
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

// ------------------------------------------------------------------ reference model
//
// A naive, independent reading of rules.md sections 2-8: every lot kept forever
// (never settled), every order kept forever, answers computed straight from the
// definitions. Used to check the engine's decisions and its compacted state.

struct NLot {
  uint64_t id;
  int64_t remaining, available_at, expires_at;
};
struct NOrder {
  std::string id;
  int64_t at, amount, refunded = 0, points = 0, reversed = 0;
  uint64_t lot = 0;
};
struct NRedemption {
  int64_t at = 0;
  bool accepted = false, cancelled = false;
  std::vector<std::tuple<uint64_t, int64_t, int64_t>> draws;  // lot, points, expires_at
};
struct NReferral {
  bool recorded = false, closed = false, qualified = false, referrer_paid = false, clawed = false;
  std::string referrer, order_id;
  int64_t at = 0, purchase_at = 0;
};

class NaiveLedger {
 public:
  std::vector<NLot> lots;  // creation order
  int64_t debt = 0, earned = 0, redeemed = 0, reversed = 0, adjusted_out = 0, expired_extra = 0;
  uint64_t next_lot = 0;
  std::vector<NOrder> orders;  // in time order
  std::set<std::string> order_ids;
  std::map<std::string, NRedemption> redemptions;
  NReferral referral;
  std::map<std::string, uint64_t> bonus_lot;  // referee: order -> lot; referrer: referee -> lot
  std::vector<int64_t> referrer_bonus_at;
  std::optional<int64_t> clock;

  NLot* Lot(uint64_t id) {
    for (NLot& l : lots) {
      if (l.id == id) return &l;
    }
    return nullptr;
  }
  NOrder* FindOrder(const std::string& id) {
    for (auto it = orders.rbegin(); it != orders.rend(); ++it) {
      if (it->id == id) return &*it;
    }
    return nullptr;
  }

  // rolling_spend(s): net amounts of orders with time in (s - window, s].
  int64_t Rolling(const Rules& r, int64_t s) const {
    int64_t sum = 0;
    for (const NOrder& o : orders) {
      if (o.at > s - r.spend_window_s && o.at <= s) sum += o.amount - o.refunded;
    }
    return sum;
  }
  TierView Tiers(const Rules& r, int64_t t) const {
    TierView v;
    std::vector<std::pair<int64_t, Tier>> reached;
    for (const NOrder& o : orders) {
      if (o.at <= t - r.tier_status_s || o.at > t || o.amount - o.refunded <= 0) continue;
      const Tier k = r.TierBySpend(Rolling(r, o.at));
      reached.emplace_back(o.at, k);
      v.tier = std::max(v.tier, k);
    }
    if (v.tier != Tier::kBronze) {
      int64_t latest = INT64_MIN;
      for (const auto& [at, k] : reached) {
        if (k >= v.tier) latest = std::max(latest, at + r.tier_status_s);
      }
      v.valid_until = latest;
    }
    v.rolling_spend_minor = Rolling(r, t);
    if (v.tier != Tier::kPlatinum) {
      const int next = static_cast<int>(v.tier) + 1;
      v.next_tier = static_cast<Tier>(next);
      v.spend_to_next_tier_minor =
          std::max<int64_t>(0, r.tier_threshold[next] - v.rolling_spend_minor);
    }
    return v;
  }
  ChurnView Churn(const Rules& r, int64_t t) const {
    ChurnView v;
    std::vector<int64_t> times;
    for (const NOrder& o : orders) {
      if (o.at <= t && o.amount - o.refunded > 0) times.push_back(o.at);
    }
    if (times.empty()) return v;
    const int64_t last = times.back();
    const size_t m =
        std::min<size_t>(times.size(), static_cast<size_t>(r.churn_interval_purchases));
    int64_t expected = m == 1 ? r.churn_default_interval_s
                              : (last - times[times.size() - m]) / static_cast<int64_t>(m - 1);
    expected = std::max(expected, r.churn_min_interval_s);
    const int64_t elapsed = t - last;
    v.last_purchase_at = last;
    v.days_since_last_purchase = elapsed / kDay;
    v.expected_interval_s = expected;
    v.recency_ratio = static_cast<double>(elapsed) / static_cast<double>(expected);
    if (elapsed >= r.churned_s) {
      v.risk_level = RiskLevel::kChurned;
    } else if (elapsed * r.at_risk_den >= expected * r.at_risk_num) {
      v.risk_level = RiskLevel::kAtRisk;
    } else if (elapsed * r.cooling_den >= expected * r.cooling_num) {
      v.risk_level = RiskLevel::kCooling;
    } else {
      v.risk_level = RiskLevel::kActive;
    }
    for (const NOrder& o : orders) {
      if (o.at > t - r.churn_window_s && o.at <= t && o.amount - o.refunded > 0) ++v.purchases_365d;
    }
    v.spend_365d_minor = Rolling(r, t);
    return v;
  }
  BalanceView Balance(const Rules& r, int64_t t) const {
    BalanceView b;
    b.earned = earned;
    b.redeemed = redeemed;
    b.reversed = reversed;
    b.adjusted_out = adjusted_out;
    b.debt = debt;
    b.expired = expired_extra;
    std::vector<NLot> soon;
    for (const NLot& l : lots) {
      if (t < l.available_at) {
        b.pending += l.remaining;
      } else if (t < l.expires_at) {
        b.available += l.remaining;
        if (l.remaining > 0 && l.expires_at <= t + r.expiring_soon_s) soon.push_back(l);
      } else {
        b.expired += l.remaining;
      }
    }
    b.available -= debt;
    std::stable_sort(soon.begin(), soon.end(),
                     [](const NLot& a, const NLot& b) { return a.expires_at < b.expires_at; });
    for (const NLot& l : soon) b.expiring_soon.push_back({l.remaining, l.expires_at});
    return b;
  }
  int64_t Available(int64_t t) const {
    int64_t sum = 0;
    for (const NLot& l : lots) {
      if (l.available_at <= t && t < l.expires_at) sum += l.remaining;
    }
    return sum - debt;
  }

  // rules.md section 2: a credit creates a lot and pays debt first.
  void ExpectCredit(const Rules& r, int64_t points, int64_t available_at,
                    v1::LedgerEntry* e) const {
    e->set_points(points);
    if (points <= 0) return;
    e->set_lot_id(next_lot + 1);
    e->set_available_at(available_at);
    e->set_expires_at(available_at + r.expiry_s);
    e->set_debt_paid(std::min(debt, points));
  }
  // A debit at t: the own lot first (if unexpired), then FIFO (expires_at, then
  // creation) over unexpired lots (available ones only for a redemption), then debt.
  void ExpectDebit(int64_t t, int64_t points, uint64_t own, bool available_only,
                   v1::LedgerEntry* e) const {
    e->set_points(points);
    int64_t left = points;
    for (const NLot& l : lots) {
      if (own != 0 && l.id == own && l.expires_at > t && l.remaining > 0 && left > 0) {
        const int64_t take = std::min(left, l.remaining);
        v1::LotDraw* d = e->add_draws();
        d->set_lot_id(l.id);
        d->set_points(take);
        left -= take;
      }
    }
    std::vector<NLot> fifo;
    for (const NLot& l : lots) {
      if (l.id == own || l.remaining <= 0 || l.expires_at <= t) continue;
      if (available_only && l.available_at > t) continue;
      fifo.push_back(l);
    }
    std::stable_sort(fifo.begin(), fifo.end(),
                     [](const NLot& a, const NLot& b) { return a.expires_at < b.expires_at; });
    for (const NLot& l : fifo) {
      if (left == 0) break;
      const int64_t take = std::min(left, l.remaining);
      v1::LotDraw* d = e->add_draws();
      d->set_lot_id(l.id);
      d->set_points(take);
      left -= take;
    }
    e->set_debt_added(left);
  }

  // Folds an entry the engine recorded (after it was checked).
  void Apply(const v1::LedgerEntry& e) {
    const int64_t t = e.effective_at();
    clock = t;
    auto draw = [&] {
      for (const v1::LotDraw& d : e.draws()) Lot(d.lot_id())->remaining -= d.points();
      debt += e.debt_added();
    };
    switch (e.kind()) {
      case v1::PURCHASE:
      case v1::REFEREE_BONUS:
      case v1::REFERRER_BONUS:
      case v1::ADJUSTMENT_CREDIT:
        earned += e.points();
        debt -= e.debt_paid();
        if (e.points() > 0) {
          next_lot = e.lot_id();
          lots.push_back(
              {e.lot_id(), e.points() - e.debt_paid(), e.available_at(), e.expires_at()});
        }
        if (e.kind() == v1::PURCHASE) {
          orders.push_back({e.order_id(), t, e.amount_minor(), 0, e.points(), 0,
                            e.points() > 0 ? e.lot_id() : 0});
          order_ids.insert(e.order_id());
        } else if (e.kind() == v1::REFEREE_BONUS) {
          bonus_lot[e.order_id()] = e.lot_id();
        } else if (e.kind() == v1::REFERRER_BONUS) {
          bonus_lot[e.counterparty_id()] = e.lot_id();
          referrer_bonus_at.push_back(t);
        }
        return;
      case v1::REFUND: {
        NOrder* o = FindOrder(e.order_id());
        o->refunded += e.amount_minor();
        o->reversed += e.points();
        reversed += e.points();
        draw();
        return;
      }
      case v1::CLAWBACK:
        reversed += e.points();
        draw();
        return;
      case v1::ADJUSTMENT_DEBIT:
        adjusted_out += e.points();
        draw();
        return;
      case v1::REDEMPTION:
        redeemed += e.points();
        draw();
        return;
      case v1::REDEMPTION_CANCEL:
        redeemed -= e.points();
        debt -= e.debt_paid();
        expired_extra += e.expired_points();
        for (const v1::LotDraw& d : e.draws()) Lot(d.lot_id())->remaining += d.points();
        return;
      default:
        return;
    }
  }
};

// The rules-relevant fields of two entries: "" when equal.
std::string DiffEntry(const v1::LedgerEntry& want, const v1::LedgerEntry& got) {
  std::string d;
  auto f = [&](const char* name, int64_t x, int64_t y) {
    if (x != y) absl::StrAppend(&d, name, " want ", x, " got ", y, "; ");
  };
  if (want.customer_id() != got.customer_id()) {
    absl::StrAppend(&d, "customer want ", want.customer_id(), " got ", got.customer_id(), "; ");
  }
  if (want.kind() != got.kind()) {
    absl::StrAppend(&d, "kind want ", v1::EntryKind_Name(want.kind()), " got ",
                    v1::EntryKind_Name(got.kind()), "; ");
  }
  f("effective_at", want.effective_at(), got.effective_at());
  f("points", want.points(), got.points());
  f("lot_id", static_cast<int64_t>(want.lot_id()), static_cast<int64_t>(got.lot_id()));
  f("available_at", want.available_at(), got.available_at());
  f("expires_at", want.expires_at(), got.expires_at());
  f("debt_paid", want.debt_paid(), got.debt_paid());
  f("debt_added", want.debt_added(), got.debt_added());
  f("expired_points", want.expired_points(), got.expired_points());
  std::string wd, gd;
  for (const auto& x : want.draws()) absl::StrAppend(&wd, x.lot_id(), ":", x.points(), " ");
  for (const auto& x : got.draws()) absl::StrAppend(&gd, x.lot_id(), ":", x.points(), " ");
  if (wd != gd) absl::StrAppend(&d, "draws want [", wd, "] got [", gd, "]; ");
  return d;
}

v1::LedgerEntry Want(const std::string& customer, int64_t t, v1::EntryKind kind) {
  v1::LedgerEntry e;
  e.set_customer_id(customer);
  e.set_effective_at(t);
  e.set_kind(kind);
  return e;
}

// Decides every applied event of a log again with the naive model and compares
// status, reason and every entry with what the engine recorded.
class ReferenceModel {
 public:
  ReferenceModel(const Rules& rules, Failures* f) : r_(rules), f_(f) {}

  void Check(uint64_t seq, const v1::Event& ev, const v1::Outcome& o) {
    const std::string& c = ev.customer_id();
    NaiveLedger& me = ledgers_[c];
    auto what = [&] {
      return absl::StrCat("seq ", seq, " ", ev.ShortDebugString(), "\n  -> ", o.ShortDebugString());
    };
    const int64_t occurred = ev.occurred_at().seconds();
    const int64_t t = me.clock ? std::max(occurred, *me.clock) : occurred;
    f_->Check(o.effective_at() == t, [&] { return absl::StrCat("t want ", t, ": ", what()); });

    // What the rules give: a reason, or the first entry; then the other entries.
    v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
    std::optional<v1::LedgerEntry> main;
    std::vector<v1::LedgerEntry> rest;  // referral entries, bonuses, claw-backs
    // Set when a qualifying purchase / a claw-back has to be completed after the
    // first entry is folded.
    bool bonus = false, clawback = false;
    switch (ev.payload_case()) {
      case v1::Event::kPurchase: {
        const v1::Purchase& p = ev.purchase();
        if (p.currency() != r_.currency) {
          reason = v1::WRONG_CURRENCY;
        } else if (me.order_ids.count(p.order_id())) {
          reason = v1::DUPLICATE_ORDER;
        } else {
          __int128 eligible = 0;
          if (p.lines_size() == 0) {
            eligible = static_cast<__int128>(p.amount_minor()) * 10'000;
          } else {
            for (const auto& l : p.lines()) {
              eligible += static_cast<__int128>(l.amount_minor()) * r_.CategoryBp(l.category());
            }
          }
          const Tier tier = me.Tiers(r_, t).tier;
          const __int128 pts = eligible * r_.tier_multiplier_bp[static_cast<int>(tier)] *
                               r_.points_per_major /
                               (static_cast<__int128>(r_.minor_per_major) * 100'000'000);
          main = Want(c, t, v1::PURCHASE);
          me.ExpectCredit(r_, static_cast<int64_t>(pts), t + r_.pending_s, &*main);
          if (me.order_ids.empty() && me.referral.recorded && !me.referral.closed) bonus = true;
        }
        break;
      }
      case v1::Event::kRefund: {
        const v1::Refund& rf = ev.refund();
        NOrder* order = me.order_ids.count(rf.order_id()) ? me.FindOrder(rf.order_id()) : nullptr;
        if (order == nullptr) {
          reason = v1::UNKNOWN_ORDER;
        } else if (t >= order->at + r_.refund_window_s) {
          reason = v1::REFUND_WINDOW_CLOSED;
        } else if (rf.amount_minor() > order->amount - order->refunded) {
          reason = v1::REFUND_EXCEEDS_ORDER;
        } else {
          const int64_t refunded = order->refunded + rf.amount_minor();
          const __int128 num = static_cast<__int128>(order->points) * refunded;
          const int64_t target = static_cast<int64_t>((num + order->amount - 1) / order->amount);
          main = Want(c, t, v1::REFUND);
          me.ExpectDebit(t, target - order->reversed, order->lot, false, &*main);
          const NReferral& ref = me.referral;
          clawback = refunded == order->amount && ref.qualified && !ref.clawed &&
                     ref.order_id == rf.order_id() && t < ref.purchase_at + r_.clawback_s;
        }
        break;
      }
      case v1::Event::kReferral:
        if (ev.referral().referrer_id() == ev.referral().referee_id()) {
          reason = v1::SELF_REFERRAL;
        } else if (!me.order_ids.empty()) {
          reason = v1::ALREADY_CUSTOMER;
        } else if (me.referral.recorded) {
          reason = v1::ALREADY_REFERRED;
        } else {
          main = Want(c, t, v1::REFERRAL_RECORDED);
          me.referral.recorded = true;
          me.referral.referrer = ev.referral().referrer_id();
          me.referral.at = t;
        }
        break;
      case v1::Event::kRedemption: {
        const v1::Redemption& red = ev.redemption();
        if (me.redemptions.count(red.redemption_id())) {
          reason = v1::DUPLICATE_REDEMPTION;
          break;
        }
        NRedemption& rec = me.redemptions[red.redemption_id()];
        rec.at = t;
        if (me.Available(t) < red.points()) {
          reason = v1::INSUFFICIENT_POINTS;
          break;
        }
        rec.accepted = true;
        main = Want(c, t, v1::REDEMPTION);
        me.ExpectDebit(t, red.points(), 0, true, &*main);
        for (const auto& d : main->draws()) {
          rec.draws.emplace_back(d.lot_id(), d.points(), me.Lot(d.lot_id())->expires_at);
        }
        break;
      }
      case v1::Event::kRedemptionCancel: {
        auto it = me.redemptions.find(ev.redemption_cancel().redemption_id());
        if (it == me.redemptions.end() || !it->second.accepted || it->second.cancelled) {
          reason = v1::UNKNOWN_REDEMPTION;
          break;
        }
        NRedemption& rec = it->second;
        if (t >= rec.at + r_.cancel_window_s) {
          reason = v1::CANCEL_WINDOW_CLOSED;
          break;
        }
        rec.cancelled = true;
        main = Want(c, t, v1::REDEMPTION_CANCEL);
        int64_t total = 0, debt = me.debt;
        for (const auto& [lot, points, expires_at] : rec.draws) {
          total += points;
          if (expires_at <= t) {
            main->set_expired_points(main->expired_points() + points);
            continue;
          }
          const int64_t pay = std::min(debt, points);
          debt -= pay;
          main->set_debt_paid(main->debt_paid() + pay);
          if (points - pay > 0) {
            v1::LotDraw* back = main->add_draws();
            back->set_lot_id(lot);
            back->set_points(points - pay);
          }
        }
        main->set_points(total);
        break;
      }
      case v1::Event::kAdjustment: {
        const int64_t points = ev.adjustment().points();
        if (points > 0) {
          main = Want(c, t, v1::ADJUSTMENT_CREDIT);
          me.ExpectCredit(r_, points, t, &*main);
        } else {
          main = Want(c, t, v1::ADJUSTMENT_DEBIT);
          me.ExpectDebit(t, -points, 0, false, &*main);
        }
        break;
      }
      default:
        f_->Check(false, [&] { return absl::StrCat("no payload: ", what()); });
        return;
    }

    if (reason != v1::REJECT_REASON_UNSPECIFIED) {
      f_->Check(o.status() == v1::REJECTED_BY_RULES && o.reason() == reason, [&] {
        return absl::StrCat("want rejected ", v1::RejectReason_Name(reason), ": ", what());
      });
      f_->Check(o.entries_size() == 1 && DiffEntry(Want(c, t, v1::REJECTED), o.entries(0)).empty(),
                [&] { return absl::StrCat("want one REJECTED entry: ", what()); });
      for (const auto& e : o.entries()) ledgers_[e.customer_id()].Apply(e);
      return;
    }
    f_->Check(o.status() == v1::ACCEPTED, [&] { return absl::StrCat("want accepted: ", what()); });
    if (o.status() != v1::ACCEPTED || o.entries_size() == 0) {
      for (const auto& e : o.entries()) ledgers_[e.customer_id()].Apply(e);
      return;
    }
    const std::string d0 = DiffEntry(*main, o.entries(0));
    f_->Check(d0.empty(), [&] { return absl::StrCat("entry 0: ", d0, "\n  ", what()); });
    me.Apply(o.entries(0));
    if (main->kind() == v1::PURCHASE) ++purchases_;

    // The entries the first one causes (rules.md sections 4 and 5), each checked
    // against the ledger as it is just before it.
    int next = 1;
    auto expect = [&](v1::LedgerEntry want) {
      if (next >= o.entries_size()) {
        f_->Check(false, [&] {
          return absl::StrCat("missing ", v1::EntryKind_Name(want.kind()), " of ",
                              want.customer_id(), ": ", what());
        });
        return false;
      }
      const v1::LedgerEntry& got = o.entries(next++);
      const std::string d = DiffEntry(want, got);
      f_->Check(d.empty(),
                [&] { return absl::StrCat("entry ", next - 1, ": ", d, "\n  ", what()); });
      ledgers_[got.customer_id()].Apply(got);
      return true;
    };
    if (bonus) {
      NReferral& ref = me.referral;
      ref.closed = true;
      const v1::Purchase& p = ev.purchase();
      if (t > ref.at + r_.referral_window_s || p.amount_minor() < r_.referral_min_amount) {
        ++unqualified_;
        expect(Want(c, t, v1::REFERRAL_UNQUALIFIED));
      } else {
        ++qualified_;
        ref.qualified = true;
        ref.order_id = p.order_id();
        ref.purchase_at = t;
        v1::LedgerEntry rb = Want(c, t, v1::REFEREE_BONUS);
        me.ExpectCredit(r_, r_.referee_points, t + r_.pending_s, &rb);
        expect(rb);
        NaiveLedger& referrer = ledgers_[ref.referrer];
        const int64_t tb = referrer.clock ? std::max(t, *referrer.clock) : t;
        int64_t recent = 0;
        for (int64_t at : referrer.referrer_bonus_at) {
          if (at > tb - r_.referrer_cap_window_s && at <= tb) ++recent;
        }
        if (recent < r_.referrer_cap) {
          ref.referrer_paid = true;
          v1::LedgerEntry b = Want(ref.referrer, tb, v1::REFERRER_BONUS);
          referrer.ExpectCredit(r_, r_.referrer_points, tb + r_.pending_s, &b);
          expect(b);
        } else {
          ++capped_;
        }
      }
    }
    if (clawback) {
      NReferral& ref = me.referral;
      ref.clawed = true;
      ++clawbacks_;
      v1::LedgerEntry back = Want(c, t, v1::CLAWBACK);
      me.ExpectDebit(t, r_.referee_points, me.bonus_lot[ref.order_id], false, &back);
      expect(back);
      if (ref.referrer_paid) {
        NaiveLedger& referrer = ledgers_[ref.referrer];
        const int64_t tr = referrer.clock ? std::max(t, *referrer.clock) : t;
        v1::LedgerEntry rb = Want(ref.referrer, tr, v1::CLAWBACK);
        referrer.ExpectDebit(tr, r_.referrer_points, referrer.bonus_lot[c], false, &rb);
        expect(rb);
      }
    }
    f_->Check(next == o.entries_size(),
              [&] { return absl::StrCat("unexpected entries: ", what()); });
    for (; next < o.entries_size(); ++next) {
      ledgers_[o.entries(next).customer_id()].Apply(o.entries(next));
    }
  }

  uint64_t purchases_ = 0, qualified_ = 0, unqualified_ = 0, capped_ = 0, clawbacks_ = 0;

 private:
  const Rules& r_;
  Failures* f_;
  std::map<std::string, NaiveLedger> ledgers_;
};

// Runs the reference model over a whole log (failures go to the model's Failures).
void CheckDecisions(const Run& run, ReferenceModel& model) {
  ForEachApplied(run, [&](uint64_t seq, const v1::Event& ev, const v1::Outcome& o) {
    model.Check(seq, ev, o);
  });
}

// The engine's answers on the prefix fold against the naive model's, at every
// as-of time of every customer.
void CheckAnswersAgainstModel(const Run& run, std::mt19937_64& rng, Failures& f) {
  const Rules& rules = run.rules();
  for (const std::string& c : run.sc.customers) {
    const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
    NaiveLedger naive;
    size_t next = 0;
    auto check = [&](int64_t t, const v1::LedgerState* folded) {
      while (next < entries.size() && entries[next].effective_at() <= t) {
        naive.Apply(entries[next++]);
      }
      if (folded == nullptr) return;
      const Answers model{naive.Balance(rules, t), naive.Tiers(rules, t), naive.Churn(rules, t)};
      const std::string d = DiffAnswers(model, Evaluate(rules, *folded, t));
      f.Check(d.empty(), [&] { return absl::StrCat(At(c, t), " (model vs engine) ", d); });
    };
    FoldOverTimes(rules, entries, AsOfTimes(entries, run.sc, rng), check);
  }
}

// ------------------------------------------------------------------ properties

// Whether to ask the harness for State(c, t) at a time t before the customer's
// clock (each such query folds the ledger again from the log, so it is costly):
// for the first seed at every core time (entries +/- 1 s, +14/+365/+379 days,
// random times), else for a fifth of the times. Every time is still checked on the
// prefix fold, which the point-in-time test proves equal to State.
bool AskState(size_t seed_index, bool core, std::mt19937_64& rng) {
  return (seed_index == 0 && core) || std::uniform_int_distribution<int>(0, 4)(rng) == 0;
}

// Proves conservation (rules 9) and the debt invariant (2) by checking balances at many times.
TEST_CASE("ledger property: points are conserved at every as-of time", "[property][ledger]") {
  // Proves rules.md section 9 and the debt invariant of section 2: for every customer
  // of several random streams, at every time where something changes (every entry and
  // +/- 1 s, +14/+365/+379 days, every lot boundary) and at random times, the balance
  // conserves points, no component is negative, and while debt > 0 available == -debt
  // and nothing is pending. Checked on the fold of the ledger prefix at every time,
  // and on the harness's BalanceAt (State + EvaluateBalance) at every time at or after
  // the customer's clock, at every entry-based and random time for the first seed,
  // and at a sample of the other times (see AskState).
  for (size_t si = 0; si < std::size(kSeeds); ++si) {
    const uint64_t seed = kSeeds[si];
    Run run = GenerateAndIngest(seed);
    const Rules& rules = run.rules();
    std::mt19937_64 rng(seed ^ 0x5eed);
    Failures f(absl::StrCat("seed ", seed));
    uint64_t asked = 0, folded_checks = 0;
    for (const std::string& c : run.sc.customers) {
      const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
      if (entries.empty()) continue;
      const int64_t clock = entries.back().effective_at();
      std::set<int64_t> core;
      auto check = [&](int64_t t, const v1::LedgerState* folded) {
        if (folded == nullptr) return;  // unknown: see the point-in-time test
        CheckBalanceLaws(EvaluateBalance(rules, *folded, t), f,
                         [&] { return absl::StrCat(At(c, t), " [prefix fold]"); });
        ++folded_checks;
        if (t < clock && !AskState(si, core.count(t) > 0, rng)) return;
        ++asked;
        CheckBalanceLaws(run.h->BalanceAt(c, t), f, [&] { return At(c, t); });
      };
      FoldOverTimes(rules, entries, AsOfTimes(entries, run.sc, rng, &core), check);
    }
    CHECK(folded_checks > 5 * kEvents);
    CHECK(asked > kEvents);
    REQUIRE(f.count() == 0);
  }
}

// Proves as-of answers are the ledger prefix (rules 1) by comparing State(c, T) with our own fold.
TEST_CASE("ledger property: point-in-time answers equal the fold of the ledger prefix",
          "[property][ledger]") {
  // Proves that an as-of answer is exactly the ledger's prefix (rules.md section 1): for
  // every customer, folding the entries with effective_at <= T through ApplyEntry into
  // a fresh state gives the same balance, tier and churn answers at T as State(c, T),
  // for T before the first entry (unknown: nullopt), at and around every entry and lot
  // boundary, and long after the last entry (all T at or after the clock and before
  // the first entry; before the clock, see AskState).
  for (size_t si = 0; si < std::size(kSeeds); ++si) {
    const uint64_t seed = kSeeds[si];
    Run run = GenerateAndIngest(seed);
    const Rules& rules = run.rules();
    std::mt19937_64 rng(seed ^ 0xab);
    Failures f(absl::StrCat("seed ", seed));
    uint64_t unknown = 0, compared = 0;
    for (const std::string& c : run.sc.customers) {
      const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
      if (entries.empty()) {
        f.Check(!run.h->State(c, INT64_MAX / 4).has_value(),
                [&] { return absl::StrCat(c, " has no entries but a state"); });
        continue;
      }
      const int64_t clock = entries.back().effective_at();
      std::set<int64_t> core;
      auto check = [&](int64_t t, const v1::LedgerState* folded) {
        if (folded != nullptr && t < clock && !AskState(si, core.count(t) > 0, rng)) return;
        const std::optional<v1::LedgerState> state = run.h->State(c, t);
        if (folded == nullptr) {
          ++unknown;
          f.Check(!state.has_value(),
                  [&] { return absl::StrCat(At(c, t), ": known before its first entry"); });
          return;
        }
        f.Check(state.has_value(), [&] { return absl::StrCat(At(c, t), ": unknown"); });
        if (!state.has_value()) return;
        ++compared;
        const std::string d = DiffAnswers(Evaluate(rules, *folded, t), Evaluate(rules, *state, t));
        f.Check(d.empty(), [&] { return absl::StrCat(At(c, t), " (prefix fold vs State) ", d); });
      };
      FoldOverTimes(rules, entries, AsOfTimes(entries, run.sc, rng, &core), check);
    }
    CHECK(unknown >= run.sc.customers.size());
    CHECK(compared > kEvents);
    REQUIRE(f.count() == 0);
  }
}

// Proves ledgers are in time order and credits create lots (rules 1, 2) by walking Entries().
TEST_CASE("ledger property: entries are in time order and credits create lots",
          "[property][ledger]") {
  // Proves that every customer's ledger is in time order (rules.md section 1) and that
  // credits create lots (section 2): Entries() effective times never decrease; every
  // credit with points > 0 names the next lot id, expires 365 days after it becomes
  // available, and becomes available 14 days after the entry (at once for an
  // adjustment); a credit of 0 points names no lot.
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
        f.Check(e.effective_at() >= prev,
                [&] { return absl::StrCat("time goes back to ", what()); });
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

// Proves rebuild equals live by replaying the log and comparing outcomes and state bytes.
TEST_CASE("ledger property: replaying the log rebuilds the live states byte for byte",
          "[property][ledger][replay]") {
  // Proves that rebuild equals live: ReplayLog re-decides every applied event from
  // scratch and derives exactly the recorded outcome (first_mismatch_seq == 0), and its
  // rebuilt customer states, serialized deterministically, equal the stored ones byte
  // for byte, for the same set of customers.
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    INFO("seed " << seed);
    auto replay = ReplayLog(run.h->log(), UINT64_MAX);
    REQUIRE(replay.ok());
    INFO(replay->mismatch);
    CHECK(replay->first_mismatch_seq == 0);
    CHECK(replay->records == run.h->log().head().seq);
    CHECK(replay->events == run.sc.events);

    std::map<std::string, std::string> stored = testing::StateContents(run.h->log());
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
    CHECK(replay->decision_ids == testing::ProjectionContents(run.h->log(), LogBatch::ProjectionCf::kDecisionIds));
  }
}

// Proves idempotency (rules 10) by ingesting every line again and finding the log unchanged.
TEST_CASE("ledger property: re-ingesting the same lines changes nothing",
          "[property][ledger][idempotency]") {
  // Proves idempotency (rules.md section 10): ingesting the whole stream a second time,
  // in different batches, applies nothing (every line is a duplicate delivery), appends
  // no record (same log head, same hash) and changes no stored state.
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    INFO("seed " << seed);
    auto snapshot = [&] {
      return std::tuple{
          testing::ProjectionContents(run.h->log(), LogBatch::ProjectionCf::kCustomerState),
          testing::ProjectionContents(run.h->log(), LogBatch::ProjectionCf::kDecisionIds),
          testing::ProjectionContents(run.h->log(), LogBatch::ProjectionCf::kStateChunks)};
    };
    const LogHead head = run.h->log().head();
    const auto before = snapshot();
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

// Proves the customer clocks (rules 1) by recomputing every effective time in the log.
TEST_CASE("ledger property: effective times follow the customers' clocks",
          "[property][ledger][time]") {
  // Proves the customer clocks of rules.md section 1, from the outcomes recorded in the
  // log: an event's effective time is max(occurred_at, the customer's clock), so per
  // customer it never decreases and is never before occurred_at (late events are
  // clamped to the clock); the event's own entries carry it; an entry in another
  // customer's ledger (referrer bonus, claw-back) gets max(t, that customer's clock).
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    Failures f(absl::StrCat("seed ", seed));
    std::map<std::string, int64_t> clock;         // from every entry so far
    std::map<std::string, int64_t> last_outcome;  // per event customer
    uint64_t late = 0, cross = 0, cross_ahead = 0;
    ForEachApplied(run, [&](uint64_t seq, const v1::Event& ev, const v1::Outcome& o) {
      auto what = [&] {
        return absl::StrCat("seq ", seq, " ", ev.ShortDebugString(), " -> ", o.ShortDebugString());
      };
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

// Proves every decision follows rules 2-6 by re-deciding the log with a naive reference model.
TEST_CASE("ledger property: every decision matches a reference model of the rules",
          "[property][ledger][model]") {
  // Proves that every recorded decision is the one rules.md sections 2-6 give: a naive
  // model (every lot and order kept forever, nothing compacted) decides each applied
  // event of the log again, in log order, and its status, reject reason and every
  // entry (kind, customer, effective time, points, lot, available/expiry times, debt
  // paid and added, draws lot by lot in FIFO order, expired portions) must equal the
  // engine's: purchase points with lines, categories and the tier multiplier; refund
  // reversals ceil(P x R / A) from the order's own lot, then FIFO, then debt;
  // referrals, the 90-day / 2,000 qualification, the referrer cap and its window,
  // claw-backs within 14 days; redemptions, duplicates and cancels with expired lots.
  {
    // The model reads its numbers from Rules: under the defaults they are rules.md's.
    const Rules r(DefaultProgram());
    CHECK(r.currency == "EUR");
    CHECK(r.CategoryBp("gift_card") == 0);
    CHECK(r.CategoryBp("food") == 10'000);
    CHECK((r.points_per_major == 1 && r.minor_per_major == 100));
    CHECK((r.pending_s == 14 * kDay && r.expiry_s == 365 * kDay));
    CHECK((r.refund_window_s == 365 * kDay && r.cancel_window_s == 90 * kDay));
    CHECK((r.tier_threshold[1] == 50'000 && r.tier_threshold[2] == 200'000 &&
           r.tier_threshold[3] == 500'000));
    CHECK((r.tier_multiplier_bp[0] == 10'000 && r.tier_multiplier_bp[1] == 12'500 &&
           r.tier_multiplier_bp[2] == 15'000 && r.tier_multiplier_bp[3] == 20'000));
    CHECK((r.spend_window_s == 365 * kDay && r.tier_status_s == 365 * kDay));
    CHECK((r.referee_points == 250 && r.referrer_points == 500));
    CHECK((r.referral_window_s == 90 * kDay && r.referral_min_amount == 2'000));
    CHECK((r.referrer_cap == 10 && r.referrer_cap_window_s == 365 * kDay));
    CHECK(r.clawback_s == 14 * kDay);
    CHECK((r.churn_default_interval_s == 30 * kDay && r.churn_min_interval_s == kDay &&
           r.churn_interval_purchases == 6 && r.churned_s == 180 * kDay));
    CHECK((r.at_risk_num == 3 && r.at_risk_den == 1 && r.cooling_num == 3 && r.cooling_den == 2));
    CHECK(r.churn_window_s == 365 * kDay);
  }
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    Failures f(absl::StrCat("seed ", seed));
    ReferenceModel model(run.rules(), &f);
    CheckDecisions(run, model);
    REQUIRE(f.count() == 0);
    INFO("seed " << seed);
    CHECK(model.qualified_ > 10);
    CHECK(model.unqualified_ > 3);
    CHECK(model.capped_ > 0);
    CHECK(model.clawbacks_ > 3);
  }
}

// Proves compacted state answers per the definitions (rules 2, 7, 8) against a naive model.
TEST_CASE("ledger property: answers equal a naive computation from the ledger",
          "[property][ledger][model]") {
  // Proves that the engine's compacted state answers like the definitions (rules.md
  // sections 2, 7, 8): at every as-of time of every customer, balance, tier and churn
  // evaluated on the prefix fold (lots settled, old orders dropped) equal the naive
  // model's, which keeps every lot and order and computes straight from the rules.
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    std::mt19937_64 rng(seed ^ 0x77);
    Failures f(absl::StrCat("seed ", seed));
    CheckAnswersAgainstModel(run, rng, f);
    REQUIRE(f.count() == 0);
  }
}

// Proves the streams reach every edge of the rules by counting the edges in the logged outcomes.
TEST_CASE("ledger property: the streams hit every edge of the rules",
          "[property][ledger][coverage]") {
  // Proves the streams reach every edge the properties are meant to cover (so that a
  // pass means something): every reject reason and entry kind, debt from refunds and
  // negative adjustments, credits and cancels paying debt, cancels of expired lots,
  // claw-backs in the referrer's ledger, capped referrer bonuses, bonuses landing
  // later than the referee's purchase, late events, same-second events, fractional
  // timestamps, gift-card lines, duplicate deliveries, every tier and churn level.
  for (uint64_t seed : kSeeds) {
    Run run = GenerateAndIngest(seed);
    const Rules& rules = run.rules();
    INFO("seed " << seed);
    std::map<v1::RejectReason, uint64_t> reasons;
    std::map<v1::EntryKind, uint64_t> kinds;
    std::map<std::string, uint64_t> edges;
    std::map<std::string, int64_t> clock;
    std::map<std::pair<std::string, int64_t>, int> same_second;
    ForEachApplied(run, [&](uint64_t, const v1::Event& ev, const v1::Outcome& o) {
      if (o.status() == v1::REJECTED_BY_RULES) ++reasons[o.reason()];
      auto it = clock.find(ev.customer_id());
      if (it != clock.end() && ev.occurred_at().seconds() < it->second) ++edges["late event"];
      if (++same_second[{ev.customer_id(), o.effective_at()}] == 2) ++edges["same second"];
      if (ev.occurred_at().nanos() != 0) ++edges["fractional occurred_at"];
      if (ev.has_purchase()) {
        for (const auto& l : ev.purchase().lines()) {
          if (l.category() == "gift_card" && l.amount_minor() > 0) ++edges["gift card line"];
        }
        if (ev.purchase().amount_minor() >= 20'000) ++edges["purchase >= 20,000"];
      }
      bool referee_bonus = false, referrer_bonus = false;
      for (const v1::LedgerEntry& e : o.entries()) {
        ++kinds[e.kind()];
        const bool other = e.customer_id() != ev.customer_id();
        if ((e.kind() == v1::REFUND) && e.debt_added() > 0) ++edges["refund adds debt"];
        if (e.kind() == v1::ADJUSTMENT_DEBIT && e.debt_added() > 0) ++edges["adjustment adds debt"];
        if (IsCredit(e.kind()) && e.debt_paid() > 0) ++edges["credit pays debt"];
        if (e.kind() == v1::REDEMPTION_CANCEL && e.debt_paid() > 0) ++edges["cancel pays debt"];
        if (e.kind() == v1::REDEMPTION_CANCEL && e.expired_points() > 0) {
          ++edges["cancel of expired lot"];
        }
        if (e.kind() == v1::CLAWBACK && other) ++edges["claw-back in referrer's ledger"];
        if (other && e.effective_at() > o.effective_at()) ++edges["entry later than the event"];
        if (e.kind() == v1::REFEREE_BONUS) referee_bonus = true;
        if (e.kind() == v1::REFERRER_BONUS) referrer_bonus = true;
        clock[e.customer_id()] = e.effective_at();
      }
      if (referee_bonus && !referrer_bonus) ++edges["referrer bonus capped"];
    });
    std::set<Tier> tiers;
    std::set<RiskLevel> risks;
    std::mt19937_64 rng(seed);
    for (const std::string& c : run.sc.customers) {
      const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
      FoldOverTimes(rules, entries, AsOfTimes(entries, run.sc, rng),
                    [&](int64_t t, const v1::LedgerState* s) {
                      if (s == nullptr) return;
                      tiers.insert(EvaluateTier(rules, *s, t).tier);
                      risks.insert(EvaluateChurn(rules, *s, t).risk_level);
                      if (s->debt() > 0) ++edges["debt"];
                    });
    }
    for (int r = v1::WRONG_CURRENCY; r <= v1::CANCEL_WINDOW_CLOSED; ++r) {
      INFO(v1::RejectReason_Name(static_cast<v1::RejectReason>(r)));
      CHECK(reasons[static_cast<v1::RejectReason>(r)] > 0);
    }
    for (int k = v1::PURCHASE; k <= v1::REJECTED; ++k) {
      INFO(v1::EntryKind_Name(static_cast<v1::EntryKind>(k)));
      CHECK(kinds[static_cast<v1::EntryKind>(k)] > 0);
    }
    for (const char* edge :
         {"late event", "same second", "fractional occurred_at", "gift card line",
          "purchase >= 20,000", "refund adds debt", "adjustment adds debt", "credit pays debt",
          "cancel pays debt", "cancel of expired lot", "claw-back in referrer's ledger",
          "entry later than the event", "referrer bonus capped", "debt"}) {
      INFO(edge);
      CHECK(edges[edge] > 0);
    }
    CHECK(edges["late event"] * 25 > run.sc.events);  // several percent of all events
    CHECK(run.sc.duplicate_lines > 0);
    CHECK(tiers.size() == 4);
    CHECK(risks.size() == 5);
    CHECK(run.sc.last_at - run.sc.first_at > (kEvents >= 3000 ? 2 * 365 : 365) * kDay);
  }
}

// Proves the properties hold under changed program settings by rerunning them on two variants.
// Two changed programs: a (lots available at once, expiring after 30 days, a
// referrer cap of 2) and b (a, with short cancel, refund and claw-back windows, and
// short tier and churn windows so that orders leave the compacted state early).
std::pair<v1::Program, v1::Program> ChangedPrograms() {
  v1::Program a = DefaultProgram();
  a.set_pending_days(0);
  a.set_expiry_days(30);
  a.mutable_referral()->set_referrer_cap(2);
  v1::Program b = a;
  b.set_cancel_window_days(10);
  b.set_refund_window_days(45);
  b.set_expiring_soon_days(3);
  (*b.mutable_category_multiplier_bp())["books"] = 25'000;
  b.mutable_referral()->set_clawback_days(3);
  b.mutable_referral()->set_window_days(20);
  b.mutable_referral()->set_cap_window_days(60);
  b.mutable_referral()->set_min_amount_minor(5'000);
  b.mutable_tiers()->set_spend_window_days(60);
  b.mutable_tiers()->set_status_days(40);
  b.mutable_churn()->set_window_days(30);
  b.mutable_churn()->set_interval_purchases(3);
  b.mutable_churn()->set_churned_days(40);
  return {a, b};
}

TEST_CASE("ledger property: a changed program keeps every property",
          "[property][ledger][program]") {
  // Proves that the properties do not depend on the reference program: under changed
  // settings (lots available at once and expiring after 30 days, a referrer cap of 2,
  // short cancel, refund and claw-back windows, short tier and churn windows so that
  // orders leave the compacted state early), the log replays to the same states, every
  // decision matches the reference model under those settings, the engine's answers
  // match the naive ones, and points are conserved at every as-of time.
  const auto [a, b] = ChangedPrograms();
  int variant = 0;
  for (const v1::Program& program : {a, b}) {
    ++variant;
    for (uint64_t seed : {uint64_t{5}, uint64_t{99}}) {
      INFO("variant " << variant << " seed " << seed);
      Run run = GenerateAndIngest(seed, kEvents * 2 / 3, program);
      REQUIRE(run.rules().referrer_cap == 2);
      Failures f(absl::StrCat("variant ", variant, " seed ", seed));

      auto replay = ReplayLog(run.h->log(), UINT64_MAX);
      REQUIRE(replay.ok());
      INFO(replay->mismatch);
      CHECK(replay->first_mismatch_seq == 0);
      uint64_t archived_orders = 0, archived_redemptions = 0;
      for (const auto& [id, state] : replay->states) {
        auto stored = ReadStateBytes(run.h->log(), id);
        REQUIRE(stored.ok());
        REQUIRE(stored->has_value());
        f.Check(**stored == SerializeDeterministic(*state),
                [&] { return absl::StrCat(id, ": rebuilt state differs"); });
        archived_orders += state->archived_orders();
        archived_redemptions += state->archived_redemptions();
      }
      // Orders and redemptions left the states (short windows), and the decision
      // ids they left to are rebuilt too.
      CHECK(replay->decision_ids == testing::ProjectionContents(run.h->log(), LogBatch::ProjectionCf::kDecisionIds));
      CHECK(replay->decision_ids.size() == archived_orders + archived_redemptions);
      if (variant == 2) CHECK(archived_orders > 0);
      CHECK(archived_redemptions > 0);

      ReferenceModel model(run.rules(), &f);
      CheckDecisions(run, model);
      if (variant == 1) CHECK(model.capped_ > 0);  // b's windows leave few qualifying

      std::mt19937_64 rng(seed + 1000 * variant);
      CheckAnswersAgainstModel(run, rng, f);

      for (const std::string& c : run.sc.customers) {
        const std::vector<v1::LedgerEntry> entries = EntriesOf(run, c);
        if (entries.empty()) continue;
        const int64_t clock = entries.back().effective_at();
        auto check = [&](int64_t t, const v1::LedgerState* folded) {
          if (folded == nullptr) return;
          auto where = [&] { return At(c, t); };
          const BalanceView fold = EvaluateBalance(run.rules(), *folded, t);
          CheckBalanceLaws(fold, f, where);
          if (t < clock && !AskState(1, false, rng)) return;
          const BalanceView live = run.h->BalanceAt(c, t);
          CheckBalanceLaws(live, f, where);
          const std::string d = DiffBalance(fold, live);
          f.Check(d.empty(), [&] { return absl::StrCat(where(), " (prefix fold vs State) ", d); });
        };
        FoldOverTimes(run.rules(), entries, AsOfTimes(entries, run.sc, rng), check);
      }
      REQUIRE(f.count() == 0);
    }
  }
}

std::string DiffStats(const StatsView& want, const StatsView& got) {
  std::string d;
  auto field = [&](const char* name, int64_t w, int64_t g) {
    if (w != g) absl::StrAppend(&d, " ", name, " ", w, " vs ", g);
  };
  field("members", want.members, got.members);
  field("purchasers", want.purchasers, got.purchasers);
  field("repeat_purchasers", want.repeat_purchasers, got.repeat_purchasers);
  field("points_outstanding", want.points_outstanding, got.points_outstanding);
  field("earned", want.earned, got.earned);
  field("redeemed", want.redeemed, got.redeemed);
  field("expired", want.expired, got.expired);
  for (int k = 0; k < 4; ++k) field("tier", want.per_tier[k], got.per_tier[k]);
  for (int k = 0; k < 5; ++k) field("risk", want.per_risk_level[k], got.per_risk_level[k]);
  return d;
}

// Proves that /v1/stats from kept shares (StatsIndex) is the pass over every customer.
TEST_CASE("ledger property: stats from kept shares equal a pass over every customer",
          "[property][ledger][stats]") {
  // The index keeps each customer's share of the figures with the span of times it
  // holds for, and evaluates again only customers changed since (found through the
  // log) and shares that lapsed at the time asked. After every few batches of random
  // streams (default and changed programs), it is asked at times that move forward
  // like a clock, at every lot expiry, tier-window end and churn threshold of a few
  // customers (and 1 s either side), at random past and future times, kept or not,
  // and each answer must equal LedgerReader::Stats over the same committed state.
  const auto [a, b] = ChangedPrograms();
  int variant = 0;
  uint64_t asked = 0, off_now = 0, asked_timeline = 0;
  for (const v1::Program& program : {DefaultProgram(), b}) {
    ++variant;
    for (uint64_t seed : {uint64_t{3}, uint64_t{77}}) {
      const Scenario sc = Generate(seed, kEvents / 2);
      LedgerHarness h(program);
      const auto rules = std::make_shared<const Rules>(h.projector().rules());
      StatsIndex index(&h.log());
      // The same answers from a timeline: built after the third batch (then followed
      // through the log), built again from scratch after the eighth, in many passes.
      StatsIndex timeline(&h.log());
      std::mt19937_64 rng(seed * 13 + static_cast<uint64_t>(variant));
      Failures f(absl::StrCat("variant ", variant, " seed ", seed));
      auto U = [&](int64_t lo, int64_t hi) {
        return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
      };
      const size_t chunks = 12;
      int64_t now = sc.first_at;
      for (size_t k = 0; k < chunks; ++k) {
        const size_t lo = sc.lines.size() * k / chunks, hi = sc.lines.size() * (k + 1) / chunks;
        h.IngestLines(std::vector<std::string>(sc.lines.begin() + static_cast<std::ptrdiff_t>(lo),
                                               sc.lines.begin() + static_cast<std::ptrdiff_t>(hi)));
        now = std::max(now, sc.first_at + (sc.last_at - sc.first_at) * static_cast<int64_t>(k + 1) /
                                              static_cast<int64_t>(chunks));
        if (U(0, 1) == 0) REQUIRE(index.Refresh(rules, now).ok());
        if (k == 2) REQUIRE(timeline.BuildTimeline(rules).ok());
        // Again in passes of a few customers each (states of ~4 KiB in memory a pass).
        if (k == 7) REQUIRE(timeline.BuildTimeline(rules, nullptr, 4096).ok());
        if (U(0, 1) == 0) REQUIRE(timeline.Refresh(rules, now).ok());
        std::vector<int64_t> times = {now, now + 1, now - 1, now + U(0, 3600)};
        // The boundaries of a few customers' shares: where stats change.
        for (int i = 0; i < 3; ++i) {
          const std::string& c = sc.customers[static_cast<size_t>(U(0, static_cast<int64_t>(sc.customers.size()) - 1))];
          const std::optional<v1::LedgerState> state = h.State(c, INT64_MAX);
          if (!state.has_value()) continue;
          std::vector<int64_t> edges;
          for (int64_t at : state->lot_expires_at()) edges.push_back(at);
          for (int64_t at : state->order_at()) edges.push_back(at + rules->tier_status_s);
          const ChurnView churn = EvaluateChurn(*rules, *state, state->clock());
          if (churn.last_purchase_at.has_value()) {
            const int64_t x = churn.expected_interval_s;
            edges.push_back(*churn.last_purchase_at + rules->churned_s);
            edges.push_back(*churn.last_purchase_at + x * rules->at_risk_num / rules->at_risk_den);
            edges.push_back(*churn.last_purchase_at + x * rules->cooling_num / rules->cooling_den);
          }
          for (int64_t e : edges) {
            for (int64_t d : {-1, 0, 1}) times.push_back(e + d);
          }
        }
        for (int i = 0; i < 6; ++i) times.push_back(U(sc.first_at - 30 * kDay, sc.last_at + 800 * kDay));
        std::shuffle(times.begin() + 4, times.end(), rng);
        for (int64_t t : times) {
          const bool keep = std::abs(t - now) <= 3600 || U(0, 3) == 0;
          auto got = index.Stats(rules, t, now, keep);
          REQUIRE(got.ok());
          LedgerReader reader(&h.log(), rules.get());
          auto want = reader.Stats(t);
          REQUIRE(want.ok());
          CHECK(got->seq == h.log().head().seq);
          const std::string d = DiffStats(*want, got->stats);
          f.Check(d.empty(), [&] {
            return absl::StrCat("chunk ", k, " at ", Rfc3339(t), " (full pass vs index)", d);
          });
          if (k >= 2) {
            auto from_timeline = timeline.Stats(rules, t, now, keep);
            REQUIRE(from_timeline.ok());
            CHECK(timeline.HasTimeline(rules));
            CHECK(from_timeline->seq == h.log().head().seq);
            const std::string dt = DiffStats(*want, from_timeline->stats);
            f.Check(dt.empty(), [&] {
              return absl::StrCat("chunk ", k, " at ", Rfc3339(t), " (full pass vs timeline)", dt);
            });
            ++asked_timeline;
          }
          ++asked;
          if (want->members > 0 && t != now) ++off_now;
        }
      }
      REQUIRE(f.count() == 0);
      CHECK(index.customers() > 0);
      CHECK(timeline.timeline_info().points > 0);
    }
  }
  CHECK(asked > 1000);
  CHECK(off_now > 500);
  CHECK(asked_timeline > 800);
}


// Proves ShareSteps, the step function the stats timeline is made of: the deltas at
// times <= T add up to the share at T (the plain AddToStats) inside [from, until) and to nothing
// outside it, at every time a share can change (each lot's expiry, each order's
// tier-window end, each churn threshold, 1 s either side) and at random times, for
// every customer's state of random streams on default and changed programs.
TEST_CASE("ledger property: a share's steps add up to the share at every time",
          "[property][ledger][stats]") {
  const auto [a, b] = ChangedPrograms();
  uint64_t checked = 0, with_steps = 0;
  for (const v1::Program& program : {DefaultProgram(), b}) {
    const Scenario sc = Generate(program.tiers().status_days() == 40 ? 19 : 5, kEvents / 2);
    LedgerHarness h(program);
    h.IngestLines(sc.lines);
    const Rules& rules = h.projector().rules();
    std::mt19937_64 rng(program.tiers().status_days());
    auto U = [&](int64_t lo, int64_t hi) {
      return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
    };
    Failures f(absl::StrCat("status days ", program.tiers().status_days()));
    for (const std::string& c : sc.customers) {
      const std::optional<v1::LedgerState> state = h.State(c, INT64_MAX);
      if (!state.has_value()) continue;
      const int64_t clock = state->clock();
      for (const auto& [from, until] : std::vector<std::pair<int64_t, int64_t>>{
               {clock, INT64_MAX},
               {clock + U(0, 400 * kDay), INT64_MAX},
               {clock, clock + U(1, 3600)},
               {clock + U(0, 30 * kDay), clock + U(31 * kDay, 500 * kDay)}}) {
        std::map<int64_t, StatsView> steps;
        const int sign = U(0, 1) == 0 ? 1 : -1;
        ShareSteps(rules, *state, from, until, sign,
                   [&](int64_t at, const StatsView& d) { AddStats(d, +1, &steps[at]); });
        if (steps.size() > 2) ++with_steps;
        std::vector<int64_t> times = {from - 1, from, from + 1, until - 1};
        if (until != INT64_MAX) times.push_back(until);
        for (int64_t at : state->lot_expires_at()) times.push_back(at);
        for (int64_t at : state->lot_available_at()) times.push_back(at);
        for (int64_t at : state->order_at()) times.push_back(at + rules.tier_status_s);
        const ChurnView churn = EvaluateChurn(rules, *state, clock);
        if (churn.last_purchase_at.has_value()) {
          const int64_t last = *churn.last_purchase_at, x = churn.expected_interval_s;
          times.push_back(last + rules.churned_s);
          times.push_back(last + x * rules.at_risk_num / rules.at_risk_den);
          times.push_back(last + x * rules.cooling_num / rules.cooling_den);
        }
        const size_t edges = times.size();
        for (size_t i = 0; i < edges; ++i) {
          times.push_back(times[i] - 1);
          times.push_back(times[i] + 1);
        }
        for (int i = 0; i < 4; ++i) times.push_back(from + U(0, 800 * kDay));
        for (int64_t t : times) {
          if (t < clock || t > INT64_MAX / 2) continue;  // until - 1 of a tail is no time
          StatsView want, got;
          if (from <= t && t < until) {
            StatsView one;  // the plain evaluation (EvaluateBalance, EvaluateTier, ...)
            AddToStats(rules, *state, t, &one);
            AddStats(one, sign, &want);
          }
          for (auto it = steps.begin(); it != steps.end() && it->first <= t; ++it) {
            AddStats(it->second, +1, &got);
          }
          const std::string d = DiffStats(want, got);
          f.Check(d.empty(), [&] {
            return absl::StrCat(c, " from ", Rfc3339(from), " until ", until, " at ", Rfc3339(t),
                                " (plain vs steps)", d);
          });
          ++checked;
        }
      }
    }
    REQUIRE(f.count() == 0);
  }
  CHECK(checked > 10'000);
  CHECK(with_steps > 100);
}

// The timeline's storage (buckets of packed points): its sums are those of a plain
// map of the same deltas, at every time, as deltas come in several rounds, cancel
// out (points that sum to zero go), fall before the epoch and span many buckets.
TEST_CASE("stats timeline: sums equal a plain map of the same deltas", "[stats]") {
  std::mt19937_64 rng(7);
  auto U = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  StatsTimeline timeline;
  std::map<int64_t, StatsView> plain;
  std::vector<std::pair<int64_t, StatsView>> added;  // to take back later
  for (int round = 0; round < 30; ++round) {
    for (int i = 0; i < 300; ++i) {
      StatsView d;
      int64_t at = U(-3 * 3600, 40 * 3600);
      if (round % 3 == 2 && !added.empty()) {
        // Take an earlier delta back: its point may now sum to zero.
        const auto& [was, back] = added[static_cast<size_t>(U(0, static_cast<int64_t>(added.size()) - 1))];
        at = was;
        AddStats(back, -1, &d);
      } else {
        d.members = U(-2, 2);
        d.points_outstanding = U(-1'000'000, 1'000'000) * (U(0, 9) == 0 ? 1'000'000'000 : 1);
        d.earned = U(0, 3) == 0 ? U(-500, 500) : 0;
        d.per_tier[static_cast<size_t>(U(0, 3))] = U(-3, 3);
        d.per_risk_level[static_cast<size_t>(U(0, 4))] = U(-3, 3);
        d.expired = U(0, 1) ? -(int64_t{1} << 40) : 0;  // large, varint of 6 bytes
        added.emplace_back(at, d);
      }
      timeline.Add(at, d);
      AddStats(d, +1, &plain[at]);
    }
    timeline.Apply();
    REQUIRE(timeline.staged() == 0);
    size_t nonzero = 0;
    for (const auto& [at, v] : plain) nonzero += DiffStats(StatsView(), v).empty() ? 0 : 1;
    CHECK(timeline.points() == nonzero);
    std::vector<int64_t> times = {INT64_MIN / 2, -3 * 3600 - 1, -1, 0, 3599, 3600, 40 * 3600};
    for (const auto& [at, v] : plain) {
      if (U(0, 20) == 0) times.insert(times.end(), {at - 1, at, at + 1});
    }
    for (int64_t t : times) {
      StatsView want;
      for (auto it = plain.begin(); it != plain.end() && it->first <= t; ++it) {
        AddStats(it->second, +1, &want);
      }
      const std::string d = DiffStats(want, timeline.SumUpTo(t));
      INFO("round " << round << " at " << t << d);
      CHECK(d.empty());
    }
  }
}

// A timeline saved at a clean stop is taken at the next start while the log is as
// it was (same length, same head hash) and the program the same, and then answers
// as the pass over every customer does, also after more batches; otherwise, or from
// a damaged file, it is refused with a reason, never taken.
TEST_CASE("stats timeline: saved at a stop and taken at the next start only as it was",
          "[stats]") {
  const Scenario sc = Generate(11, kEvents / 3);
  LedgerHarness h(DefaultProgram());
  const auto rules = std::make_shared<const Rules>(h.projector().rules());
  const size_t half = sc.lines.size() / 2;
  h.IngestLines(std::vector<std::string>(sc.lines.begin(), sc.lines.begin() + static_cast<std::ptrdiff_t>(half)));
  testing::TempDir dir;
  const std::string path = dir.Sub("stats-timeline.pb");
  {
    StatsIndex first(&h.log());
    CHECK(absl::IsFailedPrecondition(first.SaveTimeline(path)));  // none built yet
    REQUIRE(first.BuildTimeline(rules).ok());
    REQUIRE(first.SaveTimeline(path).ok());
  }
  auto same_as_full_pass = [&](StatsIndex& index, const char* what) {
    std::vector<int64_t> times = {sc.first_at - 1, sc.first_at, sc.last_at, sc.last_at + 400 * kDay};
    for (int i = 1; i < 40; ++i) times.push_back(sc.first_at + (sc.last_at - sc.first_at) * i / 40);
    for (int64_t t : times) {
      auto got = index.Stats(rules, t, sc.last_at, true);
      REQUIRE(got.ok());
      auto want = LedgerReader(&h.log(), rules.get()).Stats(t);
      REQUIRE(want.ok());
      const std::string d = DiffStats(*want, got->stats);
      INFO(what << " at " << Rfc3339(t) << d);
      CHECK(d.empty());
    }
  };
  StatsIndex taken(&h.log());
  CHECK(absl::IsNotFound(taken.LoadTimeline(dir.Sub("none.pb"), rules)));
  const auto other = std::make_shared<const Rules>(ChangedPrograms().second);
  CHECK(absl::IsFailedPrecondition(taken.LoadTimeline(path, other)));
  REQUIRE(taken.LoadTimeline(path, rules).ok());
  REQUIRE(taken.HasTimeline(rules));
  CHECK(taken.timeline_info().points > 0);
  same_as_full_pass(taken, "taken");
  // More batches: the taken timeline follows them; the file no longer fits the log.
  h.IngestLines(std::vector<std::string>(sc.lines.begin() + static_cast<std::ptrdiff_t>(half), sc.lines.end()));
  same_as_full_pass(taken, "taken, then followed");
  StatsIndex late(&h.log());
  CHECK(absl::IsFailedPrecondition(late.LoadTimeline(path, rules)));
  // Saved again at the new head: a damaged copy is refused as data loss.
  REQUIRE(taken.SaveTimeline(path).ok());
  v1::StatsTimelineFile file;
  {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(file.ParseFromIstream(&in));
  }
  REQUIRE(file.buckets_size() > 2);
  auto write = [&](const v1::StatsTimelineFile& f) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    REQUIRE(f.SerializeToOstream(&out));
  };
  for (int damage = 0; damage < 4; ++damage) {
    v1::StatsTimelineFile bad = file;
    v1::StatsTimelineBucket* b = bad.mutable_buckets(1);
    if (damage == 0) b->set_count(b->count() + 1);                     // a point short
    if (damage == 1) b->mutable_packed()->push_back('\x01');          // bytes left over
    if (damage == 2) b->set_start(bad.buckets(0).start());            // out of order
    if (damage == 3) *b->mutable_packed() = std::string("\x90\x1c", 2) + b->packed();  // gap 3600
    write(bad);
    StatsIndex damaged(&h.log());
    const absl::Status s = damaged.LoadTimeline(path, rules);
    INFO("damage " << damage << ": " << s.ToString());
    CHECK(absl::IsDataLoss(s));
    CHECK_FALSE(damaged.HasTimeline(rules));
  }
  write(file);
  StatsIndex again(&h.log());
  REQUIRE(again.LoadTimeline(path, rules).ok());
  same_as_full_pass(again, "taken again");
}
}  // namespace
}  // namespace loyalty
