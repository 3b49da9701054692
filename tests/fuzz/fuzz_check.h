// What every fuzz target shares: a check that aborts (libFuzzer then keeps the
// input as a crash reproducer) and the round-trip properties of a decoded event.
#ifndef LOYALTY_TESTS_FUZZ_FUZZ_CHECK_H_
#define LOYALTY_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/event_codec.h"
#include "google/protobuf/stubs/logging.h"
#include "loyalty/v1/event.pb.h"

// Unlike assert(), always on: a property that fails is a finding.
#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

namespace loyalty::fuzz {

// Protobuf logs every string field with invalid UTF-8 it refuses: silence it, or
// the log (not the code) dominates each run.
inline void QuietProtobuf() { google::protobuf::SetLogHandler(nullptr); }

// A decoded event is "the same content" in every encoding (interfaces.md, rules.md
// section 10): its canonical bytes decode back to the same canonical bytes, and so
// does the JSON the engine prints for it.
inline void CheckRoundTrips(const v1::Event& event) {
  const std::string canonical = CanonicalEncoding(event);
  auto from_binary = DecodeEvent(canonical, v1::ENCODING_PROTOBUF);
  FUZZ_CHECK(from_binary.ok());
  FUZZ_CHECK(CanonicalEncoding(*from_binary) == canonical);
  const std::string json = ToJson(event);
  FUZZ_CHECK(DetectEncoding(json, false) == v1::ENCODING_JSON);
  auto from_json = DecodeEvent(json, v1::ENCODING_JSON);
  FUZZ_CHECK(from_json.ok());
  FUZZ_CHECK(CanonicalEncoding(*from_json) == canonical);
}

}  // namespace loyalty::fuzz

#endif  // LOYALTY_TESTS_FUZZ_FUZZ_CHECK_H_
