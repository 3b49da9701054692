// How customer states are stored (docs/log-format.md, "Customer states").
//
// A state is its deterministic protobuf encoding. One under kStateInlineBytes is
// stored whole as its customer_state value. A larger one is cut into
// content-defined chunks: a rolling hash of the last 64 bytes picks the cut
// points, so a change moves only the cuts around it, and the chunks before and
// after it stay byte for byte the same. Each chunk is stored in state_chunks under
// the customer id followed by its chunk id (the first 16 bytes of its SHA-256),
// and the customer_state value, the head, lists the chunk ids in order.
//
// A batch that changes a large state writes its head and only the chunks the
// previous head did not name, and deletes those the new head no longer names. A
// busy customer's state holds a year of orders and lots (850 KB for the busiest
// of a 10M-event stream) and changes in a few places per batch: the new orders
// and lots at the end of their columns, the lots drawn at the front. Written
// whole, these states were most of each batch's bytes (docs/benchmarks.md, run S).
//
// The encoding is a function of the state's bytes alone, so a rebuild or an audit
// that encodes the same state gets the same head and chunks.
#ifndef LOYALTY_PROJECTIONS_STATE_STORE_H_
#define LOYALTY_PROJECTIONS_STATE_STORE_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/event_log.h"

namespace loyalty {

// States of at least this many bytes are stored as chunks.
inline constexpr size_t kStateInlineBytes = 8192;
// Chunk sizes: no cut before the minimum, always one at the maximum, and on
// average about kStateChunkMinBytes + 1 KiB in between.
inline constexpr size_t kStateChunkMinBytes = 1024;
inline constexpr size_t kStateChunkMaxBytes = 8192;
inline constexpr size_t kStateChunkIdBytes = 16;

// A state as written: its head, and its chunks in order (none when inline).
struct EncodedState {
  std::string head;
  // state_chunks key (customer id, then chunk id) and the chunk's bytes, a view
  // into the `serialized` given to EncodeState.
  std::vector<std::pair<std::string, std::string_view>> chunks;
  bool chunked() const { return !chunks.empty(); }
  // Whether a stored head is of a state stored as chunks.
  static bool IsChunkedHead(std::string_view head);
};

EncodedState EncodeState(std::string_view customer_id, std::string_view serialized);

// The cut points EncodeState uses: the end offset of each chunk of `bytes`.
std::vector<size_t> ChunkEnds(std::string_view bytes);

// What storing `state` changes, given the head stored before it (empty if none):
// put(cf, key, value) for the head and each chunk the previous head does not
// name, del(key) for each state_chunks key only the previous head names.
// InvalidArgument if `previous_head` is malformed (nothing is called then).
absl::Status ForEachStateChange(
    const EncodedState& state, std::string_view customer_id, std::string_view previous_head,
    const std::function<void(LogBatch::ProjectionCf, std::string_view, std::string_view)>& put,
    const std::function<void(std::string_view)>& del);

// The state_chunks keys a head names, in order; empty for an inline head.
absl::StatusOr<std::vector<std::string>> HeadChunkKeys(std::string_view customer_id,
                                                       std::string_view head);

// The state bytes a stored head stands for, reading its chunks. DataLoss if the
// head is malformed or a chunk is missing or of the wrong total size.
absl::StatusOr<std::string> StateBytesOfHead(const EventLog& log, std::string_view customer_id,
                                             std::string_view head,
                                             const LogSnapshot* snapshot = nullptr);

// The size of the state bytes a head stands for, without reading its chunks (0 if
// the head is malformed).
uint64_t StateSizeOfHead(std::string_view head);

// A customer's stored state bytes; nullopt if it has none.
absl::StatusOr<std::optional<std::string>> ReadStateBytes(const EventLog& log,
                                                          std::string_view customer_id,
                                                          const LogSnapshot* snapshot = nullptr);

// Calls fn(customer id, state bytes) for every stored state in customer id order,
// from `start` on, until fn returns an error.
absl::Status ScanStateBytes(
    const EventLog& log,
    const std::function<absl::Status(std::string_view, std::string_view)>& fn,
    const LogSnapshot* snapshot = nullptr, std::string_view start = {});

}  // namespace loyalty

#endif  // LOYALTY_PROJECTIONS_STATE_STORE_H_
