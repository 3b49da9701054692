// Signals (interfaces.md, loyalty.signals): a customer's tier changed, churn risk
// level changed, or a lot with points left came within `expiring_soon_days` of
// expiring. Each change is signalled once: a customer's status at a time is
// compared with the status last signalled (CustomerState.signals), after every
// applied event at the customer's effective time, and by the periodic sweep for
// changes that happen only because time passed. Both the live path (Projector)
// and the replay (ReplayLog) call the same functions, so a replay of the log finds
// exactly the signals the log records.
#ifndef LOYALTY_PROJECTIONS_SIGNALS_H_
#define LOYALTY_PROJECTIONS_SIGNALS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "google/protobuf/repeated_field.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/decider.h"
#include "projections/program.h"

namespace loyalty {

using SignalList = google::protobuf::RepeatedPtrField<v1::Signal>;

// Evaluates `state` at `t` (t >= its ledger clock), appends a signal for each
// change since the status last signalled, and stores the new status, with the
// earliest later time it may change with no event (SignalState.next_check_at).
void EvaluateSignals(const Rules& rules, int64_t t, v1::CustomerState* state, SignalList* out);

// The customers a sweep must look at: each customer's SignalState.next_check_at
// (customers with none are left out). The live path and the replay keep one each,
// so neither scans every customer per sweep. Thread-compatible.
//
// Most changes move a customer's time later (a new event pushes its churn check
// on): those only note the new time, and the time-ordered entry stays where it is
// until a DueBy reaches it and moves it on. So a Set that does not bring a
// customer's time earlier is one hash lookup, not an ordered erase and insert.
class DueIndex {
 public:
  DueIndex() = default;
  DueIndex(const DueIndex&) = delete;  // by_time_ points into at_
  DueIndex& operator=(const DueIndex&) = delete;
  DueIndex(DueIndex&&) = default;  // a node map's nodes stay where they are
  DueIndex& operator=(DueIndex&&) = default;

  void Set(const std::string& customer_id, int64_t next_check_at);
  // The customers with next_check_at <= at, in customer_id order (the order a
  // sweep evaluates them in). Not const: entries it passes whose customers' times
  // have moved are moved with them.
  std::vector<std::string> DueBy(int64_t at);
  void Clear();

 private:
  struct Times {
    int64_t next = 0;    // the customer's next_check_at; 0: none
    int64_t queued = 0;  // the time of its entry in by_time_, 0: none. If next is
                         // not 0, queued is not 0 and not after it.
  };
  // by_time_ names customers by at_'s keys, which do not move (a node map), one
  // entry each at most.
  absl::node_hash_map<std::string, Times> at_;
  absl::btree_set<std::pair<int64_t, const std::string*>> by_time_;
};

// After an applied event: evaluates the event's customer, then every other
// customer `outcome` wrote entries for (in entry order), each at its own clock;
// updates `due` (if given) for each.
absl::Status SignalsAfterEvent(const Rules& rules, const std::string& customer_id,
                               const v1::Outcome& outcome, StateSource* states,
                               SignalList* out, DueIndex* due = nullptr);

// True if a sweep at `at` must evaluate this customer.
inline bool DueForSweep(const v1::CustomerState& state, int64_t at) {
  const int64_t next = state.signals().next_check_at();
  return next != 0 && next <= at;
}

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_SIGNALS_H_
