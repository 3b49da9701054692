// The decider: for each valid event, the outcome rules.md gives (accepted, or
// rejected with its reason) and the ledger entries it causes, applied to the
// customers' states. Decisions read state only through StateSource, so that the
// same code runs live (ingest) and in a replay.
#ifndef LOYALTY_PROJECTIONS_DECIDER_H_
#define LOYALTY_PROJECTIONS_DECIDER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "loyalty/v1/event.pb.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/program.h"

namespace loyalty {

// Where the decider finds customers' state.
class StateSource {
 public:
  virtual ~StateSource() = default;
  // The state of `customer_id` (a new, empty one for an unknown customer), to be
  // changed. The pointer stays valid until the source is flushed.
  virtual absl::StatusOr<v1::CustomerState*> Mutable(const std::string& customer_id) = 0;
};

// Decides `event` (already validated, rules.md section 10), which the log holds as
// record `seq`, under `rules` (program version `program_version`). The entries of
// the outcome are applied to the states before it returns. An error means a state
// is inconsistent with its ledger (a bug or a corrupted store), never bad input.
absl::StatusOr<v1::Outcome> Decide(const v1::Event& event, uint64_t seq, const Rules& rules,
                                   uint32_t program_version, StateSource* states);

const char* RejectReasonName(v1::RejectReason reason);

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_DECIDER_H_
