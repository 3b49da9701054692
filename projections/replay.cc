#include "projections/replay.h"

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "projections/decider.h"
#include "projections/ledger_reader.h"
#include "projections/program.h"

namespace loyalty {
namespace {

class MapStates final : public StateSource {
 public:
  explicit MapStates(std::map<std::string, std::unique_ptr<v1::CustomerState>>* states)
      : states_(states) {}
  absl::StatusOr<v1::CustomerState*> Mutable(const std::string& id) override {
    auto& slot = (*states_)[id];
    if (slot == nullptr) {
      slot = std::make_unique<v1::CustomerState>();
      slot->set_customer_id(id);
    }
    return slot.get();
  }

 private:
  std::map<std::string, std::unique_ptr<v1::CustomerState>>* states_;
};

}  // namespace

absl::StatusOr<ReplayResult> ReplayLog(const EventLog& log, uint64_t to_seq,
                                       const std::function<void(uint64_t)>& progress,
                                       const ReplayHook& hook) {
  ReplayResult result;
  MapStates states(&result.states);
  std::unique_ptr<Rules> rules;
  v1::LogRecord record;
  absl::Status s = log.Scan(
      1, to_seq,
      [&](uint64_t seq, std::string_view, std::string_view bytes,
          std::string_view) -> absl::Status {
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return absl::DataLossError(absl::StrCat("record ", seq, " does not decode"));
        }
        ++result.records;
        if (progress && (result.records & 0xffff) == 0) progress(result.records);
        if (record.has_program()) {
          result.program = record.program();
          rules = std::make_unique<Rules>(record.program().program());
          return hook ? hook(seq, record, nullptr, nullptr) : absl::OkStatus();
        }
        if (!record.has_applied()) return hook ? hook(seq, record, nullptr, nullptr) : absl::OkStatus();
        if (rules == nullptr) {
          return absl::DataLossError(
              absl::StrCat("record ", seq, " is an event with no program in force"));
        }
        LOYALTY_ASSIGN_OR_RETURN(v1::Event event, RecordEvent(record));
        ++result.events;
        LOYALTY_ASSIGN_OR_RETURN(
            v1::Outcome outcome,
            Decide(event, seq, *rules, result.program.version(), &states));
        for (v1::LedgerEntry& e : *outcome.mutable_entries()) {
          e.clear_event_id();
          e.clear_seq();
        }
        if (result.first_mismatch_seq == 0 &&
            !google::protobuf::util::MessageDifferencer::Equals(outcome,
                                                                record.applied().outcome())) {
          result.first_mismatch_seq = seq;
          result.mismatch = absl::StrCat("recorded outcome ",
                                         record.applied().outcome().ShortDebugString(),
                                         "; the rules give ", outcome.ShortDebugString());
        }
        return hook ? hook(seq, record, &event, &outcome) : absl::OkStatus();
      });
  LOYALTY_RETURN_IF_ERROR(s);
  if (progress) progress(result.records);
  return result;
}

}  // namespace loyalty
