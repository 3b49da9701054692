// Decoding input bytes into loyalty.v1.Event, and the event's content identity.
#ifndef LOYALTY_ENGINE_EVENT_CODEC_H_
#define LOYALTY_ENGINE_EVENT_CODEC_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "google/protobuf/message.h"
#include "loyalty/v1/event.pb.h"
#include "loyalty/v1/log.pb.h"

namespace loyalty {

// JSON when the first non-blank byte is '{' or the producer said
// `content-type: application/json`; protobuf otherwise (interfaces.md).
v1::Encoding DetectEncoding(std::string_view raw, bool json_content_type);

// Decodes `raw` as `encoding`. Unknown fields are ignored (forward compatibility).
// InvalidArgument, with what was wrong, when the bytes do not decode, a value has
// the wrong type, or the timestamp is not a valid RFC 3339 time.
absl::StatusOr<v1::Event> DecodeEvent(std::string_view raw, v1::Encoding encoding);

// DecodeEvent(raw, ENCODING_JSON) of each of `raws`, with the same events and the
// same errors, in less time: protobuf's JSON parser builds its view of the Event
// type for every document, about 40% of the time a line takes alone, so lines
// are parsed kJsonEventsPerDocument at a time as one document (an
// EventList). A line that is not plainly one object is decoded alone, and so is
// each line of a document that fails.
std::vector<absl::StatusOr<v1::Event>> DecodeJsonEvents(absl::Span<const std::string_view> raws);
inline constexpr size_t kJsonEventsPerDocument = 64;

// The event an applied record holds: its stored copy, or its raw bytes decoded
// when they are the event's canonical protobuf encoding and no copy is kept.
absl::StatusOr<v1::Event> RecordEvent(const v1::LogRecord& record);

// The deterministic protobuf encoding of `event` without unknown fields: equal
// events (rules.md section 10: "the same content") have equal encodings.
std::string CanonicalEncoding(const v1::Event& event);

// The first 16 bytes of SHA-256 over the canonical encoding.
std::string ContentDigest(std::string_view canonical_encoding);
inline constexpr size_t kContentDigestBytes = 16;

// Deterministic serialization of any message (maps in key order), for everything
// that is hashed or compared byte for byte.
std::string SerializeDeterministic(const google::protobuf::Message& message);

// Whether two messages of one type hold the same fields, by their deterministic
// serializations: what MessageDifferencer::Equals says for the engine's messages (no
// floating-point fields), at a fraction of its cost (it walks them by reflection,
// and replay compares every record's outcome and signals).
bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b);

// Proto3 JSON of `message` (lowerCamelCase names, every primitive field printed).
std::string ToJson(const google::protobuf::Message& message);

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_EVENT_CODEC_H_
