// DecodeEvent on arbitrary bytes as proto3 JSON: never crashes; whatever decodes
// survives both round trips (fuzz_check.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/event_codec.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  loyalty::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  auto event = loyalty::DecodeEvent(raw, loyalty::v1::ENCODING_JSON);
  if (!event.ok()) {
    FUZZ_CHECK(event.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  loyalty::fuzz::CheckRoundTrips(*event);
  return 0;
}
