// Key encodings of the event log's column families (docs/log-format.md).
#ifndef LOYALTY_ENGINE_INTERNAL_KEYS_H_
#define LOYALTY_ENGINE_INTERNAL_KEYS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "loyalty/v1/log.pb.h"

namespace loyalty::internal {

inline void PutBigEndian64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}
inline uint64_t GetBigEndian64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

// `log`: the sequence number, big-endian, so that key order is log order.
inline std::string SeqKey(uint64_t seq) {
  std::string k;
  PutBigEndian64(&k, seq);
  return k;
}
inline std::optional<uint64_t> ParseSeqKey(std::string_view k) {
  if (k.size() != 8) return std::nullopt;
  return GetBigEndian64(k);
}

// `customers`: one byte of length, the customer id (at most 255 bytes; ids are
// validated to 128), then the first sequence number of the batch the entry covers.
inline std::string CustomerPrefix(std::string_view customer_id) {
  std::string k;
  k.push_back(static_cast<char>(customer_id.size()));
  k.append(customer_id);
  return k;
}
inline std::string CustomerKey(std::string_view customer_id, uint64_t first_seq) {
  std::string k = CustomerPrefix(customer_id);
  PutBigEndian64(&k, first_seq);
  return k;
}

// `sources`: the resume position of one input source.
//   kafka: "k" topic '\0' partition (big-endian 32)
//   file:  "f" path
std::string SourceKey(const v1::SourcePosition& position);
// Whether SourceKey gives `a` and `b` the same key (one Kafka partition, or one
// file), without building either.
bool SameSource(const v1::SourcePosition& a, const v1::SourcePosition& b);
// `dead_letters`: the exact input position of a dead letter: SourceKey, then for
// kafka the offset (big-endian 64), for files '\0' and the line (big-endian 64).
std::string PositionKey(const v1::SourcePosition& position);

// `dead_letters`, by event id: "e", one byte of length, the id, then the dead
// letter's sequence number (big-endian 64). Source keys start with 'k' or 'f'.
inline std::string DeadLetterEventKey(std::string_view event_id) {
  std::string k = "e";
  k.push_back(static_cast<char>(event_id.size()));
  k.append(event_id);
  return k;
}

}  // namespace loyalty::internal

#endif  // LOYALTY_ENGINE_INTERNAL_KEYS_H_
