// Program-wide stats (interfaces.md /v1/stats) at any time T as one prefix sum.
//
// Each customer's share of the figures is a step function of T: 0 before their first
// entry, then the share of their ledger's prefix up to T evaluated at T (ShareAt).
// Entries only append at or after the customer's clock, so the part before the clock
// never changes again, and the part after it changes only by time (lots expire,
// orders leave the tier window, churn risk rises) until the next entry. The timeline
// holds the sum over all customers of those step functions as deltas keyed by the
// second they take effect: stats at T are the deltas at times <= T added up.
//
// When entries come for a customer, the change to its step function is added
// (FoldIntoTimeline): the old state's tail is taken out, and the steps of each state
// the entries pass through are put in over the span it held (FoldEntry), the last
// one's for ever; building the whole timeline is the same fold from empty states.
// The cost of an answer is then independent of how far back or ahead T is.
//
// Storage: deltas in buckets of kBucketSeconds, each with its sum and its points
// packed as varints (a point holds only the fields it moves); an answer adds up the
// sums of the buckets before T's and decodes T's bucket. Changes are staged (summed
// per second) and merged into the buckets by Apply, a bucket at a time.
#ifndef LOYALTY_PROJECTIONS_STATS_TIMELINE_H_
#define LOYALTY_PROJECTIONS_STATS_TIMELINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/program.h"
#include "projections/stats.h"

namespace loyalty {

class StatsTimeline {
 public:
  static constexpr int64_t kBucketSeconds = 3600;

  // Stages delta at `at`; Apply merges what is staged. Deltas at one second add up.
  void Add(int64_t at, const StatsView& delta);
  // Merges the staged deltas into the buckets (a point that sums to zero goes).
  void Apply();
  size_t staged() const { return staged_.size(); }

  // The deltas at times <= t added up. What is staged does not count.
  StatsView SumUpTo(int64_t t) const;

  // Its buckets, for a file (nothing staged may be left), and back. FromBuckets
  // checks every bucket decodes to its count of points in time order within it
  // (DataLoss otherwise), and recomputes the sums.
  void ToBuckets(v1::StatsTimelineFile* file) const;
  static absl::StatusOr<std::unique_ptr<StatsTimeline>> FromBuckets(
      const v1::StatsTimelineFile& file);

  // Points (seconds with a nonzero delta) and the bytes their encoding takes.
  size_t points() const { return points_; }
  size_t bytes() const { return bytes_; }

 private:
  struct Bucket {
    StatsView sum;
    uint32_t count = 0;
    std::string packed;  // (seconds after the previous point, field mask, fields)...
  };
  static int64_t BucketOf(int64_t t);
  // Calls fn(at, delta) for each point of b, in time order, while it returns true.
  template <typename Fn>
  static void ForEachPoint(int64_t start, const Bucket& b, Fn fn);

  absl::btree_map<int64_t, Bucket> buckets_;  // by start time
  absl::flat_hash_map<int64_t, StatsView> staged_;
  size_t points_ = 0;
  size_t bytes_ = 0;
};

// The steps a customer's fold puts in the timeline. While a state is being folded
// its tail (from its clock on) is out of the timeline; FoldEntry applies the next
// entry (ledger order) with ApplyEntry, first putting in the span the state held,
// from its clock until the entry's time, when the entry moves the clock. AddTail puts
// in (sign +1) or takes out (-1) a state's tail from its clock on, for ever. Nothing
// for a state without entries.
absl::Status FoldEntry(const Rules& rules, const v1::LedgerEntry& entry, v1::LedgerState* state,
                       StatsTimeline* timeline);
void AddTail(const Rules& rules, const v1::LedgerState& state, int sign, StatsTimeline* timeline);

// Folds `entries` (one customer's, in ledger order, none before state->clock()) into
// *state, and adds to `timeline` the change they make to that customer's step
// function: the old state's tail goes, each state passed through counts over the
// span until the next entry's time, and the last state's tail comes in. *state is
// the customer's state before the entries (empty for a customer with none yet),
// whose tail the timeline holds.
absl::Status FoldIntoTimeline(const Rules& rules,
                              const std::vector<const v1::LedgerEntry*>& entries,
                              v1::LedgerState* state, StatsTimeline* timeline);

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_STATS_TIMELINE_H_
