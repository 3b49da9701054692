// The query service: every request of interfaces.md, transport-independent. The
// HTTP and gRPC servers only translate to and from these calls.
//
// Each answer comes from one LogSnapshot (a consistent view of one committed
// batch) and carries the log sequence number it reflects. A request may first
// wait, bounded, until the engine has applied an input position or sequence number.
//
// Errors: InvalidArgument (bad id, time, limit, token), NotFound (unknown customer
// as of the time asked), DeadlineExceeded (a wait ran out), others from storage.
#ifndef LOYALTY_SERVER_QUERY_SERVICE_H_
#define LOYALTY_SERVER_QUERY_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "loyalty/v1/query.pb.h"
#include "projections/program.h"
#include "projections/stats_index.h"

namespace loyalty {

struct QueryLimits {
  // Page size of /v1/customers when none is asked. Default: 100.
  int32_t default_page_size = 100;
  // The largest page size accepted (larger is a 400). Default: 1000.
  int32_t max_page_size = 1000;
  // The longest wait (`wait_ms`, `after`) honoured; longer asks are cut to it.
  // Default: 30 s, well under the HTTP write timeout of clients.
  int64_t max_wait_ms = 30'000;
  // A wait for `after=` without wait_ms waits this long. Default: 5 s.
  int64_t default_after_wait_ms = 5'000;
};

class QueryService {
 public:
  // `log` and `clock` are not owned and must outlive the service. Thread-safe.
  QueryService(const EventLog* log, const Clock* clock, std::shared_ptr<const Rules> rules,
                QueryLimits limits = {});

  // The program's rules in force (a serving process replaces them if the program
  // changes).
  void SetRules(std::shared_ptr<const Rules> rules);

  absl::StatusOr<v1::Balance> GetBalance(const v1::CustomerRequest& request) const;
  absl::StatusOr<v1::TierStatus> GetTier(const v1::CustomerRequest& request) const;
  absl::StatusOr<v1::ChurnSignals> GetChurn(const v1::CustomerRequest& request) const;
  absl::StatusOr<v1::Statement> GetStatement(const v1::StatementRequest& request) const;
  absl::StatusOr<v1::ListCustomersResponse> ListCustomers(
      const v1::ListCustomersRequest& request) const;
  absl::StatusOr<v1::Stats> GetStats(const v1::StatsRequest& request) const;
  absl::StatusOr<v1::EventStatus> GetEvent(const v1::EventRequest& request) const;
  absl::StatusOr<v1::Progress> GetProgress() const;

  // Brings the stats index up to the newest committed state at the present, ahead
  // of the next GetStats (a serving process calls it every second or so; the first
  // call reads every customer's state once).
  absl::Status RefreshStats();

  // Builds the stats timeline for the rules in force, unless one is in place (then
  // nothing to do): afterwards /v1/stats at any as_of is one prefix sum. Slow (it
  // folds every customer's records once); a serving process runs it in the
  // background and again whenever the rules or the projections change. `built` says
  // whether this call built one.
  absl::Status BuildStatsTimeline(const std::atomic<bool>* cancel, bool* built = nullptr);
  StatsIndex::TimelineInfo stats_timeline() const { return stats_index_.timeline_info(); }
  // The stats timeline to and from a file (StatsIndex::SaveTimeline, LoadTimeline):
  // a serving process saves it at a clean stop and takes it at the next start.
  absl::Status SaveStatsTimeline(const std::string& path) {
    return stats_index_.SaveTimeline(path);
  }
  absl::Status LoadStatsTimeline(const std::string& path) {
    return stats_index_.LoadTimeline(path, rules());
  }

  const QueryLimits& limits() const { return limits_; }

 private:
  std::shared_ptr<const Rules> rules() const;
  // Waits for read.after / read.after_seq; DeadlineExceeded if not reached in time.
  absl::Status WaitFor(const v1::ReadOptions& read) const;
  // as_of, or now, to the second.
  int64_t AsOf(const v1::ReadOptions& read) const;

  const EventLog* log_;
  const Clock* clock_;
  const QueryLimits limits_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Rules> rules_ ABSL_GUARDED_BY(mu_);
  // Stats are answered from the timeline once built, before that from kept
  // per-customer shares (StatsIndex); shares evaluated at times within this far from
  // the present are kept for the next query.
  static constexpr int64_t kKeepStatsWithin = 3600;
  mutable StatsIndex stats_index_;
};

// "topic:partition:offset" as in `?after=`; InvalidArgument if malformed.
absl::StatusOr<v1::KafkaPosition> ParseAfter(const std::string& text);

}  // namespace loyalty

#endif  // LOYALTY_SERVER_QUERY_SERVICE_H_
