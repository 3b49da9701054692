#include "projections/stats_timeline.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "projections/ledger.h"

namespace loyalty {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;

// StatsView's figures in a fixed order, for the packed points.
constexpr int kFields = 16;
using Fields = std::array<int64_t, kFields>;

Fields ToFields(const StatsView& v) {
  return {v.members,         v.purchasers,        v.repeat_purchasers, v.points_outstanding,
          v.earned,          v.redeemed,          v.expired,           v.per_tier[0],
          v.per_tier[1],     v.per_tier[2],       v.per_tier[3],       v.per_risk_level[0],
          v.per_risk_level[1], v.per_risk_level[2], v.per_risk_level[3], v.per_risk_level[4]};
}

StatsView FromFields(const Fields& f) {
  StatsView v;
  v.members = f[0];
  v.purchasers = f[1];
  v.repeat_purchasers = f[2];
  v.points_outstanding = f[3];
  v.earned = f[4];
  v.redeemed = f[5];
  v.expired = f[6];
  for (int k = 0; k < 4; ++k) v.per_tier[k] = f[7 + k];
  for (int k = 0; k < 5; ++k) v.per_risk_level[k] = f[11 + k];
  return v;
}

bool IsZero(const Fields& f) {
  return std::all_of(f.begin(), f.end(), [](int64_t x) { return x == 0; });
}

void PutVarint(uint64_t x, std::string* out) {
  uint8_t buf[10];
  uint8_t* end = CodedOutputStream::WriteVarint64ToArray(x, buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(end - buf));
}

// A point: the seconds since the previous point (or the bucket's start), a mask of
// the nonzero fields, then each of them zigzag-encoded.
void PutPoint(int64_t gap, const Fields& f, std::string* out) {
  PutVarint(static_cast<uint64_t>(gap), out);
  uint32_t mask = 0;
  for (int i = 0; i < kFields; ++i) {
    if (f[i] != 0) mask |= 1u << i;
  }
  PutVarint(mask, out);
  for (int i = 0; i < kFields; ++i) {
    if (f[i] != 0) PutVarint(WireFormatLite::ZigZagEncode64(f[i]), out);
  }
}

}  // namespace

int64_t StatsTimeline::BucketOf(int64_t t) {
  int64_t q = t / kBucketSeconds;
  if (t % kBucketSeconds < 0) --q;  // floor, for times before the epoch
  return q * kBucketSeconds;
}

template <typename Fn>
void StatsTimeline::ForEachPoint(int64_t start, const Bucket& b, Fn fn) {
  // The bytes were written by PutPoint above, so reads cannot fail.
  CodedInputStream in(reinterpret_cast<const uint8_t*>(b.packed.data()),
                      static_cast<int>(b.packed.size()));
  int64_t at = start;
  for (uint32_t n = 0; n < b.count; ++n) {
    uint64_t gap = 0, mask = 0;
    in.ReadVarint64(&gap);
    in.ReadVarint64(&mask);
    at += static_cast<int64_t>(gap);
    Fields f{};
    for (int i = 0; i < kFields; ++i) {
      if ((mask >> i) & 1) {
        uint64_t z = 0;
        in.ReadVarint64(&z);
        f[i] = WireFormatLite::ZigZagDecode64(z);
      }
    }
    if (!fn(at, f)) return;
  }
}

void StatsTimeline::Add(int64_t at, const StatsView& delta) {
  AddStats(delta, +1, &staged_[at]);
}

