#include "projections/projector.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "projections/ledger.h"
#include "projections/signals.h"
#include "projections/state_store.h"

namespace loyalty {

using ProjectionCf = LogBatch::ProjectionCf;

// Reads and parses, on a thread of its own, the stored states of the customers a
// batch is about to ask for, in the order it will. Mutable takes each from here:
// read already, being read (it waits), or not yet come to (it reads the state
// itself and the thread skips it). Only states not in cache_ when the batch began
// are given: the store holds them as the batch sees them, since the states of a
// batch not yet committed all stay in cache_ (Evict).
class Projector::StatePrefetch {
 public:
  StatePrefetch(const EventLog& log, std::vector<std::string> ids)
      : log_(log), ids_(std::move(ids)), slots_(ids_.size()) {
    index_.reserve(ids_.size());
    for (size_t i = 0; i < ids_.size(); ++i) index_.emplace(ids_[i], i);
    thread_ = std::thread([this] { Run(); });
  }
  ~StatePrefetch() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }

  // The state of `customer_id` as stored, if it is one of those given and was not
  // taken before; nullopt otherwise. `*ahead` says whether the thread read it.
  std::optional<absl::StatusOr<Cached>> Take(const std::string& customer_id, bool* ahead) {
    *ahead = false;
    auto it = index_.find(customer_id);
    if (it == index_.end()) return std::nullopt;
    Slot& slot = slots_[it->second];
    int stage = kPending;
    if (slot.stage.compare_exchange_strong(stage, kTaken)) {
      return ReadStored(log_, customer_id);  // the thread has not come to it
    }
    while (stage == kReading) {
      slot.stage.wait(kReading);
      stage = slot.stage.load();
    }
    if (stage != kRead) return std::nullopt;
    slot.stage.store(kTaken);
    *ahead = true;
    return std::move(slot.read);
  }

 private:
  enum : int { kPending, kReading, kRead, kTaken };
  struct Slot {
    std::atomic<int> stage{kPending};
    absl::StatusOr<Cached> read;  // set by the thread before it makes stage kRead
  };

  void Run() {
    for (size_t i = 0; i < slots_.size() && !stop_.load(std::memory_order_relaxed); ++i) {
      Slot& slot = slots_[i];
      int stage = kPending;
      if (!slot.stage.compare_exchange_strong(stage, kReading)) continue;  // taken
      slot.read = ReadStored(log_, ids_[i]);
      slot.stage.store(kRead);
      slot.stage.notify_one();
    }
  }

  const EventLog& log_;
  const std::vector<std::string> ids_;
  absl::flat_hash_map<std::string, size_t> index_;  // id -> its slot
  std::vector<Slot> slots_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: started once the members above exist
};

absl::StatusOr<std::unique_ptr<Projector>> Projector::Open(EventLog* log,
                                                           const v1::Program& program,
                                                           size_t state_cache_bytes,
                                                           size_t order_index_from,
                                                           size_t parsed_state_bytes) {
  LOYALTY_RETURN_IF_ERROR(ValidateProgram(program));
  std::unique_ptr<Projector> p(new Projector(log));
  p->configured_ = program;
  p->state_cache_bytes_ = state_cache_bytes;
  p->order_index_from_ = order_index_from;
  p->parsed_state_bytes_ = parsed_state_bytes;
  LOYALTY_RETURN_IF_ERROR(p->Load());
  return p;
}

Projector::Projector(EventLog* log) : log_(log) {}
Projector::~Projector() = default;

absl::Status Projector::Load() {
  auto stored = log_->GetProjection(ProjectionCf::kProjectionMeta, kMetaProgram);
  if (stored.ok()) {
    if (!in_force_.ParseFromString(*stored)) {
      return absl::DataLossError("the stored program does not decode");
    }
  } else if (!absl::IsNotFound(stored.status())) {
    return stored.status();
  }
  auto version = log_->GetProjection(ProjectionCf::kProjectionMeta, kMetaProjectionVersion);
  if (version.ok() && *version != absl::StrCat(kProjectionVersion)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the projections were built by projection version ", *version, "; this engine is ",
        kProjectionVersion, ": run `loyalty replay rebuild`"));
  }
  // Until a program is recorded, decisions use the configured one (the first
  // batch records it before any event).
  rules_ = std::make_unique<Rules>(in_force_.version() > 0 ? in_force_.program() : configured_);
  committed_in_force_ = in_force_;
  return absl::OkStatus();
}

