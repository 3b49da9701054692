#include "engine/internal/keys.h"

namespace loyalty::internal {

std::string SourceKey(const v1::SourcePosition& position) {
  std::string k;
  if (position.has_kafka()) {
    k.push_back('k');
    k.append(position.kafka().topic());
    k.push_back('\0');
    const uint32_t p = static_cast<uint32_t>(position.kafka().partition());
    for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<char>(p >> shift));
  } else {
    k.push_back('f');
    k.append(position.file().path());
  }
  return k;
}

bool SameSource(const v1::SourcePosition& a, const v1::SourcePosition& b) {
  if (a.has_kafka() != b.has_kafka()) return false;
  if (a.has_kafka()) {
    return a.kafka().partition() == b.kafka().partition() && a.kafka().topic() == b.kafka().topic();
  }
  return a.file().path() == b.file().path();
}

std::string PositionKey(const v1::SourcePosition& position) {
  std::string k = SourceKey(position);
  if (position.has_kafka()) {
    PutBigEndian64(&k, static_cast<uint64_t>(position.kafka().offset()));
  } else {
    k.push_back('\0');
    PutBigEndian64(&k, position.file().line());
  }
  return k;
}

}  // namespace loyalty::internal
