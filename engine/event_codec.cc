#include "engine/event_codec.h"

#include "absl/strings/str_cat.h"
#include "engine/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace loyalty {

v1::Encoding DetectEncoding(std::string_view raw, bool json_content_type) {
  if (json_content_type) return v1::ENCODING_JSON;
  for (char c : raw) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{' ? v1::ENCODING_JSON : v1::ENCODING_PROTOBUF;
  }
  return v1::ENCODING_PROTOBUF;
}

absl::StatusOr<v1::Event> DecodeEvent(std::string_view raw, v1::Encoding encoding) {
  v1::Event event;
  if (encoding == v1::ENCODING_JSON) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(raw.data(), raw.size()), &event, options);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("JSON does not decode as loyalty.v1.Event: ",
                       std::string(status.message())));
    }
  } else {
    if (!event.ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
      return absl::InvalidArgumentError(
          "bytes do not decode as a protobuf loyalty.v1.Event");
    }
    event.DiscardUnknownFields();
  }
  if (event.has_occurred_at()) {
    const auto& ts = event.occurred_at();
    if (ts.seconds() < google::protobuf::util::TimeUtil::kTimestampMinSeconds ||
        ts.seconds() > google::protobuf::util::TimeUtil::kTimestampMaxSeconds ||
        ts.nanos() < 0 || ts.nanos() > 999'999'999) {
      return absl::InvalidArgumentError(
          "occurred_at is not a valid timestamp (years 0001 to 9999)");
    }
  }
  return event;
}

std::string SerializeDeterministic(const google::protobuf::Message& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return a.GetDescriptor() == b.GetDescriptor() &&
         SerializeDeterministic(a) == SerializeDeterministic(b);
}

absl::StatusOr<v1::Event> RecordEvent(const v1::LogRecord& record) {
  if (!record.has_applied()) return absl::InvalidArgumentError("not an applied event");
  if (record.applied().has_event()) return record.applied().event();
  return DecodeEvent(record.raw(), v1::ENCODING_PROTOBUF);
}

std::string CanonicalEncoding(const v1::Event& event) {
  // Unknown fields never reach here: DecodeEvent drops them (JSON ignores them,
  // binary clears them), so the deterministic encoding is canonical.
  return SerializeDeterministic(event);
}

std::string ContentDigest(std::string_view canonical_encoding) {
  Sha256Digest d = Sha256Of(canonical_encoding);
  return std::string(reinterpret_cast<const char*>(d.data()), kContentDigestBytes);
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  // Printing a valid in-memory message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace loyalty