void Projector::Evict() {
  const size_t target = state_cache_bytes_ / 10 * 9;
  std::vector<std::pair<uint64_t, const std::string*>> by_use;
  by_use.reserve(cache_.size());
  for (const auto& [id, cached] : cache_) {
    if (cached.changed <= committed_batch_ && !cached.kept_parsed) {
      by_use.emplace_back(cached.used, &id);
    }
  }
  std::sort(by_use.begin(), by_use.end());
  std::vector<std::string> drop;
  size_t bytes = cached_bytes_;
  for (const auto& [used, id] : by_use) {
    if (bytes <= target) break;
    bytes -= cache_.find(*id)->second.bytes;
    drop.push_back(*id);
  }
  for (const std::string& id : drop) cache_.erase(id);
  cached_bytes_ = bytes;
}

absl::Status Projector::BeginBatch(LogBatch* batch) {
  prefetch_.reset();
  dirty_.clear();  // the previous batch ended (EndBatch marked its states) or aborted
  remembered_.clear();
  ++batch_number_;
  if (cached_bytes_ > state_cache_bytes_) Evict();
  if (in_force_.version() > 0 &&
      google::protobuf::util::MessageDifferencer::Equals(in_force_.program(), configured_)) {
    return absl::OkStatus();
  }
  v1::ProgramChange change;
  change.set_version(in_force_.version() + 1);
  *change.mutable_program() = configured_;
  v1::LogRecord record;
  *record.mutable_program() = change;
  batch->Append(&record);
  in_force_ = change;
  rules_ = std::make_unique<Rules>(configured_);
  batch->Put(ProjectionCf::kProjectionMeta, kMetaProgram, SerializeDeterministic(in_force_));
  batch->Put(ProjectionCf::kProjectionMeta, kMetaProjectionVersion,
             absl::StrCat(kProjectionVersion));
  return absl::OkStatus();
}

absl::StatusOr<Projector::Cached> Projector::ReadStored(const EventLog& log,
                                                       const std::string& customer_id) {
  Cached cached;
  cached.state = std::make_unique<v1::CustomerState>();
  auto head = log.GetProjection(ProjectionCf::kCustomerState, customer_id);
  if (head.ok()) {
    LOYALTY_ASSIGN_OR_RETURN(std::string stored, StateBytesOfHead(log, customer_id, *head));
    if (!ParseCustomerState(stored, cached.state.get())) {
      return absl::DataLossError(
          absl::StrCat("the state of customer ", customer_id, " does not decode"));
    }
    cached.bytes = stored.size();
    if (EncodedState::IsChunkedHead(*head)) cached.head = *std::move(head);
  } else if (absl::IsNotFound(head.status())) {
    cached.state->set_customer_id(customer_id);
  } else {
    return head.status();
  }
  return cached;
}

void Projector::Prefetch(absl::Span<const std::string_view> customer_ids) {
  prefetch_.reset();
  if (!prefetch_enabled_) return;
  std::vector<std::string> ids;
  absl::flat_hash_set<absl::string_view> seen;
  for (std::string_view id : customer_ids) {
    const absl::string_view key(id.data(), id.size());
    if (cache_.contains(key) || !seen.insert(key).second) continue;
    ids.emplace_back(id);
  }
  if (ids.size() < kPrefetchFrom) return;
  prefetch_ = std::make_unique<StatePrefetch>(*log_, std::move(ids));
}

absl::StatusOr<v1::CustomerState*> Projector::Mutable(const std::string& customer_id) {
  auto it = cache_.find(customer_id);
  if (it == cache_.end()) {
    std::optional<absl::StatusOr<Cached>> read;
    bool ahead = false;
    if (prefetch_ != nullptr) read = prefetch_->Take(customer_id, &ahead);
    if (!read.has_value()) read = ReadStored(*log_, customer_id);
    if (ahead) ++states_read_ahead_;
    if (!read->ok()) return read->status();
    cached_bytes_ += (*read)->bytes;
    it = cache_.emplace(customer_id, **std::move(read)).first;
  }
  Cached& cached = it->second;
  if (cached.kept_parsed) {
    // Counted as any state the batch uses until EndBatch decides again.
    cached.kept_parsed = false;
    cached.was_kept = true;
    parsed_bytes_ -= cached.parsed_bytes;
    cached.parsed_bytes = 0;
    cached_bytes_ += cached.bytes;
  } else if (cached.state == nullptr) {
    auto parsed = std::make_unique<v1::CustomerState>();
    if (!ParseCustomerState(cached.serialized, parsed.get())) {
      return absl::InternalError(absl::StrCat("the cached state of customer ", customer_id,
                                              " does not decode"));
    }
    cached.state = std::move(parsed);
    // The batch rewrites it whole at its end.
    std::string().swap(cached.serialized);
  }
  cached.used = batch_number_;
  v1::CustomerState* state = cached.state.get();
  dirty_.push_back(state);
  return state;
}

