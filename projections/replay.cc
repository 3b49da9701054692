#include "projections/replay.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
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

// The replay's states, found through a hash map on the customer id (and the last
// one asked for is kept: an event asks for its customer several times), each with
// an index of its order ids once it holds many orders, as the live projector keeps
// them (Projector::OrderIndex). The decision ids in a hash map too; both are put in
// key order once, at the end (MoveTo).
class MapStates final : public StateSource {
 public:
  absl::StatusOr<v1::CustomerState*> Mutable(const std::string& id) override {
    return Find(id).state.get();
  }
  absl::StatusOr<std::optional<std::string>> Recall(const std::string& key) override {
    auto it = ids_.find(key);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  void Remember(const std::string& key, std::string value) override {
    ids_[key] = std::move(value);
  }
  OrderIdIndex* OrderIndex(const v1::CustomerState& state) override {
    Slot& slot = Find(state.customer_id());
    if (slot.order_ids == nullptr) {
      if (static_cast<size_t>(state.ledger().order_id_size()) < kDefaultOrderIndexFrom) {
        return nullptr;
      }
      slot.order_ids = std::make_unique<OrderIdIndex>();
      for (const std::string& id : state.ledger().order_id()) slot.order_ids->Insert(id);
    }
    return slot.order_ids.get();
  }

  // Calls `f` with every state, in no particular order.
  template <typename F>
  void ForEachState(F f) const {
    for (const auto& [id, slot] : slots_) f(*slot.state);
  }

  // The states and decision ids, into `result`'s maps in key order (each insert
  // at the end, so without searching).
  void MoveTo(ReplayResult* result) && {
    std::vector<std::pair<std::string, std::unique_ptr<v1::CustomerState>>> states;
    states.reserve(slots_.size());
    for (auto& [id, slot] : slots_) states.emplace_back(id, std::move(slot.state));
    slots_.clear();
    last_ = nullptr;
    MoveSorted(std::move(states), &result->states);
    MoveSorted(std::vector<std::pair<std::string, std::string>>(
                   std::make_move_iterator(ids_.begin()), std::make_move_iterator(ids_.end())),
               &result->decision_ids);
    ids_.clear();
  }

 private:
  // `items` sorted by key, into `out` (empty) in that order.
  template <typename V>
  static void MoveSorted(std::vector<std::pair<std::string, V>> items,
                         std::map<std::string, V>* out) {
    std::sort(items.begin(), items.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [key, value] : items) out->emplace_hint(out->end(), std::move(key), std::move(value));
  }

  struct Slot {
    std::unique_ptr<v1::CustomerState> state;
    std::unique_ptr<OrderIdIndex> order_ids;
  };

  Slot& Find(const std::string& id) {
    if (last_ != nullptr && last_->state->customer_id() == id) return *last_;
    auto [it, added] = slots_.try_emplace(id);
    if (added) {
      it->second.state = std::make_unique<v1::CustomerState>();
      it->second.state->set_customer_id(id);
    }
    // An insert may move the slots, so last_ is set again on every call.
    last_ = &it->second;
    return *last_;
  }

  // The states are on the heap, so the pointers Mutable and OrderIndex return stay
  // valid when the table grows.
  absl::flat_hash_map<std::string, Slot> slots_;
  absl::flat_hash_map<std::string, std::string> ids_;
  Slot* last_ = nullptr;  // the slot Find returned last
};

// A record as the read-ahead thread hands it over.
struct ReadAhead {
  uint64_t seq = 0;
  absl::Status status;  // the record does not decode, or its event does not
  v1::LogRecord record;
  // Applied events only: `decoded` from the raw bytes where the record holds no
  // decoded event.
  std::optional<v1::Event> decoded;
  std::string recorded_outcome;  // the record's outcome, serialized deterministically
  std::any prepared;

  // The event of an applied record whose status is ok.
  const v1::Event& Event() const {
    return decoded.has_value() ? *decoded : record.applied().event();
  }
};

// Reads records on a thread of its own, in chunks, a few chunks ahead of the
// consumer (bounded memory), until the range ends, the scan fails or the consumer
// stops. With a `prepare`, kPreparers more threads run it on the chunks read, each
// on the next chunk not taken, between the reading and the consumer (which gets
// the chunks in order), so that reading, preparing and replaying share the cores.
class RecordReader {
 public:
  // The audit's preparing (decoding every raw input again) took a core on its own
  // and held the replay back (docs/benchmarks.md, run Z): two share it.
  static constexpr int kPreparers = 2;

  RecordReader(const EventLog& log, uint64_t to_seq, const ReplayPrepare& prepare)
      : prepare_(prepare), reader_([this, &log, to_seq] { Read(log, to_seq); }) {
    if (prepare_) {
      for (int i = 0; i < kPreparers; ++i) preparers_.emplace_back([this] { PrepareChunks(); });
    }
  }
  ~RecordReader() {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    reader_.join();
    for (std::thread& t : preparers_) t.join();
  }

