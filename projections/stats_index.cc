#include "projections/stats_index.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "loyalty/v1/log.pb.h"
#include "projections/ledger_reader.h"

namespace loyalty {
namespace {

using ProjectionCf = LogBatch::ProjectionCf;

// More new records than this (beyond one per kept customer) and reading every state
// again costs less than following the records.
constexpr uint64_t kRebuildSlack = 10'000;

// Staged timeline changes (distinct seconds) merged into its buckets at once while
// building: bounds the staging map (~200 bytes a second).
constexpr size_t kTimelineStaged = 500'000;

absl::StatusOr<v1::LedgerState> ReadLedger(const EventLog& log, std::string_view customer_id,
                                           const LogSnapshot& snap) {
  v1::LedgerState ledger;
  auto stored = log.GetProjection(ProjectionCf::kCustomerState, customer_id, &snap);
  if (absl::IsNotFound(stored.status())) return ledger;  // unknown: no entries
  LOYALTY_RETURN_IF_ERROR(stored.status());
  if (!ParseLedgerOnly(*stored, &ledger)) {
    return absl::DataLossError(
        absl::StrCat("the state of ", std::string(customer_id), " does not decode"));
  }
  return ledger;
}

}  // namespace

size_t StatsIndex::customers() const {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

void StatsIndex::ClearLocked() {
  slot_of_.clear();
  slots_.clear();
  by_until_.clear();
  by_from_.clear();
  totals_ = StatsView();
  built_ = false;
}

uint32_t StatsIndex::SlotLocked(std::string_view customer_id) {
  auto it = slot_of_.find(customer_id);
  if (it != slot_of_.end()) return it->second;
  const uint32_t slot = static_cast<uint32_t>(slots_.size());
  slots_.push_back(Slot{std::string(customer_id), StatsShare()});
  slot_of_.emplace(slots_.back().customer_id, slot);
  return slot;
}

void StatsIndex::PutLocked(uint32_t slot, const StatsShare& share) {
  StatsShare& kept = slots_[slot].share;
  AddShare(kept, -1, &totals_);
  if (kept.valid_until != INT64_MAX) by_until_.erase({kept.valid_until, slot});
  if (kept.valid_from != INT64_MIN) by_from_.erase({kept.valid_from, slot});
  kept = share;
  AddShare(kept, +1, &totals_);
  if (kept.valid_until != INT64_MAX) by_until_.insert({kept.valid_until, slot});
  if (kept.valid_from != INT64_MIN) by_from_.insert({kept.valid_from, slot});
}

absl::Status StatsIndex::ReloadLocked(std::string_view customer_id, const LogSnapshot& snap,
                                      int64_t t) {
  LOYALTY_ASSIGN_OR_RETURN(v1::LedgerState ledger, ReadLedger(*log_, customer_id, snap));
  if (ledger.entries() == 0 && !slot_of_.contains(customer_id)) return absl::OkStatus();
  PutLocked(SlotLocked(customer_id), ShareAt(*rules_, ledger, std::max(t, ledger.clock())));
  return absl::OkStatus();
}

absl::Status StatsIndex::RebuildLocked(const LogSnapshot& snap, int64_t now) {
  ClearLocked();
  v1::LedgerState ledger;
  LOYALTY_RETURN_IF_ERROR(log_->ScanProjection(
      ProjectionCf::kCustomerState,
      [&](std::string_view key, std::string_view value) -> absl::Status {
        if (!ParseLedgerOnly(value, &ledger)) {
          return absl::DataLossError(
              absl::StrCat("the state of ", std::string(key), " does not decode"));
        }
        if (ledger.entries() == 0) return absl::OkStatus();
        PutLocked(SlotLocked(key), ShareAt(*rules_, ledger, std::max(now, ledger.clock())));
        return absl::OkStatus();
      },
      &snap));
  built_ = true;
  generation_ = snap.projection_generation();
  seq_ = snap.seq();
  return absl::OkStatus();
}

absl::Status StatsIndex::SyncLocked(const std::shared_ptr<const Rules>& rules,
                                    const LogSnapshot& snap, int64_t now) {
  if (!built_ || rules != rules_ || snap.projection_generation() != generation_ ||
      snap.seq() < seq_) {
    rules_ = rules;
    absl::Status s = RebuildLocked(snap, now);
    if (!s.ok()) ClearLocked();
    return s;
  }
  if (snap.seq() == seq_) return absl::OkStatus();
  if (snap.seq() - seq_ > slots_.size() + kRebuildSlack) {
    absl::Status s = RebuildLocked(snap, now);
    if (!s.ok()) ClearLocked();
    return s;
  }
  // A customer's ledger changes only by entries, and every entry is in the outcome of
  // the record that caused it (for whichever customer it is).
  absl::flat_hash_set<std::string> changed;
  v1::LogRecord record;
  LOYALTY_RETURN_IF_ERROR(log_->Scan(
      seq_ + 1, snap.seq(),
      [&](uint64_t seq, std::string_view, std::string_view bytes,
          std::string_view) -> absl::Status {
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return absl::DataLossError(absl::StrCat("log record ", seq, " does not decode"));
        }
        if (!record.has_applied()) return absl::OkStatus();
        for (const v1::LedgerEntry& e : record.applied().outcome().entries()) {
          changed.insert(e.customer_id());
        }
        return absl::OkStatus();
      },
      &snap));
  for (const std::string& id : changed) {
    absl::Status s = ReloadLocked(id, snap, now);
    if (!s.ok()) {
      ClearLocked();  // some shares may be of the newer state, some not: start again
      return s;
    }
  }
  seq_ = snap.seq();
  return absl::OkStatus();
}

std::vector<uint32_t> StatsIndex::LapsedLocked(int64_t t) const {
  std::vector<uint32_t> out;
  for (auto it = by_until_.begin(); it != by_until_.end() && it->first <= t; ++it) {
    out.push_back(it->second);
  }
  for (auto it = by_from_.rbegin(); it != by_from_.rend() && it->first > t; ++it) {
    out.push_back(it->second);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<StatsIndex::Answer> StatsIndex::Stats(std::shared_ptr<const Rules> rules,
                                                     int64_t t, int64_t now, bool keep) {
  absl::MutexLock lock(&mu_);
  if (TimelineUsableLocked(rules)) return Answer{timeline_->SumUpTo(t), timeline_snap_->seq()};
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, log_->TakeSnapshot());
  LOYALTY_RETURN_IF_ERROR(SyncLocked(rules, *snap, now));
  // Shares evaluated at t that are not kept: (slot, share at t).
  std::vector<std::pair<uint32_t, StatsShare>> aside;
  for (uint32_t slot : LapsedLocked(t)) {
    const std::string& id = slots_[slot].customer_id;
    LOYALTY_ASSIGN_OR_RETURN(v1::LedgerState ledger, ReadLedger(*log_, id, *snap));
    if (ledger.clock() <= t) {
      const StatsShare share = ShareAt(*rules_, ledger, t);
      if (keep) {
        PutLocked(slot, share);
      } else {
        aside.emplace_back(slot, share);
      }
      continue;
    }
    // The customer's clock is past t: fold the ledger's prefix up to t from the log.
    LedgerReader reader(log_, rules_.get(), snap.get());
    LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::LedgerState> past, reader.StateAsOf(id, t));
    aside.emplace_back(slot, past.has_value() ? ShareAt(*rules_, *past, t) : StatsShare());
  }
  Answer answer{totals_, snap->seq()};
  for (const auto& [slot, share] : aside) {
    AddShare(slots_[slot].share, -1, &answer.stats);
    AddShare(share, +1, &answer.stats);
  }
  return answer;
}

absl::Status StatsIndex::Refresh(std::shared_ptr<const Rules> rules, int64_t now) {
  absl::MutexLock lock(&mu_);
  if (TimelineUsableLocked(rules)) return absl::OkStatus();
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, log_->TakeSnapshot());
  LOYALTY_RETURN_IF_ERROR(SyncLocked(rules, *snap, now));
  // Only shares that ended by now: one that starts after now is a customer whose
  // clock is ahead, evaluated at that clock already.
  std::vector<uint32_t> ended;
  for (auto it = by_until_.begin(); it != by_until_.end() && it->first <= now; ++it) {
    ended.push_back(it->second);
  }
  for (uint32_t slot : ended) {
    const std::string id = slots_[slot].customer_id;
    LOYALTY_RETURN_IF_ERROR(ReloadLocked(id, *snap, now));
  }
  return absl::OkStatus();
}

