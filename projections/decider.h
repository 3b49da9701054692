// The decider: for each valid event, the outcome rules.md gives (accepted, or
// rejected with its reason) and the ledger entries it causes, applied to the
// customers' states. Decisions read state only through StateSource, so that the
// same code runs live (ingest) and in a replay.
#ifndef LOYALTY_PROJECTIONS_DECIDER_H_
#define LOYALTY_PROJECTIONS_DECIDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "loyalty/v1/event.pb.h"
#include "loyalty/v1/ledger.pb.h"
#include "projections/program.h"

namespace loyalty {

// The kinds of decision ids: what the rules remember of a customer's orders and
// redemptions after they leave the CustomerState (ledger.proto).
enum class IdKind : char { kOrder = 'o', kRedemption = 'r' };

// The key of a decision id in the `decision_ids` column family: the customer id's
// length (1 byte; ids are at most 128 bytes), the customer id, the kind, the id.
// Keyed by customer first, so that a customer's ids stay together.
std::string DecisionIdKey(std::string_view customer_id, IdKind kind, std::string_view id);

// The order ids of one state's ledger by their 64-bit hashes, with a count each
// (two ids may share a hash): a miss is exact, a hit says "maybe" and is confirmed
// against the orders. About 16 bytes an order, where a set of the ids took a
// string each (48 bytes and more): the busiest states hold 20,000 orders.
class OrderIdIndex {
 public:
  void Insert(std::string_view id) { ++counts_[Hash(id)]; }
  void Erase(std::string_view id) {
    auto it = counts_.find(Hash(id));
    if (it != counts_.end() && --it->second == 0) counts_.erase(it);
  }
  bool MayContain(std::string_view id) const { return counts_.contains(Hash(id)); }
  size_t size() const { return counts_.size(); }
  // The bytes it holds (its table's slots and control bytes).
  size_t bytes() const {
    return counts_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  }

 private:
  static uint64_t Hash(std::string_view id) { return absl::Hash<std::string_view>()(id); }
  absl::flat_hash_map<uint64_t, uint32_t> counts_;
};

// Where the decider finds customers' state.
class StateSource {
 public:
  virtual ~StateSource() = default;
  // The state of `customer_id` (a new, empty one for an unknown customer), to be
  // changed. The pointer stays valid until the source is flushed.
  virtual absl::StatusOr<v1::CustomerState*> Mutable(const std::string& customer_id) = 0;
  // The value remembered under DecisionIdKey, if any: for an order, empty; for a
  // redemption, its RedemptionRecord without id and draws.
  virtual absl::StatusOr<std::optional<std::string>> Recall(const std::string& key) = 0;
  // Remembers `value` under `key` (replacing any), seen by Recall at once and
  // written with the customers' states.
  virtual void Remember(const std::string& key, std::string value) = 0;
  // The ids of the orders in `state`'s ledger as an index, if the source keeps one
  // for it (null: the decider searches the orders). Lives as long as the state; the
  // decider keeps it in step with the ledger's orders.
  virtual OrderIdIndex* OrderIndex(const v1::CustomerState& state) { return nullptr; }
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
