// Program-wide stats (interfaces.md /v1/stats) without a pass over every customer:
// each customer's share of the figures is kept with the span of times over which it
// holds (StatsShare), and a query at T evaluates again only the customers changed
// since (found through the log's new records) and those whose share does not hold
// at T (a lot expired, an order left the tier window, churn risk rose; or T is before
// the customer's clock). Everyone else's share is already in the running totals.
//
// As the sweep's DueIndex does for signals: the answers equal those of
// LedgerReader::Stats over the same committed state, at any T, past or future.
#ifndef LOYALTY_PROJECTIONS_STATS_INDEX_H_
#define LOYALTY_PROJECTIONS_STATS_INDEX_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/event_log.h"
#include "projections/program.h"
#include "projections/stats.h"

namespace loyalty {

class StatsIndex {
 public:
  // `log` is not owned and must outlive the index. Thread-safe: calls take turns.
  explicit StatsIndex(const EventLog* log) : log_(log) {}

  struct Answer {
    StatsView stats;
    uint64_t seq = 0;  // the committed log length the answer reflects
  };

  // Stats as of t over the newest committed state. Shares evaluated again at t
  // replace the kept ones only when `keep` (callers keep those of times near the
  // present, which later queries will ask again; an odd far past or future time is
  // answered on the side). The first call, a changed program or a projection
  // rebuild reads every state once (shares evaluated at `now`).
  absl::StatusOr<Answer> Stats(std::shared_ptr<const Rules> rules, int64_t t, int64_t now,
                               bool keep);

  // Catches up with the newest committed state and evaluates again, at now, the
  // customers whose shares lapsed: what a query at now would do, ahead of it.
  absl::Status Refresh(std::shared_ptr<const Rules> rules, int64_t now);

  // Customers whose shares are kept.
  size_t customers() const;

 private:
  struct Slot {
    std::string customer_id;
    StatsShare share;
  };

  // Brings the kept shares to `snap` (rebuilding if the rules or the projection
  // generation changed, or if many records came since).
  absl::Status SyncLocked(const std::shared_ptr<const Rules>& rules, const LogSnapshot& snap,
                          int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RebuildLocked(const LogSnapshot& snap, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the customer's state from `snap` and keeps its share at max(t, clock).
  absl::Status ReloadLocked(std::string_view customer_id, const LogSnapshot& snap, int64_t t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutLocked(uint32_t slot, const StatsShare& share) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t SlotLocked(std::string_view customer_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The slots whose shares do not hold at t, ascending.
  std::vector<uint32_t> LapsedLocked(int64_t t) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const EventLog* log_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Rules> rules_ ABSL_GUARDED_BY(mu_);
  bool built_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;  // the log length the shares reflect
  // A deque: slots never move, so the map's keys can view their ids.
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string_view, uint32_t> slot_of_ ABSL_GUARDED_BY(mu_);
  // (valid_until, slot) for finite ends, (valid_from, slot) for finite starts.
  absl::btree_set<std::pair<int64_t, uint32_t>> by_until_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<int64_t, uint32_t>> by_from_ ABSL_GUARDED_BY(mu_);
  StatsView totals_ ABSL_GUARDED_BY(mu_);  // the sum of the kept shares
};

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_STATS_INDEX_H_