absl::StatusOr<std::optional<std::string>> Projector::Recall(const std::string& key) {
  if (auto it = remembered_.find(key); it != remembered_.end()) return it->second;
  for (auto e = ended_.rbegin(); e != ended_.rend(); ++e) {
    if (auto it = e->remembered.find(key); it != e->remembered.end()) return it->second;
  }
  auto stored = log_->GetProjection(ProjectionCf::kDecisionIds, key);
  if (absl::IsNotFound(stored.status())) return std::nullopt;
  if (!stored.ok()) return stored.status();
  return *std::move(stored);
}

void Projector::Remember(const std::string& key, std::string value) {
  remembered_[key] = std::move(value);
}

OrderIdIndex* Projector::OrderIndex(const v1::CustomerState& state) {
  auto it = cache_.find(state.customer_id());
  if (it == cache_.end() || it->second.state.get() != &state) return nullptr;
  Cached& cached = it->second;
  if (cached.order_ids == nullptr) {
    if (static_cast<size_t>(state.ledger().order_id_size()) < order_index_from_) return nullptr;
    cached.order_ids = std::make_unique<OrderIdIndex>();
    for (const std::string& id : state.ledger().order_id()) cached.order_ids->Insert(id);
  }
  return cached.order_ids.get();
}

absl::Status Projector::Process(const v1::Event& event, uint64_t seq, v1::Applied* applied,
                                std::vector<std::string>* customers) {
  LOYALTY_ASSIGN_OR_RETURN(v1::Outcome outcome,
                           Decide(event, seq, *rules_, in_force_.version(), this));
  LOYALTY_RETURN_IF_ERROR(
      SignalsAfterEvent(*rules_, event.customer_id(), outcome, this, applied->mutable_signals()));
  for (v1::LedgerEntry& e : *outcome.mutable_entries()) {
    customers->push_back(e.customer_id());
    // The record that holds the outcome names the event and its sequence number.
    e.clear_event_id();
    e.clear_seq();
  }
  *applied->mutable_outcome() = std::move(outcome);
  return absl::OkStatus();
}

