#include "projections/replay.h"

#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/event_codec.h"
#include "engine/status_macros.h"
#include "projections/decider.h"
#include "projections/ledger_reader.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "projections/signals.h"
#include "projections/state_store.h"

namespace loyalty {
namespace {

bool SameSignals(const SignalList& a, const SignalList& b) {
  if (a.size() != b.size()) return false;
  for (int i = 0; i < a.size(); ++i) {
    if (!SameMessage(a[i], b[i])) return false;
  }
  return true;
}

std::string SignalsText(const SignalList& signals) {
  std::string text = "[";
  for (const v1::Signal& s : signals) absl::StrAppend(&text, " {", s.ShortDebugString(), "}");
  return absl::StrCat(text, " ]");
}

class MapStates final : public StateSource {
 public:
  MapStates(std::map<std::string, std::unique_ptr<v1::CustomerState>>* states,
            std::map<std::string, std::string>* ids)
      : states_(states), ids_(ids) {}
  absl::StatusOr<v1::CustomerState*> Mutable(const std::string& id) override {
    auto& slot = (*states_)[id];
    if (slot == nullptr) {
      slot = std::make_unique<v1::CustomerState>();
      slot->set_customer_id(id);
    }
    return slot.get();
  }
  absl::StatusOr<std::optional<std::string>> Recall(const std::string& key) override {
    auto it = ids_->find(key);
    if (it == ids_->end()) return std::nullopt;
    return it->second;
  }
  void Remember(const std::string& key, std::string value) override {
    (*ids_)[key] = std::move(value);
  }

 private:
  std::map<std::string, std::unique_ptr<v1::CustomerState>>* states_;
  std::map<std::string, std::string>* ids_;
};

// A record as the read-ahead thread hands it over.
struct ReadAhead {
  uint64_t seq = 0;
  absl::Status status;  // the record does not decode, or its event does not
  v1::LogRecord record;
  std::optional<v1::Event> event;  // applied events only
  std::any prepared;
};

// Reads records on a thread of its own, in chunks, a few chunks ahead of the
// consumer (bounded memory), until the range ends, the scan fails or the consumer
// stops.
class RecordReader {
 public:
  RecordReader(const EventLog& log, uint64_t to_seq, const ReplayPrepare& prepare)
      : thread_([this, &log, to_seq, &prepare] { Run(log, to_seq, prepare); }) {}
  ~RecordReader() {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    thread_.join();
  }

  // The next chunk, in order; empty once everything is read (then `done` says how
  // the scan ended).
  std::vector<ReadAhead> Next(absl::Status* done) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](RecordReader* r) { return !r->chunks_.empty() || r->finished_; }, this));
    if (chunks_.empty()) {
      *done = scan_status_;
      return {};
    }
    std::vector<ReadAhead> chunk = std::move(chunks_.front());
    chunks_.pop_front();
    return chunk;
  }

 private:
  static constexpr size_t kChunk = 1024;
  static constexpr size_t kChunksAhead = 4;

  void Run(const EventLog& log, uint64_t to_seq, const ReplayPrepare& prepare) {
    std::vector<ReadAhead> chunk;
    auto hand_over = [&]() -> bool {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](RecordReader* r) { return r->chunks_.size() < kChunksAhead || r->stopped_; },
          this));
      if (stopped_) return false;
      chunks_.push_back(std::move(chunk));
      chunk.clear();
      chunk.reserve(kChunk);
      return true;
    };
    chunk.reserve(kChunk);
    absl::Status s = log.Scan(
        1, to_seq,
        [&](uint64_t seq, std::string_view, std::string_view bytes,
            std::string_view) -> absl::Status {
          ReadAhead& r = chunk.emplace_back();
          r.seq = seq;
          if (!r.record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
            r.status = absl::DataLossError(absl::StrCat("record ", seq, " does not decode"));
          } else {
            if (r.record.has_applied()) {
              absl::StatusOr<v1::Event> event = RecordEvent(r.record);
              if (event.ok()) {
                r.event = *std::move(event);
              } else {
                r.status = event.status();
              }
            }
            if (prepare) r.prepared = prepare(seq, r.record);
          }
          if (chunk.size() == kChunk && !hand_over()) return absl::CancelledError("stopped");
          return absl::OkStatus();
        });
    if (s.ok() && !chunk.empty()) hand_over();
    absl::MutexLock lock(&mu_);
    scan_status_ = s;
    finished_ = true;
  }

  absl::Mutex mu_;
  std::deque<std::vector<ReadAhead>> chunks_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status scan_status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace

absl::StatusOr<ReplayResult> ReplayLog(const EventLog& log, uint64_t to_seq,
                                       const std::function<void(uint64_t)>& progress,
                                       const ReplayHook& hook, const ReplayPrepare& prepare) {
  ReplayResult result;
  MapStates states(&result.states, &result.decision_ids);
  DueIndex due;  // as the live sweep's, so a sweep looks only at the customers due
  std::unique_ptr<Rules> rules;
  auto replay_one = [&](ReadAhead& item) -> absl::Status {
    const uint64_t seq = item.seq;
    const v1::LogRecord& record = item.record;
    LOYALTY_RETURN_IF_ERROR(item.status);
    ++result.records;
    if (progress && (result.records & 0xffff) == 0) progress(result.records);
    if (record.has_program()) {
      result.program = record.program();
      rules = std::make_unique<Rules>(record.program().program());
      return hook ? hook(seq, record, nullptr, nullptr, item.prepared) : absl::OkStatus();
    }
    if (record.has_sweep()) {
      if (rules == nullptr) {
        return absl::DataLossError(
            absl::StrCat("record ", seq, " is a sweep with no program in force"));
      }
      // The customers due at the sweep's time, in customer_id order (the map's).
      const int64_t at = record.sweep().at();
      SignalList signals;
      uint64_t customers = 0;
      for (const std::string& id : due.DueBy(at)) {
        LOYALTY_ASSIGN_OR_RETURN(v1::CustomerState * state, states.Mutable(id));
        if (!DueForSweep(*state, at)) continue;
        EvaluateSignals(*rules, std::max(at, state->ledger().clock()), state, &signals);
        due.Set(id, state->signals().next_check_at());
        ++customers;
      }
      if (result.first_mismatch_seq == 0 &&
          (customers != record.sweep().customers() ||
           !SameSignals(signals, record.sweep().signals()))) {
        result.first_mismatch_seq = seq;
        result.mismatch = absl::StrCat(
            "recorded sweep of ", record.sweep().customers(), " customers with signals ",
            SignalsText(record.sweep().signals()), "; the rules give ", customers,
            " customers with ", SignalsText(signals));
      }
      return hook ? hook(seq, record, nullptr, nullptr, item.prepared) : absl::OkStatus();
    }
    if (!record.has_applied()) {
      return hook ? hook(seq, record, nullptr, nullptr, item.prepared) : absl::OkStatus();
    }
    if (rules == nullptr) {
      return absl::DataLossError(
          absl::StrCat("record ", seq, " is an event with no program in force"));
    }
    const v1::Event& event = *item.event;
    ++result.events;
    LOYALTY_ASSIGN_OR_RETURN(v1::Outcome outcome,
                             Decide(event, seq, *rules, result.program.version(), &states));
    SignalList signals;
    LOYALTY_RETURN_IF_ERROR(
        SignalsAfterEvent(*rules, event.customer_id(), outcome, &states, &signals, &due));
    for (v1::LedgerEntry& e : *outcome.mutable_entries()) {
      e.clear_event_id();
      e.clear_seq();
    }
    if (result.first_mismatch_seq == 0 && !SameSignals(signals, record.applied().signals())) {
      result.first_mismatch_seq = seq;
      result.mismatch = absl::StrCat("recorded signals ", SignalsText(record.applied().signals()),
                                     "; the rules give ", SignalsText(signals));
    }
    if (result.first_mismatch_seq == 0 && !SameMessage(outcome, record.applied().outcome())) {
      result.first_mismatch_seq = seq;
      result.mismatch = absl::StrCat("recorded outcome ",
                                     record.applied().outcome().ShortDebugString(),
                                     "; the rules give ", outcome.ShortDebugString());
    }
    return hook ? hook(seq, record, &event, &outcome, item.prepared) : absl::OkStatus();
  };
  RecordReader reader(log, to_seq, prepare);
  absl::Status done;
  for (std::vector<ReadAhead> chunk = reader.Next(&done); !chunk.empty();
       chunk = reader.Next(&done)) {
    for (ReadAhead& item : chunk) LOYALTY_RETURN_IF_ERROR(replay_one(item));
  }
  LOYALTY_RETURN_IF_ERROR(done);
  if (progress) progress(result.records);
  return result;
}

absl::StatusOr<RebuildReport> RebuildProjections(EventLog* log,
                                                 const std::function<void(uint64_t)>& progress) {
  LOYALTY_ASSIGN_OR_RETURN(ReplayResult replay, ReplayLog(*log, UINT64_MAX, progress));
  if (replay.first_mismatch_seq != 0) {
    return absl::DataLossError(absl::StrCat(
        "record ", replay.first_mismatch_seq,
        " holds an outcome the rules do not give; run `loyalty replay verify`: ", replay.mismatch));
  }
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<ProjectionRebuild> rebuild,
                           log->BeginProjectionRebuild());
  using Cf = LogBatch::ProjectionCf;
  for (const auto& [id, state] : replay.states) {
    const std::string bytes = SerializeDeterministic(*state);
    const EncodedState encoded = EncodeState(id, bytes);
    for (const auto& [key, chunk] : encoded.chunks) {
      LOYALTY_RETURN_IF_ERROR(rebuild->Put(Cf::kStateChunks, key, chunk));
    }
    LOYALTY_RETURN_IF_ERROR(rebuild->Put(Cf::kCustomerState, id, encoded.head));
  }
  for (const auto& [key, value] : replay.decision_ids) {
    LOYALTY_RETURN_IF_ERROR(rebuild->Put(Cf::kDecisionIds, key, value));
  }
  if (replay.program.version() > 0) {
    LOYALTY_RETURN_IF_ERROR(
        rebuild->Put(Cf::kProjectionMeta, kMetaProgram, SerializeDeterministic(replay.program)));
  }
  LOYALTY_RETURN_IF_ERROR(
      rebuild->Put(Cf::kProjectionMeta, kMetaProjectionVersion, absl::StrCat(kProjectionVersion)));
  RebuildReport report;
  report.records = replay.records;
  report.customers = replay.states.size();
  report.generation = rebuild->generation();
  LOYALTY_RETURN_IF_ERROR(log->CommitProjectionRebuild(std::move(rebuild)));
  return report;
}

}  // namespace loyalty