void StatsTimeline::Apply() {
  if (staged_.empty()) return;
  std::vector<std::pair<int64_t, Fields>> staged;
  staged.reserve(staged_.size());
  for (const auto& [at, view] : staged_) {
    Fields f = ToFields(view);
    if (!IsZero(f)) staged.emplace_back(at, f);
  }
  staged_.clear();
  std::sort(staged.begin(), staged.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::pair<int64_t, Fields>> merged;
  for (size_t i = 0; i < staged.size();) {
    const int64_t start = BucketOf(staged[i].first);
    size_t j = i;
    while (j < staged.size() && staged[j].first < start + kBucketSeconds) ++j;
    Bucket& b = buckets_[start];
    // Merge the bucket's points with the new ones (both in time order).
    merged.clear();
    merged.reserve(b.count + (j - i));
    size_t k = i;
    ForEachPoint(start, b, [&](int64_t at, const Fields& f) {
      for (; k < j && staged[k].first < at; ++k) merged.push_back(staged[k]);
      merged.emplace_back(at, f);
      for (; k < j && staged[k].first == at; ++k) {
        for (int x = 0; x < kFields; ++x) merged.back().second[x] += staged[k].second[x];
      }
      return true;
    });
    for (; k < j; ++k) merged.push_back(staged[k]);
    for (size_t x = i; x < j; ++x) AddStats(FromFields(staged[x].second), +1, &b.sum);
    points_ -= b.count;
    bytes_ -= b.packed.size();
    b.packed.clear();
    b.count = 0;
    int64_t prev = start;
    for (const auto& [at, f] : merged) {
      if (IsZero(f)) continue;
      PutPoint(at - prev, f, &b.packed);
      prev = at;
      ++b.count;
    }
    points_ += b.count;
    bytes_ += b.packed.size();
    if (b.count == 0) {
      buckets_.erase(start);
    } else {
      b.packed.shrink_to_fit();
    }
    i = j;
  }
}

void StatsTimeline::ToBuckets(v1::StatsTimelineFile* file) const {
  for (const auto& [start, b] : buckets_) {
    v1::StatsTimelineBucket* out = file->add_buckets();
    out->set_start(start);
    out->set_count(b.count);
    out->set_packed(b.packed);
  }
}

absl::StatusOr<std::unique_ptr<StatsTimeline>> StatsTimeline::FromBuckets(
    const v1::StatsTimelineFile& file) {
  auto timeline = std::make_unique<StatsTimeline>();
  for (const v1::StatsTimelineBucket& in : file.buckets()) {
    const int64_t start = in.start();
    // Far from any time a ledger holds, and from overflowing BucketOf.
    constexpr int64_t kFar = int64_t{1} << 60;
    if (start < -kFar || start > kFar || BucketOf(start) != start || in.count() == 0 ||
        (!timeline->buckets_.empty() && timeline->buckets_.rbegin()->first >= start)) {
      return absl::DataLossError(absl::StrCat("stats timeline bucket at ", start, " is out of place"));
    }
    // Decode with every check that ForEachPoint, reading only what Apply wrote, skips.
    CodedInputStream stream(reinterpret_cast<const uint8_t*>(in.packed().data()),
                            static_cast<int>(in.packed().size()));
    Fields sum{};
    int64_t at = start;
    for (uint32_t n = 0; n < in.count(); ++n) {
      uint64_t gap = 0, mask = 0;
      if (!stream.ReadVarint64(&gap) || !stream.ReadVarint64(&mask) ||
          gap >= static_cast<uint64_t>(kBucketSeconds) || (n > 0 && gap == 0) ||
          mask == 0 || mask >> kFields != 0) {
        return absl::DataLossError(absl::StrCat("stats timeline bucket at ", start, " does not decode"));
      }
      at += static_cast<int64_t>(gap);
      for (int i = 0; i < kFields; ++i) {
        if (((mask >> i) & 1) == 0) continue;
        uint64_t z = 0;
        if (!stream.ReadVarint64(&z)) {
          return absl::DataLossError(absl::StrCat("stats timeline bucket at ", start, " does not decode"));
        }
        // Wrapping, not undefined, whatever a damaged file holds.
        sum[i] = static_cast<int64_t>(static_cast<uint64_t>(sum[i]) +
                                      static_cast<uint64_t>(WireFormatLite::ZigZagDecode64(z)));
      }
    }
    if (at >= start + kBucketSeconds || stream.CurrentPosition() != static_cast<int>(in.packed().size())) {
      return absl::DataLossError(absl::StrCat("stats timeline bucket at ", start, " does not decode"));
    }
    Bucket& b = timeline->buckets_[start];
    b.sum = FromFields(sum);
    b.count = in.count();
    b.packed = in.packed();
    timeline->points_ += b.count;
    timeline->bytes_ += b.packed.size();
  }
  return timeline;
}

StatsView StatsTimeline::SumUpTo(int64_t t) const {
  StatsView sum;
  const int64_t last = BucketOf(t);
  auto it = buckets_.begin();
  for (; it != buckets_.end() && it->first < last; ++it) AddStats(it->second.sum, +1, &sum);
  if (it != buckets_.end() && it->first == last) {
    Fields total = ToFields(sum);
    ForEachPoint(last, it->second, [&](int64_t at, const Fields& f) {
      if (at > t) return false;
      for (int x = 0; x < kFields; ++x) total[x] += f[x];
      return true;
    });
    sum = FromFields(total);
  }
  return sum;
}

absl::Status FoldEntry(const Rules& rules, const v1::LedgerEntry& entry, v1::LedgerState* state,
                       StatsTimeline* timeline) {
  // Entries of one second go in together: the share at that second has them all, so
  // a state counts only once the clock moves past it.
  if (state->entries() > 0 && entry.effective_at() > state->clock()) {
    ShareSteps(rules, *state, state->clock(), entry.effective_at(), +1,
               [timeline](int64_t at, const StatsView& delta) { timeline->Add(at, delta); });
  }
  return ApplyEntry(rules, entry, state);
}

void AddTail(const Rules& rules, const v1::LedgerState& state, int sign, StatsTimeline* timeline) {
  ShareSteps(rules, state, state.clock(), INT64_MAX, sign,
             [timeline](int64_t at, const StatsView& delta) { timeline->Add(at, delta); });
}

absl::Status FoldIntoTimeline(const Rules& rules,
                              const std::vector<const v1::LedgerEntry*>& entries,
                              v1::LedgerState* state, StatsTimeline* timeline) {
  if (entries.empty()) return absl::OkStatus();
  AddTail(rules, *state, -1, timeline);
  for (const v1::LedgerEntry* e : entries) {
    LOYALTY_RETURN_IF_ERROR(FoldEntry(rules, *e, state, timeline));
  }
  AddTail(rules, *state, +1, timeline);
  return absl::OkStatus();
}

}  // namespace loyalty