absl::Status Projector::EndBatch(LogBatch* batch) {
  prefetch_.reset();  // every state the batch asked for is in cache_
  // In key order (the memtable then reuses its insertion point between puts); a
  // state named twice is one customer's, so its repeats end up side by side.
  std::sort(dirty_.begin(), dirty_.end(), [](const v1::CustomerState* a, const v1::CustomerState* b) {
    return a->customer_id() < b->customer_id();
  });
  dirty_.erase(std::unique(dirty_.begin(), dirty_.end()), dirty_.end());
  // Serializing the changed states is a large share of a batch (a busy customer's
  // state holds a year of orders and lots): big batches share it with a second
  // thread, each taking the next state not yet taken.
  std::vector<std::string> bytes(dirty_.size());
  std::vector<EncodedState> encoded(dirty_.size());
  std::atomic<size_t> next{0};
  auto serialize = [&] {
    for (size_t i = next++; i < dirty_.size(); i = next++) {
      bytes[i] = SerializeDeterministic(*dirty_[i]);
      encoded[i] = EncodeState(dirty_[i]->customer_id(), bytes[i]);
    }
  };
  if (serialize_threads_ > 1 && dirty_.size() >= kParallelSerializeFrom) {
    std::vector<std::thread> helpers;
    for (int k = 1; k < serialize_threads_; ++k) helpers.emplace_back(serialize);
    serialize();
    for (std::thread& t : helpers) t.join();
  } else {
    serialize();
  }
  last_batch_state_bytes_ = 0;
  // Nothing is added to cache_ until the batch ends: its entries stay where they are.
  std::vector<Cached*> entries(dirty_.size());
  for (size_t i = 0; i < dirty_.size(); ++i) {
    const v1::CustomerState* state = dirty_[i];
    last_batch_state_bytes_ += bytes[i].size();
    entries[i] = &cache_.find(state->customer_id())->second;
    Cached& cached = *entries[i];
    // Only the chunks this batch changed (projections/state_store.h).
    LOYALTY_RETURN_IF_ERROR(ForEachStateChange(
        encoded[i], state->customer_id(), cached.head,
        [batch](ProjectionCf cf, std::string_view key, std::string_view value) {
          batch->Put(cf, key, value);
        },
        [batch](std::string_view key) { batch->Delete(ProjectionCf::kStateChunks, key); }));
    if (encoded[i].chunked()) {
      cached.head = std::move(encoded[i].head);
    } else {
      std::string().swap(cached.head);
    }
    cached_bytes_ += bytes[i].size();
    cached_bytes_ -= cached.bytes;
    cached.bytes = bytes[i].size();
    cached.changed = batch_number_;
    if (due_loaded_) due_.Set(state->customer_id(), state->signals().next_check_at());
  }
  KeepParsed(entries, &bytes);
  dirty_.clear();  // its states are stored or kept now
  for (const auto& [key, value] : remembered_) batch->Put(ProjectionCf::kDecisionIds, key, value);
  // Until the batch is reported committed, its states stay in memory (Evict skips
  // them) and its decision ids are recalled from here.
  ended_.push_back(Ended{batch_number_, in_force_, std::move(remembered_)});
  remembered_.clear();
  return absl::OkStatus();
}

size_t Projector::ParsedBytes(Cached* cached, size_t serialized_bytes) {
  const size_t index_bytes = cached->order_ids ? cached->order_ids->bytes() : 0;
  if (cached->parsed_per_kib == 0 || serialized_bytes > 2 * cached->measured_at ||
      2 * serialized_bytes < cached->measured_at) {
    const size_t space = cached->state->SpaceUsedLong();
    cached->measured_at = std::max<size_t>(serialized_bytes, 1);
    cached->parsed_per_kib = static_cast<uint32_t>(
        std::min<size_t>(space * 1024 / cached->measured_at + 1, UINT32_MAX));
    return space + index_bytes;
  }
  return serialized_bytes * cached->parsed_per_kib / 1024 + index_bytes;
}

void Projector::KeepParsed(const std::vector<Cached*>& entries,
                           std::vector<std::string>* serialized) {
  // The states kept parsed that this batch did not use: serialized again (they are
  // as stored), as they may belong to a batch not yet committed.
  for (const std::string& id : kept_) {
    Cached& cached = cache_.find(id)->second;
    if (!cached.kept_parsed) continue;  // this batch used it
    cached.serialized = SerializeDeterministic(*cached.state);
    cached.state.reset();
    cached.order_ids.reset();
    cached.kept_parsed = false;
    parsed_bytes_ -= cached.parsed_bytes;
    cached.parsed_bytes = 0;
    cached_bytes_ += cached.bytes;
  }
  kept_.clear();
  // Of this batch's states, those the batch before used too: first those kept
  // parsed since then (so that the same states stay), then the others, by
  // customer id (the order of dirty_).
  std::vector<size_t> hot, others;
  std::vector<std::string> ids;
  ids.reserve(dirty_.size());
  for (size_t i = 0; i < dirty_.size(); ++i) {
    const std::string& id = dirty_[i]->customer_id();
    ids.push_back(id);
    Cached& cached = *entries[i];
    if (cached.was_kept) {
      hot.push_back(i);
    } else if (std::binary_search(last_batch_.begin(), last_batch_.end(), id)) {
      others.push_back(i);
    }
    cached.was_kept = false;
  }
  last_batch_ = std::move(ids);  // sorted, as dirty_ is
  hot.insert(hot.end(), others.begin(), others.end());
  std::vector<bool> keep(dirty_.size(), false);
  for (size_t i : hot) {
    Cached& cached = *entries[i];
    // Parsed, a state takes more than its serialized bytes: one that would not
    // fit even as those is not measured.
    if (parsed_bytes_ + (*serialized)[i].size() > parsed_state_bytes_) continue;
    const size_t bytes = ParsedBytes(&cached, (*serialized)[i].size());
    if (parsed_bytes_ + bytes > parsed_state_bytes_) continue;
    keep[i] = true;
    cached.kept_parsed = true;
    cached.parsed_bytes = bytes;
    parsed_bytes_ += bytes;
    cached_bytes_ -= cached.bytes;
    kept_.push_back(dirty_[i]->customer_id());
  }
  for (size_t i = 0; i < dirty_.size(); ++i) {
    if (keep[i]) continue;
    // Kept as stored until a batch needs it again (kDefaultStateCacheBytes).
    Cached& cached = *entries[i];
    cached.serialized = std::move((*serialized)[i]);
    cached.state.reset();
    cached.order_ids.reset();
  }
}

