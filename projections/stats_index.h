// Program-wide stats (interfaces.md /v1/stats) without a pass over every customer:
// each customer's share of the figures is kept with the span of times over which it
// holds (StatsShare), and a query at T evaluates again only the customers changed
// since (found through the log's new records) and those whose share does not hold
// at T (a lot expired, an order left the tier window, churn risk rose; or T is before
// the customer's clock). Everyone else's share is already in the running totals.
//
// Once a timeline (stats_timeline.h) is built for the rules asked, every answer, at
// any T however far back or ahead, is one prefix sum over it instead, and the kept
// shares are dropped; the timeline is kept current by following the log's new
// records the same way. Building it folds every customer's records once
// (BuildTimeline, run in the background by a serving process): until then, and
// after the rules or the projections change, the kept shares answer, where a T
// before many customers' clocks costs a fold of each of them.
//
// As the sweep's DueIndex does for signals: the answers equal those of
// LedgerReader::Stats over the same committed state, at any T, past or future.
#ifndef LOYALTY_PROJECTIONS_STATS_INDEX_H_
#define LOYALTY_PROJECTIONS_STATS_INDEX_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/event_log.h"
#include "projections/program.h"
#include "projections/stats.h"
#include "projections/stats_timeline.h"

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

  // Customers whose shares are kept (none while a timeline answers).
  size_t customers() const;

  // Builds the timeline for `rules` over the newest committed state, then puts it
  // in place (Stats and Refresh bring it up to date with the records since). Reads
  // the log in order, without holding up queries meanwhile, keeping the states of
  // the customers being folded in memory: in as many passes over the log as keep
  // them within about `memory_bytes`. Cancelled when *cancel turns true.
  static constexpr uint64_t kTimelineBuildBytes = uint64_t{256} << 20;
  absl::Status BuildTimeline(std::shared_ptr<const Rules> rules,
                             const std::atomic<bool>* cancel = nullptr,
                             uint64_t memory_bytes = kTimelineBuildBytes);

  // Writes the timeline, brought up to the newest committed state, to `path` (a
  // temporary file beside it, synced, then renamed over it). FailedPrecondition if
  // there is none. A serving process calls it at a clean stop, after its last batch.
  absl::Status SaveTimeline(const std::string& path);
  // Puts in place the timeline saved at `path`, if it was built under `rules` and
  // the log is still exactly as long as when it was saved, with the same head hash
  // (the states it follows from are then the stored ones). NotFound without a file;
  // FailedPrecondition if it does not fit (build one then); DataLoss if damaged.
  absl::Status LoadTimeline(const std::string& path, std::shared_ptr<const Rules> rules);

  // Whether answers for `rules` come from a timeline.
  bool HasTimeline(const std::shared_ptr<const Rules>& rules) const;

  struct TimelineInfo {
    bool ready = false;
    uint64_t seq = 0;     // the committed log length it reflects
    size_t points = 0;    // seconds at which the stats change
    size_t bytes = 0;     // what their encoding takes
    uint64_t passes = 0;  // over the log, to build it
  };
  TimelineInfo timeline_info() const;

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
  // Puts a timeline in place (dropping the kept shares), or with nullptr drops it.
  void InstallTimelineLocked(std::unique_ptr<StatsTimeline> timeline,
                             std::shared_ptr<const Rules> rules, std::unique_ptr<LogSnapshot> snap,
                             uint64_t passes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings the timeline to the newest committed state; an error leaves it unusable
  // (the caller drops it).
  absl::Status SyncTimelineLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The timeline, if one for `rules` is in place and could be brought up to date;
  // otherwise none is kept.
  bool TimelineUsableLocked(const std::shared_ptr<const Rules>& rules)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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

  std::unique_ptr<StatsTimeline> timeline_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Rules> timeline_rules_ ABSL_GUARDED_BY(mu_);
  uint64_t timeline_passes_ ABSL_GUARDED_BY(mu_) = 0;
  // The committed state the timeline reflects: the states before the next records.
  std::unique_ptr<LogSnapshot> timeline_snap_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_STATS_INDEX_H_
