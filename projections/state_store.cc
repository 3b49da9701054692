#include "projections/state_store.h"

#include <array>
#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/internal/keys.h"
#include "engine/sha256.h"
#include "engine/status_macros.h"

namespace loyalty {
namespace {

using ProjectionCf = LogBatch::ProjectionCf;

// The head's first byte. A head of projection version 4 or before is the state's
// protobuf itself, whose first byte is a field tag (never 0 or 1): read as such.
constexpr char kInline = 0;   // then the state's bytes
constexpr char kChunked = 1;  // then its size (8 bytes, big-endian) and the chunk ids
constexpr size_t kChunkedHeaderBytes = 1 + 8;

// The rolling hash's table: 256 fixed pseudo-random words (splitmix64 from 0).
// They are part of the encoding: changing them changes every chunked head.
constexpr std::array<uint64_t, 256> MakeGearTable() {
  std::array<uint64_t, 256> table{};
  uint64_t x = 0;
  for (uint64_t& v : table) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return table;
}
constexpr std::array<uint64_t, 256> kGear = MakeGearTable();
// A cut where the hash's top 10 bits are zero: one in 1024 positions. The top bits
// depend on the last 64 bytes (each byte's word is shifted out after 64 steps).
constexpr uint64_t kCutMask = 0xffc0000000000000ULL;

std::string ChunkKey(std::string_view customer_id, std::string_view chunk_id) {
  std::string key;
  key.reserve(customer_id.size() + chunk_id.size());
  key.append(customer_id);
  key.append(chunk_id);
  return key;
}

// A chunked head's size and chunk ids; InvalidArgument if malformed.
absl::Status ParseChunkedHead(std::string_view head, uint64_t* size,
                              std::vector<std::string_view>* ids) {
  if (head.size() < kChunkedHeaderBytes || head[0] != kChunked ||
      (head.size() - kChunkedHeaderBytes) % kStateChunkIdBytes != 0) {
    return absl::InvalidArgumentError("a chunked state head is malformed");
  }
  *size = internal::GetBigEndian64(head.substr(1, 8));
  for (size_t at = kChunkedHeaderBytes; at < head.size(); at += kStateChunkIdBytes) {
    ids->push_back(head.substr(at, kStateChunkIdBytes));
  }
  return absl::OkStatus();
}

}  // namespace

bool EncodedState::IsChunkedHead(std::string_view head) {
  return !head.empty() && head[0] == kChunked;
}

std::vector<size_t> ChunkEnds(std::string_view bytes) {
  std::vector<size_t> ends;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t start = 0;
  while (start < n) {
    const size_t limit = std::min(n, start + kStateChunkMaxBytes);
    size_t end = limit;
    uint64_t h = 0;
    // The hash starts over in each chunk; the bytes before the minimum still feed
    // it, so a cut depends only on the 64 bytes before it.
    for (size_t i = start; i < limit; ++i) {
      h = (h << 1) + kGear[p[i]];
      if (i + 1 - start >= kStateChunkMinBytes && (h & kCutMask) == 0) {
        end = i + 1;
        break;
      }
    }
    ends.push_back(end);
    start = end;
  }
  return ends;
}

EncodedState EncodeState(std::string_view customer_id, std::string_view serialized) {
  EncodedState out;
  if (serialized.size() < kStateInlineBytes) {
    out.head.reserve(1 + serialized.size());
    out.head.push_back(kInline);
    out.head.append(serialized);
    return out;
  }
  const std::vector<size_t> ends = ChunkEnds(serialized);
  out.head.reserve(kChunkedHeaderBytes + ends.size() * kStateChunkIdBytes);
  out.head.push_back(kChunked);
  internal::PutBigEndian64(&out.head, serialized.size());
  out.chunks.reserve(ends.size());
  size_t start = 0;
  for (size_t end : ends) {
    const std::string_view chunk = serialized.substr(start, end - start);
    const Sha256Digest digest = Sha256Of(chunk);
    const std::string_view id(reinterpret_cast<const char*>(digest.data()), kStateChunkIdBytes);
    out.head.append(id);
    out.chunks.emplace_back(ChunkKey(customer_id, id), chunk);
    start = end;
  }
  return out;
}

absl::Status ForEachStateChange(
    const EncodedState& state, std::string_view customer_id, std::string_view previous_head,
    const std::function<void(ProjectionCf, std::string_view, std::string_view)>& put,
    const std::function<void(std::string_view)>& del) {
  absl::flat_hash_set<std::string_view> before;
  std::vector<std::string_view> before_ids;
  if (!previous_head.empty() && previous_head[0] == kChunked) {
    uint64_t size = 0;
    LOYALTY_RETURN_IF_ERROR(ParseChunkedHead(previous_head, &size, &before_ids));
    before.insert(before_ids.begin(), before_ids.end());
  }
  absl::flat_hash_set<std::string_view> now;
  for (const auto& [key, bytes] : state.chunks) {
    const std::string_view id = std::string_view(key).substr(customer_id.size());
    if (!now.insert(id).second || before.contains(id)) continue;  // stored already
    put(ProjectionCf::kStateChunks, key, bytes);
  }
  for (std::string_view id : before) {
    if (!now.contains(id)) del(ChunkKey(customer_id, id));
  }
  put(ProjectionCf::kCustomerState, customer_id, state.head);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> HeadChunkKeys(std::string_view customer_id,
                                                       std::string_view head) {
  std::vector<std::string> keys;
  if (head.empty() || head[0] != kChunked) return keys;
  uint64_t size = 0;
  std::vector<std::string_view> ids;
  LOYALTY_RETURN_IF_ERROR(ParseChunkedHead(head, &size, &ids));
  for (std::string_view id : ids) keys.push_back(ChunkKey(customer_id, id));
  return keys;
}

absl::StatusOr<std::string> StateBytesOfHead(const EventLog& log, std::string_view customer_id,
                                             std::string_view head,
                                             const LogSnapshot* snapshot) {
  if (head.empty()) {
    return absl::DataLossError(absl::StrCat("the state of ", std::string(customer_id), " is empty"));
  }
  if (head[0] == kInline) return std::string(head.substr(1));
  if (head[0] != kChunked) return std::string(head);  // projection version 4 or before
  uint64_t size = 0;
  std::vector<std::string_view> ids;
  if (absl::Status s = ParseChunkedHead(head, &size, &ids); !s.ok()) {
    return absl::DataLossError(absl::StrCat("the state head of ", std::string(customer_id), " is malformed"));
  }
  // A head is at most as large as its chunks allow: a corrupt size is not trusted
  // with an allocation.
  if (size > ids.size() * kStateChunkMaxBytes) {
    return absl::DataLossError(absl::StrCat("the state head of ", std::string(customer_id), " says ",
                                            size, " bytes in ", ids.size(), " chunks"));
  }
  std::string bytes;
  bytes.reserve(size);
  for (std::string_view id : ids) {
    absl::StatusOr<std::string> chunk =
        log.GetProjection(ProjectionCf::kStateChunks, ChunkKey(customer_id, id), snapshot);
    if (absl::IsNotFound(chunk.status())) {
      return absl::DataLossError(absl::StrCat("a chunk of the state of ", std::string(customer_id),
                                              " is missing"));
    }
    LOYALTY_RETURN_IF_ERROR(chunk.status());
    bytes.append(*chunk);
  }
  if (bytes.size() != size) {
    return absl::DataLossError(absl::StrCat("the chunks of the state of ", std::string(customer_id), " hold ",
                                            bytes.size(), " bytes; its head says ", size));
  }
  return bytes;
}

uint64_t StateSizeOfHead(std::string_view head) {
  if (head.empty()) return 0;
  if (head[0] == kInline) return head.size() - 1;
  if (head[0] != kChunked) return head.size();
  return head.size() >= kChunkedHeaderBytes ? internal::GetBigEndian64(head.substr(1, 8)) : 0;
}

absl::StatusOr<std::optional<std::string>> ReadStateBytes(const EventLog& log,
                                                          std::string_view customer_id,
                                                          const LogSnapshot* snapshot) {
  absl::StatusOr<std::string> head =
      log.GetProjection(ProjectionCf::kCustomerState, customer_id, snapshot);
  if (absl::IsNotFound(head.status())) return std::optional<std::string>();
  LOYALTY_RETURN_IF_ERROR(head.status());
  if (!head->empty() && (*head)[0] == kInline) {
    head->erase(0, 1);
    return std::optional<std::string>(*std::move(head));
  }
  LOYALTY_ASSIGN_OR_RETURN(std::string bytes,
                           StateBytesOfHead(log, customer_id, *head, snapshot));
  return std::optional<std::string>(std::move(bytes));
}

absl::Status ScanStateBytes(
    const EventLog& log,
    const std::function<absl::Status(std::string_view, std::string_view)>& fn,
    const LogSnapshot* snapshot, std::string_view start) {
  return log.ScanProjection(
      ProjectionCf::kCustomerState,
      [&](std::string_view key, std::string_view head) -> absl::Status {
        if (!head.empty() && head[0] == kInline) return fn(key, head.substr(1));
        LOYALTY_ASSIGN_OR_RETURN(std::string bytes, StateBytesOfHead(log, key, head, snapshot));
        return fn(key, bytes);
      },
      snapshot, start);
}

}  // namespace loyalty