  // The next chunk, in order; empty once everything is read (then `done` says how
  // the scan ended). `spent`, the chunk before, is freed on the reading thread.
  std::vector<ReadAhead> Next(std::vector<ReadAhead> spent, absl::Status* done) {
    absl::MutexLock lock(&mu_);
    if (!spent.empty()) spent_.push_back(std::move(spent));
    mu_.Await(absl::Condition(
        +[](RecordReader* r) {
          r->mu_.AssertReaderHeld();
          return !r->ready_.empty() || r->Finished();
        },
        this));
    if (ready_.empty()) {
      *done = scan_status_;
      return {};
    }
    std::vector<ReadAhead> chunk = std::move(ready_.front());
    ready_.pop_front();
    return chunk;
  }

 private:
  static constexpr size_t kChunk = 1024;
  static constexpr size_t kChunksAhead = 4;

  // The scan ended and every chunk read is ready for the consumer.
  bool Finished() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return read_all_ && (!prepare_ || chunks_ready_ == chunks_read_);
  }

  // The queue a chunk read goes to: the preparers', or the consumer's.
  std::deque<std::vector<ReadAhead>>& ReadQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return prepare_ ? read_ : ready_;
  }

  void Read(const EventLog& log, uint64_t to_seq) {
    std::vector<ReadAhead> chunk;
    auto hand_over = [&]() -> bool {
      std::deque<std::vector<ReadAhead>> spent;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](RecordReader* r) {
              r->mu_.AssertReaderHeld();
              return r->ReadQueue().size() < kChunksAhead || r->stopped_;
            },
            this));
        if (stopped_) return false;
        ReadQueue().push_back(std::move(chunk));
        ++chunks_read_;
        spent.swap(spent_);
      }
      chunk.clear();
      chunk.reserve(kChunk);
      return true;  // `spent` is freed here, off the replaying thread
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
              // Without a decoded copy in the record, from its raw bytes (ReadAhead::Event).
              if (!r.record.applied().has_event()) {
                absl::StatusOr<v1::Event> event = RecordEvent(r.record);
                if (event.ok()) {
                  r.decoded = *std::move(event);
                } else {
                  r.status = event.status();
                }
              }
              r.recorded_outcome = SerializeDeterministic(r.record.applied().outcome());
            }
          }
          if (chunk.size() == kChunk && !hand_over()) return absl::CancelledError("stopped");
          return absl::OkStatus();
        });
    if (s.ok() && !chunk.empty()) hand_over();
    absl::MutexLock lock(&mu_);
    scan_status_ = s;
    read_all_ = true;
  }

  // A preparing thread: `prepare_` on the next chunk read that no other took, then
  // the chunk to the consumer once those before it are there.
  void PrepareChunks() {
    std::vector<PrepareItem> items;
    std::vector<size_t> at;
    for (;;) {
      std::vector<ReadAhead> chunk;
      uint64_t number = 0;  // the chunk's place in the order read
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](RecordReader* r) { return !r->read_.empty() || r->read_all_ || r->stopped_; },
            this));
        if (stopped_ || read_.empty()) return;  // stopped, or every chunk is taken
        chunk = std::move(read_.front());
        read_.pop_front();
        number = chunks_taken_++;
      }
      items.clear();
      at.clear();
      for (size_t i = 0; i < chunk.size(); ++i) {
        if (!chunk[i].status.ok()) continue;
        items.push_back({chunk[i].seq, &chunk[i].record});
        at.push_back(i);
      }
      std::vector<std::any> prepared = prepare_(items);
      for (size_t k = 0; k < at.size() && k < prepared.size(); ++k) {
        chunk[at[k]].prepared = std::move(prepared[k]);
      }
      absl::MutexLock lock(&mu_);
      struct Turn {
        RecordReader* r;
        uint64_t number;
      } turn{this, number};
      mu_.Await(absl::Condition(
          +[](Turn* t) {
            RecordReader* r = t->r;
            r->mu_.AssertReaderHeld();
            return (r->chunks_ready_ == t->number && r->ready_.size() < kChunksAhead) ||
                   r->stopped_;
          },
          &turn));
      if (stopped_) return;
      ready_.push_back(std::move(chunk));
      ++chunks_ready_;
    }
  }

  const ReplayPrepare& prepare_;
  absl::Mutex mu_;
  std::deque<std::vector<ReadAhead>> read_ ABSL_GUARDED_BY(mu_);   // read, to prepare
  std::deque<std::vector<ReadAhead>> ready_ ABSL_GUARDED_BY(mu_);  // for the consumer
  std::deque<std::vector<ReadAhead>> spent_ ABSL_GUARDED_BY(mu_);
  uint64_t chunks_read_ ABSL_GUARDED_BY(mu_) = 0;   // handed over by the reader
  uint64_t chunks_taken_ ABSL_GUARDED_BY(mu_) = 0;  // ... taken by a preparer
  uint64_t chunks_ready_ ABSL_GUARDED_BY(mu_) = 0;  // ... and passed to the consumer
  bool read_all_ ABSL_GUARDED_BY(mu_) = false;  // the scan ended (scan_status_ says how)
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status scan_status_ ABSL_GUARDED_BY(mu_);
  // Last: started once the members above exist.
  std::thread reader_;
  std::vector<std::thread> preparers_;
};

}  // namespace

