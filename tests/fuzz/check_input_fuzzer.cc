// CheckInput, the verdict of the ingest path and of the audit, on arbitrary bytes
// (JSON or protobuf as the first byte says, as for a Kafka value): never crashes,
// always names a reason for a dead letter, and a verdict of "ok" is stable: the
// canonical bytes it keeps get the same verdict and digest again.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "engine/event_codec.h"
#include "engine/ingestor.h"
#include "engine/validation.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// A fixed engine clock, 2026-02-01T00:00:00Z: the corpus's times sit around it, so
// that both sides of the 24-hour future limit are reachable.
const absl::Time kClock = absl::FromUnixSeconds(1769904000);

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  loyalty::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loyalty;
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const v1::Encoding encoding = DetectEncoding(raw, false);
  const InputVerdict v = CheckInput(raw, encoding, 0, kClock);
  if (!v.ok) {
    FUZZ_CHECK(v.rejection.reason != v1::DEAD_LETTER_REASON_UNSPECIFIED);
    FUZZ_CHECK(!v.rejection.detail.empty());
    FUZZ_CHECK(!DeadLetterReasonName(v.rejection.reason).empty());
    FUZZ_CHECK((v.rejection.reason == v1::UNDECODABLE) != DecodeEvent(raw, encoding).ok());
    return 0;
  }
  FUZZ_CHECK(v.digest.size() == kContentDigestBytes);
  FUZZ_CHECK(v.digest == ContentDigest(v.canonical));
  FUZZ_CHECK(!ValidateEvent(v.event, kClock).has_value());
  const InputVerdict again = CheckInput(v.canonical, v1::ENCODING_PROTOBUF, 0, kClock);
  FUZZ_CHECK(again.ok);
  FUZZ_CHECK(again.canonical == v.canonical);
  FUZZ_CHECK(again.digest == v.digest);
  fuzz::CheckRoundTrips(v.event);
  return 0;
}
