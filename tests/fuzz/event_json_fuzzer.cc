// DecodeEvent on arbitrary bytes as proto3 JSON: never crashes; whatever decodes
// survives both round trips (fuzz_check.h). And the bytes cut at newlines into
// lines, DecodeJsonEvents (many lines as one document) gives for every line what
// DecodeEvent gives for it alone.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/event_codec.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  loyalty::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> lines;
  for (size_t from = 0; from <= raw.size();) {
    const size_t end = std::min(raw.find('\n', from), raw.size());
    lines.push_back(raw.substr(from, end - from));
    from = end + 1;
  }
  const auto together = loyalty::DecodeJsonEvents(lines);
  FUZZ_CHECK(together.size() == lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto alone = loyalty::DecodeEvent(lines[i], loyalty::v1::ENCODING_JSON);
    FUZZ_CHECK(together[i].ok() == alone.ok());
    FUZZ_CHECK(alone.ok() ? loyalty::SerializeDeterministic(*together[i]) ==
                                loyalty::SerializeDeterministic(*alone)
                          : together[i].status() == alone.status());
  }

  auto event = loyalty::DecodeEvent(raw, loyalty::v1::ENCODING_JSON);
  if (!event.ok()) {
    FUZZ_CHECK(event.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  loyalty::fuzz::CheckRoundTrips(*event);
  return 0;
}
