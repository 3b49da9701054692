// Re-deriving the projections from the log alone: every applied event decided
// again from scratch, in log order, under the program recorded in force at that
// point. Used by `loyalty replay` and by tests that prove rebuild equals live.
#ifndef LOYALTY_PROJECTIONS_REPLAY_H_
#define LOYALTY_PROJECTIONS_REPLAY_H_

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/event_log.h"
#include "loyalty/v1/ledger.pb.h"
#include "loyalty/v1/log.pb.h"

namespace loyalty {

struct ReplayResult {
  uint64_t records = 0;
  uint64_t events = 0;
  // Every customer's state, rebuilt; std::map so iteration is in key order.
  std::map<std::string, std::unique_ptr<v1::CustomerState>> states;
  // Every decision id (StateSource::Remember), by key.
  std::map<std::string, std::string> decision_ids;
  v1::ProgramChange program;  // the last program in force
  // The first record whose recorded outcome differs from the re-decided one.
  uint64_t first_mismatch_seq = 0;
  std::string mismatch;
};

// Work on records that does not depend on the records before them (the audit
// decodes each record's raw input again). Runs on the threads that read ahead of
// the replay (see ReplayLog), on each chunk of records read, and returns one value
// for each of `records`, which goes to the hook with that record. Two chunks may
// be prepared at once, on two threads.
struct PrepareItem {
  uint64_t seq = 0;
  const v1::LogRecord* record = nullptr;
};
using ReplayPrepare = std::function<std::vector<std::any>(absl::Span<const PrepareItem> records)>;

// Called for every record replayed, after it was decided (`redecided` is null for
// records that are not applied events; `same_outcome` says whether it equals the
// recorded outcome, and is true for the others), with what `prepare` returned for
// it (empty without one). An error stops the replay.
using ReplayHook = std::function<absl::Status(uint64_t seq, const v1::LogRecord& record,
                                              const v1::Event* event,
                                              const v1::Outcome* redecided, bool same_outcome,
                                              const std::any& prepared)>;

// Replays records [1, to_seq] of `log`. `progress`, if set, is called now and then
// with the records done. A second thread reads the records ahead and parses them
// and their events, and two more run `prepare` on them (if given); the decisions
// stay on the calling thread, in order.
absl::StatusOr<ReplayResult> ReplayLog(const EventLog& log, uint64_t to_seq,
                                       const std::function<void(uint64_t)>& progress = {},
                                       const ReplayHook& hook = {},
                                       const ReplayPrepare& prepare = {});

struct RebuildReport {
  uint64_t records = 0;
  uint64_t customers = 0;
  uint64_t generation = 0;  // the projections' generation now in force
};

// Rebuilds every projection from the log into a new generation and switches to it
// atomically (EventLog::CommitProjectionRebuild). `log` must be open for writing.
absl::StatusOr<RebuildReport> RebuildProjections(
    EventLog* log, const std::function<void(uint64_t)>& progress = {});

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_REPLAY_H_