absl::StatusOr<ReplayResult> ReplayLog(const EventLog& log, uint64_t to_seq,
                                       const std::function<void(uint64_t)>& progress,
                                       const ReplayHook& hook, const ReplayPrepare& prepare) {
  ReplayResult result;
  MapStates states;
  // As the live sweep's, so a sweep looks only at the customers due. Built at the
  // first sweep, as the live path builds its own (Projector::LoadDue): a log
  // ingested from files has none, and its replay skips the index's upkeep.
  DueIndex due;
  bool due_built = false;
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
      return hook ? hook(seq, record, nullptr, nullptr, true, item.prepared) : absl::OkStatus();
    }
    if (record.has_sweep()) {
      if (rules == nullptr) {
        return absl::DataLossError(
            absl::StrCat("record ", seq, " is a sweep with no program in force"));
      }
      if (!due_built) {
        states.ForEachState([&due](const v1::CustomerState& state) {
          due.Set(state.customer_id(), state.signals().next_check_at());
        });
        due_built = true;
      }
      // The customers due at the sweep's time, in customer_id order.
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
      return hook ? hook(seq, record, nullptr, nullptr, true, item.prepared) : absl::OkStatus();
    }
    if (!record.has_applied()) {
      return hook ? hook(seq, record, nullptr, nullptr, true, item.prepared) : absl::OkStatus();
    }
    if (rules == nullptr) {
      return absl::DataLossError(
          absl::StrCat("record ", seq, " is an event with no program in force"));
    }
    const v1::Event& event = item.Event();
    ++result.events;
    LOYALTY_ASSIGN_OR_RETURN(v1::Outcome outcome,
                             Decide(event, seq, *rules, result.program.version(), &states));
    SignalList signals;
    LOYALTY_RETURN_IF_ERROR(
        SignalsAfterEvent(*rules, event.customer_id(), outcome, &states, &signals,
                          due_built ? &due : nullptr));
    for (v1::LedgerEntry& e : *outcome.mutable_entries()) {
      e.clear_event_id();
      e.clear_seq();
    }
    if (result.first_mismatch_seq == 0 && !SameSignals(signals, record.applied().signals())) {
      result.first_mismatch_seq = seq;
      result.mismatch = absl::StrCat("recorded signals ", SignalsText(record.applied().signals()),
                                     "; the rules give ", SignalsText(signals));
    }
    const bool same_outcome = SerializeDeterministic(outcome) == item.recorded_outcome;
    if (result.first_mismatch_seq == 0 && !same_outcome) {
      result.first_mismatch_seq = seq;
      result.mismatch = absl::StrCat("recorded outcome ",
                                     record.applied().outcome().ShortDebugString(),
                                     "; the rules give ", outcome.ShortDebugString());
    }
    return hook ? hook(seq, record, &event, &outcome, same_outcome, item.prepared) : absl::OkStatus();
  };
  RecordReader reader(log, to_seq, prepare);
  absl::Status done;
  for (std::vector<ReadAhead> chunk = reader.Next({}, &done); !chunk.empty();
       chunk = reader.Next(std::move(chunk), &done)) {
    for (ReadAhead& item : chunk) LOYALTY_RETURN_IF_ERROR(replay_one(item));
  }
  LOYALTY_RETURN_IF_ERROR(done);
  std::move(states).MoveTo(&result);
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
  // The states are written in key order. A second thread serializes and encodes
  // the second half of them while this one does the first half and writes it;
  // each state is freed once encoded, on the thread that encoded it.
  struct Encoded {
    std::string bytes;
    EncodedState encoded;  // its chunks view `bytes`, so an Encoded does not move
  };
  std::vector<std::pair<const std::string*, std::unique_ptr<v1::CustomerState>*>> states;
  states.reserve(replay.states.size());
  for (auto& [id, state] : replay.states) states.emplace_back(&id, &state);
  const size_t half = states.size() / 2;
  std::vector<Encoded> second(states.size() - half);
  auto encode = [&states](size_t i, Encoded* out) {
    out->bytes = SerializeDeterministic(**states[i].second);
    out->encoded = EncodeState(*states[i].first, out->bytes);
    states[i].second->reset();
  };
  auto put = [&rebuild](const std::string& id, const EncodedState& encoded) -> absl::Status {
    for (const auto& [key, chunk] : encoded.chunks) {
      LOYALTY_RETURN_IF_ERROR(rebuild->Put(Cf::kStateChunks, key, chunk));
    }
    return rebuild->Put(Cf::kCustomerState, id, encoded.head);
  };
  std::thread helper([&] {
    for (size_t i = half; i < states.size(); ++i) encode(i, &second[i - half]);
  });
  absl::Status written;
  for (size_t i = 0; i < half && written.ok(); ++i) {
    Encoded first;
    encode(i, &first);
    written = put(*states[i].first, first.encoded);
  }
  helper.join();
  LOYALTY_RETURN_IF_ERROR(written);
  for (size_t i = half; i < states.size(); ++i) {
    LOYALTY_RETURN_IF_ERROR(put(*states[i].first, second[i - half].encoded));
    second[i - half] = Encoded();
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