bool StatsIndex::TimelineUsableLocked(const std::shared_ptr<const Rules>& rules) {
  if (timeline_ == nullptr) return false;
  if (rules == timeline_rules_ && SyncTimelineLocked().ok()) return true;
  // Other rules, rebuilt projections, or a record that does not fold: the kept
  // shares answer until a timeline is built again.
  timeline_.reset();
  timeline_rules_.reset();
  timeline_snap_.reset();
  return false;
}

absl::Status StatsIndex::SyncTimelineLocked() {
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, log_->TakeSnapshot());
  const LogSnapshot& before = *timeline_snap_;
  if (snap->projection_generation() != before.projection_generation() ||
      snap->seq() < before.seq()) {
    return absl::FailedPreconditionError("the projections were rebuilt");
  }
  if (snap->seq() == before.seq()) return absl::OkStatus();
  // Every entry since, by customer, in ledger order (a customer's entries are in log
  // order), each folded from the customer's state before them.
  std::vector<v1::LedgerEntry> entries;
  absl::flat_hash_map<std::string, std::vector<uint32_t>> by_customer;
  v1::LogRecord record;
  LOYALTY_RETURN_IF_ERROR(log_->Scan(
      before.seq() + 1, snap->seq(),
      [&](uint64_t seq, std::string_view, std::string_view bytes,
          std::string_view) -> absl::Status {
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return absl::DataLossError(absl::StrCat("log record ", seq, " does not decode"));
        }
        if (!record.has_applied()) return absl::OkStatus();
        for (v1::LedgerEntry& e : *record.mutable_applied()->mutable_outcome()->mutable_entries()) {
          by_customer[e.customer_id()].push_back(static_cast<uint32_t>(entries.size()));
          entries.push_back(std::move(e));
        }
        return absl::OkStatus();
      },
      snap.get()));
  std::vector<const v1::LedgerEntry*> mine;
  for (const auto& [id, indexes] : by_customer) {
    LOYALTY_ASSIGN_OR_RETURN(v1::LedgerState state, ReadLedger(*log_, id, before));
    mine.clear();
    for (uint32_t i : indexes) mine.push_back(&entries[i]);
    LOYALTY_RETURN_IF_ERROR(FoldIntoTimeline(*timeline_rules_, mine, &state, timeline_.get()));
  }
  timeline_->Apply();
  timeline_snap_ = std::move(snap);
  return absl::OkStatus();
}