void Projector::Committed() {
  if (ended_.empty()) return;
  committed_batch_ = ended_.front().batch;
  committed_in_force_ = std::move(ended_.front().in_force);
  ended_.pop_front();
}

void Projector::AbortBatch() {
  prefetch_.reset();
  // The store holds every state as of the last committed batch: forget those
  // changed since (by the batch in progress, or by an ended batch whose commit
  // failed or will not happen) so that they are read again from it.
  std::vector<std::string> ids;
  for (const v1::CustomerState* state : dirty_) ids.push_back(state->customer_id());
  for (const auto& [id, cached] : cache_) {
    if (cached.changed > committed_batch_) ids.push_back(id);
  }
  // The sweep's index may hold times of states that did not commit: load it again.
  if (!ids.empty()) due_loaded_ = false;
  dirty_.clear();
  remembered_.clear();
  ended_.clear();
  for (const std::string& id : ids) {
    auto it = cache_.find(id);
    if (it == cache_.end()) continue;  // named twice
    if (it->second.kept_parsed) {
      parsed_bytes_ -= it->second.parsed_bytes;
    } else {
      cached_bytes_ -= it->second.bytes;
    }
    cache_.erase(it);
  }
  // The states kept parsed that are left are as the store holds them.
  kept_.erase(std::remove_if(kept_.begin(), kept_.end(),
                             [&](const std::string& id) { return !cache_.contains(id); }),
              kept_.end());
  in_force_ = committed_in_force_;
  rules_ = std::make_unique<Rules>(in_force_.version() > 0 ? in_force_.program() : configured_);
}

absl::Status Projector::LoadDue() {
  due_.Clear();
  v1::CustomerState stored;
  LOYALTY_RETURN_IF_ERROR(ScanStateBytes(
      *log_,
      [&](std::string_view key, std::string_view value) -> absl::Status {
        if (!ParseCustomerState(value, &stored)) {
          return absl::DataLossError(
              absl::StrCat("the state of customer ", std::string(key), " does not decode"));
        }
        due_.Set(std::string(key), stored.signals().next_check_at());
        return absl::OkStatus();
      }));
  // States changed in memory and not yet stored (a batch in flight) win.
  for (const auto& [id, cached] : cache_) {
    if (cached.state != nullptr) {
      due_.Set(id, cached.state->signals().next_check_at());
    } else if (ParseCustomerState(cached.serialized, &stored)) {
      due_.Set(id, stored.signals().next_check_at());
    } else {
      return absl::InternalError(
          absl::StrCat("the cached state of customer ", id, " does not decode"));
    }
  }
  due_loaded_ = true;
  return absl::OkStatus();
}

absl::StatusOr<bool> Projector::Sweep(int64_t at, LogBatch* batch) {
  if (!due_loaded_) LOYALTY_RETURN_IF_ERROR(LoadDue());
  // The replay evaluates due customers in customer_id order: so does the sweep.
  const std::vector<std::string> ids = due_.DueBy(at);
  if (ids.empty()) return false;
  v1::LogRecord record;
  record.mutable_ingested_at()->set_seconds(at);
  v1::Sweep* sweep = record.mutable_sweep();
  sweep->set_at(at);
  for (const std::string& id : ids) {
    LOYALTY_ASSIGN_OR_RETURN(v1::CustomerState * state, Mutable(id));
    if (!DueForSweep(*state, at)) continue;  // the index was behind the state
    EvaluateSignals(*rules_, std::max(at, state->ledger().clock()), state,
                    sweep->mutable_signals());
    sweep->set_customers(sweep->customers() + 1);
  }
  batch->Append(&record);
  return true;
}

}  // namespace loyalty
