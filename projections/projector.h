// The projections' write side: decides each applied event (projections/decider.h)
// against per-customer state kept hot in memory, and writes the state each batch
// changed into that same batch (column family `customer_state`, one value per
// customer per batch). It also keeps the program in force, recording a
// ProgramChange in the log whenever the configured program differs.
#ifndef LOYALTY_PROJECTIONS_PROJECTOR_H_
#define LOYALTY_PROJECTIONS_PROJECTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "loyalty/v1/ledger.pb.h"
#include "loyalty/v1/log.pb.h"
#include "projections/decider.h"
#include "projections/program.h"
#include "projections/signals.h"

namespace loyalty {

// Bumped whenever projection code changes what it stores; kept in the store so a
// later version can tell outdated projections (docs/log-format.md).
inline constexpr uint32_t kProjectionVersion = 2;  // 2: CustomerState.signals

// Keys in the `projection_meta` column family.
inline constexpr char kMetaProgram[] = "program";         // ProgramChange in force
inline constexpr char kMetaProjectionVersion[] = "projection_version";

class Projector final : public EventProcessor, public StateSource {
 public:
  // `log` is not owned and must outlive the projector. `program` is the one
  // configured now (complete; see LoadProgram): if it differs from the one in
  // force, the next batch records it first.
  static absl::StatusOr<std::unique_ptr<Projector>> Open(EventLog* log,
                                                         const v1::Program& program);

  // EventProcessor
  absl::Status BeginBatch(LogBatch* batch) override;
  absl::Status Process(const v1::Event& event, uint64_t seq, v1::Applied* applied,
                       std::vector<std::string>* customers) override;
  absl::Status EndBatch(LogBatch* batch) override;
  void AbortBatch() override;
  absl::StatusOr<bool> Sweep(int64_t at, LogBatch* batch) override;

  // StateSource
  absl::StatusOr<v1::CustomerState*> Mutable(const std::string& customer_id) override;

  const Rules& rules() const { return *rules_; }
  uint32_t program_version() const { return in_force_.version(); }

 private:
  explicit Projector(EventLog* log) : log_(log) {}
  absl::Status Load();
  // The sweep's index: every customer's SignalState.next_check_at (0s left out),
  // loaded from the store at the first sweep and kept up to date by EndBatch.
  absl::Status LoadDue();

  EventLog* log_;
  v1::Program configured_;
  v1::ProgramChange in_force_;  // version 0: none recorded yet
  std::unique_ptr<Rules> rules_;
  v1::ProgramChange before_batch_;  // to restore on AbortBatch
  absl::flat_hash_map<std::string, std::unique_ptr<v1::CustomerState>> cache_;
  std::vector<v1::CustomerState*> dirty_;
  // The customers whose state EndBatch wrote into the batch: until the next
  // BeginBatch, the batch may still fail to commit (AbortBatch forgets them).
  std::vector<std::string> written_;
  bool due_loaded_ = false;
  DueIndex due_;
};

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_PROJECTOR_H_