absl::Status StatsIndex::BuildTimeline(std::shared_ptr<const Rules> rules,
                                       const std::atomic<bool>* cancel) {
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, log_->TakeSnapshot());
  auto timeline = std::make_unique<StatsTimeline>();
  // Every customer with a state, folded from its records (as LedgerReader folds a
  // past T): each state it passes through counts over the span it held.
  std::vector<v1::LedgerEntry> entries;
  std::vector<const v1::LedgerEntry*> mine;
  LOYALTY_RETURN_IF_ERROR(log_->ScanProjection(
      ProjectionCf::kCustomerState,
      [&](std::string_view key, std::string_view) -> absl::Status {
        if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
          return absl::CancelledError("building the stats timeline was cancelled");
        }
        LOYALTY_ASSIGN_OR_RETURN(std::vector<uint64_t> seqs, log_->CustomerSeqs(key, snap.get()));
        entries.clear();
        for (uint64_t seq : seqs) {
          LOYALTY_ASSIGN_OR_RETURN(v1::LogRecord record, log_->Read(seq, snap.get()));
          if (!record.has_applied()) continue;
          for (v1::LedgerEntry& e : *record.mutable_applied()->mutable_outcome()->mutable_entries()) {
            if (e.customer_id() == key) entries.push_back(std::move(e));
          }
        }
        mine.clear();
        for (const v1::LedgerEntry& e : entries) mine.push_back(&e);
        v1::LedgerState state;
        LOYALTY_RETURN_IF_ERROR(FoldIntoTimeline(*rules, mine, &state, timeline.get()));
        if (timeline->staged() >= kTimelineStaged) timeline->Apply();
        return absl::OkStatus();
      },
      snap.get()));
  timeline->Apply();
  absl::MutexLock lock(&mu_);
  timeline_ = std::move(timeline);
  timeline_rules_ = std::move(rules);
  timeline_snap_ = std::move(snap);
  ClearLocked();  // the timeline answers now
  return absl::OkStatus();
}

bool StatsIndex::HasTimeline(const std::shared_ptr<const Rules>& rules) const {
  absl::MutexLock lock(&mu_);
  return timeline_ != nullptr && timeline_rules_ == rules;
}

StatsIndex::TimelineInfo StatsIndex::timeline_info() const {
  absl::MutexLock lock(&mu_);
  TimelineInfo info;
  if (timeline_ == nullptr) return info;
  info.ready = true;
  info.seq = timeline_snap_->seq();
  info.points = timeline_->points();
  info.bytes = timeline_->bytes();
  return info;
}

}  // namespace loyalty
