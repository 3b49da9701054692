// Signals (projections/signals.h): each change of tier, churn risk level or
// expiring lots is signalled once, by the event that caused it or by the sweep
// that found time had caused it; a replay of the log finds exactly the same.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "projections/replay.h"
#include "projections/signals.h"
#include "tests/testing/ledger_harness.h"

namespace loyalty {
namespace {

using testing::Day;
using testing::DayT;
using testing::LedgerHarness;

std::string Describe(const v1::Signal& s) {
  switch (s.kind()) {
    case v1::TIER_CHANGED:
      return absl::StrCat(s.customer_id(), " tier ", s.tier_changed().previous_tier(), "->",
                          s.tier_changed().tier(), " at ", s.at());
    case v1::CHURN_RISK_CHANGED:
      return absl::StrCat(s.customer_id(), " risk ", s.risk_changed().previous_risk_level(), "->",
                          s.risk_changed().risk_level(), " at ", s.at());
    case v1::POINTS_EXPIRING:
      return absl::StrCat(s.customer_id(), " expiring lot ", s.points_expiring().lot_id(), " ",
                          s.points_expiring().points(), " points at ",
                          s.points_expiring().expires_at(), " (at ", s.at(), ")");
    default:
      return "unknown";
  }
}

std::vector<std::string> Describe(const SignalList& signals) {
  std::vector<std::string> out;
  for (const v1::Signal& s : signals) out.push_back(Describe(s));
  return out;
}

v1::LogRecord Last(LedgerHarness& h) {
  auto r = h.log().Read(h.log().head().seq);
  REQUIRE(r.ok());
  return *r;
}

// One sweep at day `day`; the signals it recorded (none if nothing was due).
std::vector<std::string> SweepAt(LedgerHarness& h, int64_t day) {
  h.clock().Set(absl::FromUnixSeconds(DayT(day)));
  if (h.Sweep() == 0) return {};
  v1::LogRecord r = Last(h);
  REQUIRE(r.has_sweep());
  CHECK(r.sweep().at() == DayT(day));
  return Describe(r.sweep().signals());
}

TEST_CASE("signals: an event signals what it changed, at its effective time") {
  LedgerHarness h;
  // 600.00 EUR: rolling spend 60,000 >= SILVER's 50,000, so the order reaches SILVER;
  // the first purchase takes churn risk from NEW to ACTIVE. Points: the tier before
  // the purchase is BRONZE, P = floor(60,000 x 10,000 x 10,000 / 10^10) = 600.
  h.Purchase("c1", Day(0), "o1", 60'000);
  const std::string t0 = absl::StrCat(DayT(0));
  CHECK(Describe(Last(h).applied().signals()) ==
        std::vector<std::string>{"c1 tier BRONZE->SILVER at " + t0,
                                 "c1 risk NEW->ACTIVE at " + t0});
  // A second purchase a day later: still SILVER, still ACTIVE: nothing to signal.
  h.Purchase("c1", Day(1), "o2", 1'000);
  CHECK(Last(h).applied().signals_size() == 0);
  // Refunding all of o1 takes the status o1 bought back: rolling spend 1,000.
  h.Refund("c1", Day(2), "o1", 60'000);
  CHECK(Describe(Last(h).applied().signals()) ==
        std::vector<std::string>{"c1 tier SILVER->BRONZE at " + absl::StrCat(DayT(2))});
}

TEST_CASE("signals: the sweep finds what time alone changes, each once") {
  LedgerHarness h;
  h.Purchase("c1", Day(0), "o1", 60'000);  // SILVER, ACTIVE; lot 1: 600 points
  // One purchase: expected interval 30 days. COOLING once 2 x elapsed >= 3 x 30 d,
  // at day 45; AT_RISK once elapsed >= 3 x 30 d, at day 90; CHURNED at 180 days.
  // The lot is available from day 14 and expires at day 14 + 365 = 379; it is
  // expiring soon from day 379 - 30 = 349. SILVER lapses when o1 leaves the
  // 365-day status window: tier(T) counts orders in (T - 365 d, T], so at day 365.
  CHECK(SweepAt(h, 44).empty());  // nothing due before day 45: no record
  CHECK(SweepAt(h, 45) == std::vector<std::string>{"c1 risk ACTIVE->COOLING at " +
                                                   absl::StrCat(DayT(45))});
  CHECK(SweepAt(h, 46).empty());
  // A sweep late finds the status as of its own time: AT_RISK is skipped over.
  CHECK(SweepAt(h, 200) == std::vector<std::string>{"c1 risk COOLING->CHURNED at " +
                                                    absl::StrCat(DayT(200))});
  CHECK(SweepAt(h, 349) ==
        std::vector<std::string>{"c1 expiring lot 1 600 points at " + absl::StrCat(DayT(379)) +
                                 " (at " + absl::StrCat(DayT(349)) + ")"});
  CHECK(SweepAt(h, 364).empty());
  CHECK(SweepAt(h, 365) == std::vector<std::string>{"c1 tier SILVER->BRONZE at " +
                                                    absl::StrCat(DayT(365))});
  CHECK(SweepAt(h, 2000).empty());  // nothing left that time can change

  // A new event evaluates at its own time: a purchase at day 400 (the lot expired at
  // day 379) is ACTIVE again.
  h.Purchase("c1", Day(400), "o3", 1'000);
  CHECK(Describe(Last(h).applied().signals()) ==
        std::vector<std::string>{"c1 risk CHURNED->ACTIVE at " + absl::StrCat(DayT(400))});
}

TEST_CASE("signals: a replay finds the recorded signals, and a changed one is caught") {
  LedgerHarness h;
  h.Purchase("c1", Day(0), "o1", 60'000);
  h.Referral("c2", Day(1), "c1");
  h.Purchase("c2", Day(2), "o9", 250'000);  // GOLD; qualifies: c1 gets 500 points
  h.Purchase("c3", Day(3), "o5", 5'000);
  for (int day : {45, 100, 200, 360, 366, 400}) SweepAt(h, day);

  auto replay = ReplayLog(h.log(), UINT64_MAX);
  REQUIRE(replay.ok());
  CHECK(replay->first_mismatch_seq == 0);
  CHECK(replay->mismatch.empty());
  // The projections rebuilt from the log (signal state included) equal the live.
  size_t compared = 0;
  REQUIRE(ScanStateBytes(h.log(),
                         [&](std::string_view key, std::string_view value) {
                           auto it = replay->states.find(std::string(key));
                           REQUIRE(it != replay->states.end());
                           CHECK(SerializeDeterministic(*it->second) == value);
                           ++compared;
                           return absl::OkStatus();
                         })
              .ok());
  CHECK(compared == 3);

  // The same records with one sweep's signal changed: the replay names that record.
  uint64_t sweep_seq = 0;
  REQUIRE(h.log()
              .Scan(1, UINT64_MAX,
                    [&](uint64_t seq, std::string_view, std::string_view bytes, std::string_view) {
                      v1::LogRecord r;
                      REQUIRE(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
                      if (sweep_seq == 0 && r.has_sweep() && r.sweep().signals_size() > 0) {
                        sweep_seq = seq;
                      }
                      return absl::OkStatus();
                    })
              .ok());
  REQUIRE(sweep_seq != 0);
  LedgerHarness copy;
  REQUIRE(h.log()
              .Scan(1, UINT64_MAX,
                    [&](uint64_t seq, std::string_view, std::string_view bytes, std::string_view) {
                      v1::LogRecord r;
                      REQUIRE(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
                      r.clear_seq();
                      if (seq == sweep_seq) r.mutable_sweep()->mutable_signals(0)->set_at(1);
                      LogBatch b = copy.log().NewBatch();
                      b.Append(&r);
                      return copy.log().Commit(std::move(b));
                    })
              .ok());
  auto tampered = ReplayLog(copy.log(), UINT64_MAX);
  REQUIRE(tampered.ok());
  CHECK(tampered->first_mismatch_seq == sweep_seq);
}

}  // namespace
}  // namespace loyalty

namespace loyalty {
namespace {

// The due index against the plainest model of it: every customer's time in a map,
// a sweep taking those at or before its time. Times move later and earlier, to 0
// and back, and sweeps come between them; a due customer left unchanged stays due.
TEST_CASE("signals: the due index names exactly the customers due at every sweep") {
  std::mt19937_64 rng(GENERATE(1, 2, 3, 4, 5));
  DueIndex index;
  std::map<std::string, int64_t> model;  // customer -> next_check_at, 0 left out
  int64_t now = 1000;
  for (int step = 0; step < 20000; ++step) {
    const std::string id = absl::StrCat("c", rng() % 50);
    const uint64_t kind = rng() % 10;
    if (kind < 7) {
      // Mostly later than now (an event's next check), sometimes earlier, sometimes none.
      int64_t t = now + static_cast<int64_t>(rng() % 500) - 100;
      if (rng() % 8 == 0) t = 0;
      index.Set(id, t);
      if (t == 0) {
        model.erase(id);
      } else {
        model[id] = t;
      }
    } else {
      now += static_cast<int64_t>(rng() % 60);
      std::vector<std::string> want;
      for (const auto& [c, t] : model) {
        if (t <= now) want.push_back(c);
      }
      INFO("step " << step << " at " << now);
      REQUIRE(index.DueBy(now) == want);
    }
  }
}

}  // namespace
}  // namespace loyalty
