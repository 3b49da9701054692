// The synthetic event stream behind `loyalty produce`: a realistic, reproducible
// sequence of input messages for demos, load tests and benchmarks.
//
// Contract:
// - GenerateStream calls `sink` exactly `options.events` times (fewer only if
//   `sink` returns false, which stops it at once). Each call hands over one
//   message: the Kafka key (the event's customer_id; empty when the message is a
//   malformed one that lacks it) and the value bytes. For kJson the value is one
//   line of proto3 JSON for loyalty.v1.Event (lowerCamelCase names, int64 as JSON
//   numbers, occurred_at as RFC 3339 in whole seconds, no newline anywhere); for
//   kProtobuf it is the binary encoding.
// - Deterministic: the same options give the same messages, byte for byte, on
//   every platform (a seeded std::mt19937_64 and integer sampling only). For a
//   given seed, kJson and kProtobuf draw the same random numbers, so their
//   well-formed messages decode to equal events.
// - Well-formed events satisfy every input rule of rules.md section 10 (they may
//   still be rejected by the business rules: WRONG_CURRENCY, UNKNOWN_ORDER,
//   INSUFFICIENT_POINTS, SELF_REFERRAL, ... are produced on purpose). Customer
//   activity is Zipf-skewed (weight 1/rank^1.1), occurred_at advances evenly from
//   `start_unix_seconds` over `span_seconds` with ~3% late events, and never
//   exceeds start + span.
// - About `malformed_share` of the messages are dead-letter material (bytes that
//   do not decode, missing fields, bad amounts, over-long ids, a future
//   timestamp, ...); about `duplicate_share` re-send an earlier well-formed
//   message (same key; in kJson sometimes re-spelled: other field order, int64
//   as strings, fractional seconds -- the same content in other bytes).
// - Memory is O(customers) plus small fixed windows; time is O(log customers)
//   per message.
#ifndef LOYALTY_TOOLS_PRODUCE_H_
#define LOYALTY_TOOLS_PRODUCE_H_

#include <cstdint>
#include <functional>
#include <string_view>

namespace loyalty {

enum class ProduceFormat { kJson, kProtobuf };

struct ProduceOptions {
  uint64_t customers = 10'000;   // distinct customer ids
  uint64_t events = 100'000;     // messages to generate (including malformed ones and duplicates)
  uint64_t seed = 1;
  ProduceFormat format = ProduceFormat::kJson;
  double malformed_share = 0.02;  // share of messages that are deliberately bad input
  double duplicate_share = 0.01;  // share of messages that re-send an earlier message byte for byte
  int64_t start_unix_seconds = 1'735'689'600;  // 2025-01-01T00:00:00Z: occurred_at of the first event
  int64_t span_seconds = 365LL * 86400;        // occurred_at spread over this span
};

// `customers` is clamped to [1, kMaxProduceCustomers] (the activity table takes
// 8 bytes per customer); a negative `span_seconds` counts as 0; shares are
// clamped to [0, 1] (malformed first, duplicates get what is left).
inline constexpr uint64_t kMaxProduceCustomers = 100'000'000;

// One generated message: Kafka key (the customer_id, or for a malformed message possibly empty) and value bytes.
// For kJson the value is one line of proto3 JSON (no trailing newline); for kProtobuf the binary encoding.
// Deterministic: the same options give the same sequence, byte for byte.
// `sink` returns false to stop early.
void GenerateStream(const ProduceOptions& options,
                    const std::function<bool(std::string_view key, std::string_view value)>& sink);

}  // namespace loyalty

#endif  // LOYALTY_TOOLS_PRODUCE_H_
