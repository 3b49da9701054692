#include "projections/stats_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "loyalty/v1/log.pb.h"
#include "projections/ledger_reader.h"
#include "projections/state_store.h"

namespace loyalty {
namespace {

using ProjectionCf = LogBatch::ProjectionCf;

// More new records than this (beyond one per kept customer) and reading every state
// again costs less than following the records.
constexpr uint64_t kRebuildSlack = 10'000;

// Staged timeline changes (distinct seconds) merged into its buckets at once while
// building: bounds the staging map (~200 bytes a second).
constexpr size_t kTimelineStaged = 500'000;

// A state in memory takes several times its serialized size (packed columns in
// 8-byte slots with room to grow, a heap string per order id): what a timeline
// build's estimate of its passes' memory assumes.
constexpr uint64_t kStateBytesInMemory = 6;

absl::StatusOr<v1::LedgerState> ReadLedger(const EventLog& log, std::string_view customer_id,
                                           const LogSnapshot& snap) {
  v1::LedgerState ledger;
  LOYALTY_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                           ReadStateBytes(log, customer_id, &snap));
  if (!stored.has_value()) return ledger;  // unknown: no entries
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
  LOYALTY_RETURN_IF_ERROR(ScanStateBytes(
      *log_,
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
  InstallTimelineLocked(nullptr, nullptr, nullptr, 0);
  return false;
}

void StatsIndex::InstallTimelineLocked(std::unique_ptr<StatsTimeline> timeline,
                                       std::shared_ptr<const Rules> rules,
                                       std::unique_ptr<LogSnapshot> snap, uint64_t passes) {
  const bool answers = timeline != nullptr;
  timeline_ = std::move(timeline);
  timeline_rules_ = std::move(rules);
  timeline_snap_ = std::move(snap);
  timeline_passes_ = passes;
  if (answers) ClearLocked();  // the timeline answers now
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
  LOYALTY_RETURN_IF_ERROR(log_->Scan(
      before.seq() + 1, snap->seq(),
      [&](uint64_t seq, std::string_view, std::string_view bytes,
          std::string_view) -> absl::Status {
        const size_t first = entries.size();
        if (!ParseRecordEntries(bytes, &entries)) {
          return absl::DataLossError(absl::StrCat("log record ", seq, " does not decode"));
        }
        for (size_t i = first; i < entries.size(); ++i) {
          by_customer[entries[i].customer_id()].push_back(static_cast<uint32_t>(i));
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
                                       const std::atomic<bool>* cancel,
                                       uint64_t memory_bytes) {
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, log_->TakeSnapshot());
  auto timeline = std::make_unique<StatsTimeline>();
  auto cancelled = [cancel] { return cancel != nullptr && cancel->load(std::memory_order_relaxed); };
  // One pass over the log in order, folding every customer's entries in memory (as
  // LedgerReader folds a past T): each state counts over the span until the
  // customer's next entry, the last for ever. The states of all customers at once
  // may not fit, so the customers are split by a hash of their id into as many
  // passes as keep each pass's states within memory_bytes.
  uint64_t state_bytes = 0;
  LOYALTY_RETURN_IF_ERROR(log_->ScanProjection(
      ProjectionCf::kCustomerState,
      [&](std::string_view, std::string_view head) -> absl::Status {
        state_bytes += StateSizeOfHead(head);
        return absl::OkStatus();
      },
      snap.get()));
  const uint64_t passes =
      std::max<uint64_t>(1, (state_bytes * kStateBytesInMemory + memory_bytes - 1) /
                                std::max<uint64_t>(memory_bytes, 1));
  std::vector<v1::LedgerEntry> entries;
  for (uint64_t pass = 0; pass < passes; ++pass) {
    absl::flat_hash_map<std::string, v1::LedgerState> states;
    LOYALTY_RETURN_IF_ERROR(log_->Scan(
        1, snap->seq(),
        [&](uint64_t seq, std::string_view, std::string_view bytes,
            std::string_view) -> absl::Status {
          if (seq % 4096 == 0 && cancelled()) {
            return absl::CancelledError("building the stats timeline was cancelled");
          }
          entries.clear();
          if (!ParseRecordEntries(bytes, &entries)) {
            return absl::DataLossError(absl::StrCat("log record ", seq, " does not decode"));
          }
          for (const v1::LedgerEntry& e : entries) {
            if (passes > 1 && absl::HashOf(e.customer_id()) % passes != pass) continue;
            LOYALTY_RETURN_IF_ERROR(FoldEntry(*rules, e, &states[e.customer_id()], timeline.get()));
          }
          if (timeline->staged() >= kTimelineStaged) timeline->Apply();
          return absl::OkStatus();
        },
        snap.get()));
    for (const auto& [id, state] : states) {
      AddTail(*rules, state, +1, timeline.get());
      if (timeline->staged() >= kTimelineStaged) timeline->Apply();
    }
  }
  timeline->Apply();
  absl::MutexLock lock(&mu_);
  InstallTimelineLocked(std::move(timeline), std::move(rules), std::move(snap), passes);
  return absl::OkStatus();
}

absl::Status StatsIndex::SaveTimeline(const std::string& path) {
  v1::StatsTimelineFile file;
  {
    absl::MutexLock lock(&mu_);
    if (timeline_ == nullptr) return absl::FailedPreconditionError("no stats timeline to save");
    absl::Status s = SyncTimelineLocked();
    if (!s.ok()) {
      InstallTimelineLocked(nullptr, nullptr, nullptr, 0);
      return s;
    }
    file.set_format(1);
    file.set_program_digest(timeline_rules_->program_digest);
    file.set_seq(timeline_snap_->seq());
    file.set_head_hash(std::string(DigestView(timeline_snap_->head().hash)));
    timeline_->ToBuckets(&file);
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !file.SerializeToOstream(&out) || !out.flush()) {
      return absl::InternalError(absl::StrCat("cannot write ", tmp));
    }
  }
  // Durable before the rename makes it the one read at the next start.
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return absl::InternalError(absl::StrCat("cannot sync ", tmp));
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::Status StatsIndex::LoadTimeline(const std::string& path,
                                      std::shared_ptr<const Rules> rules) {
  v1::StatsTimelineFile file;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("no stats timeline at ", path));
    if (!file.ParseFromIstream(&in)) {
      return absl::DataLossError(absl::StrCat("the stats timeline at ", path, " does not decode"));
    }
  }
  if (file.format() != 1) {
    return absl::FailedPreconditionError(absl::StrCat("stats timeline format ", file.format()));
  }
  if (file.program_digest() != rules->program_digest) {
    return absl::FailedPreconditionError("the stats timeline was built under another program");
  }
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<LogSnapshot> snap, log_->TakeSnapshot());
  if (snap->seq() != file.seq() || DigestView(snap->head().hash) != file.head_hash()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the stats timeline reflects the log at seq ", file.seq(),
                     ", which is now at ", snap->seq(), " or differs"));
  }
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<StatsTimeline> timeline,
                           StatsTimeline::FromBuckets(file));
  absl::MutexLock lock(&mu_);
  InstallTimelineLocked(std::move(timeline), std::move(rules), std::move(snap), 0);
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
  info.passes = timeline_passes_;
  return info;
}

}  // namespace loyalty
