// Tests of the ingest pipeline: every dead-letter case of rules.md section 10,
// duplicates and conflicts by event_id, and what a dead letter keeps.
#include "engine/ingestor.h"

#include <catch2/catch.hpp>

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "tests/testing/stderr_capture.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

// 2026-01-10T00:00:00Z: the engine clock in these tests.
const absl::Time kNow = absl::FromUnixSeconds(1768003200);

class Harness {
 public:
  Harness() : clock_(kNow) {
    LogOptions options;
    options.data_dir = dir_.path();
    options.sync_writes = false;
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    log_ = std::move(*log);
    ingestor_ = std::make_unique<Ingestor>(log_.get(), &clock_);
  }

  // Ingests the lines as one batch, at file lines next_line_, next_line_+1, ...
  IngestCounts Ingest(const std::vector<std::string>& lines, bool json_header = false) {
    std::vector<InputMessage> batch;
    for (const auto& l : lines) {
      InputMessage m;
      m.raw = l;
      m.json_content_type = json_header;
      m.source.mutable_file()->set_path("test.jsonl");
      m.source.mutable_file()->set_line(next_line_++);
      batch.push_back(std::move(m));
    }
    auto counts = ingestor_->IngestBatch(batch);
    REQUIRE(counts.ok());
    return *counts;
  }

  v1::LogRecord Last() {
    auto r = log_->Read(log_->head().seq);
    REQUIRE(r.ok());
    return *r;
  }

  EventLog& log() { return *log_; }
  ManualClock& clock() { return clock_; }

 private:
  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<Ingestor> ingestor_;
  uint64_t next_line_ = 1;
};

const char kPurchase[] =
    R"({"eventId":"e-1","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z",)"
    R"("purchase":{"orderId":"o-1","amountMinor":12550,"currency":"EUR"}})";

TEST_CASE("a valid event is applied and keeps its raw bytes, source and clock reading") {
  // Proves: the record holds the input as received, the decoded event, where it came
  // from and the engine clock reading used for validation.
  Harness h;
  IngestCounts c = h.Ingest({kPurchase});
  REQUIRE(c.applied == 1);
  REQUIRE(c.dead_letters == 0);
  v1::LogRecord r = h.Last();
  REQUIRE(r.seq() == 1);
  REQUIRE(r.raw() == kPurchase);
  REQUIRE(r.encoding() == v1::ENCODING_JSON);
  REQUIRE(r.source().file().path() == "test.jsonl");
  REQUIRE(r.source().file().line() == 1);
  REQUIRE(r.ingested_at().seconds() == absl::ToUnixSeconds(kNow));
  REQUIRE(r.has_applied());
  REQUIRE(r.applied().event().purchase().amount_minor() == 12550);
  REQUIRE(*h.log().CustomerSeqs("c-1") == std::vector<uint64_t>{1});
}

struct BadCase {
  const char* name;
  std::string line;
  v1::DeadLetterReason reason;
};

std::string Ev(const std::string& head, const std::string& payload) {
  return absl::StrCat("{", head, payload, "}");
}
const std::string kHead =
    R"("eventId":"e-9","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z",)";

TEST_CASE("every bad-input case of rules.md section 10 is a dead letter with its reason") {
  // Proves: each case is stored as a dead letter with the expected stable reason and
  // the original bytes, and nothing is applied.
  const std::string long_id(129, 'x');
  const std::string id128(128, 'y');
  std::vector<BadCase> cases = {
      {"not JSON", R"({"eventId": "e-9", )", v1::UNDECODABLE},
      {"garbage bytes", std::string("\x08\x96\x01\xff\xff", 5), v1::UNDECODABLE},
      {"int64 of the wrong type",
       Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":"abc","currency":"EUR"})"),
       v1::UNDECODABLE},
      {"timestamp that does not parse",
       R"({"eventId":"e-9","customerId":"c-1","occurredAt":"yesterday","adjustment":{"points":5}})",
       v1::UNDECODABLE},
      {"too large",
       Ev(kHead, absl::StrCat(R"("adjustment":{"points":5,"reason":")",
                              std::string(70 * 1024, 'r'), R"("})")),
       v1::MESSAGE_TOO_LARGE},
      {"missing event_id",
       R"({"customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":5}})",
       v1::MISSING_EVENT_ID},
      {"missing customer_id",
       R"({"eventId":"e-9","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":5}})",
       v1::MISSING_CUSTOMER_ID},
      {"missing occurred_at", R"({"eventId":"e-9","customerId":"c-1","adjustment":{"points":5}})",
       v1::MISSING_OCCURRED_AT},
      {"no payload", R"({"eventId":"e-9","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z"})",
       v1::MISSING_PAYLOAD},
      {"empty order_id", Ev(kHead, R"("purchase":{"amountMinor":100,"currency":"EUR"})"),
       v1::MISSING_FIELD},
      {"empty currency", Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":100})"),
       v1::MISSING_FIELD},
      {"refund empty order_id", Ev(kHead, R"("refund":{"amountMinor":100})"), v1::MISSING_FIELD},
      {"empty referrer_id", Ev(kHead, R"("referral":{"refereeId":"c-1"})"), v1::MISSING_FIELD},
      {"empty referee_id", Ev(kHead, R"("referral":{"referrerId":"c-2"})"), v1::MISSING_FIELD},
      {"empty redemption_id", Ev(kHead, R"("redemption":{"points":5,"rewardId":"r"})"),
       v1::MISSING_FIELD},
      {"cancel empty redemption_id", Ev(kHead, R"("redemptionCancel":{})"), v1::MISSING_FIELD},
      {"event_id over 128 bytes",
       absl::StrCat(R"({"eventId":")", long_id,
                    R"(","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":5}})"),
       v1::ID_TOO_LONG},
      {"customer_id over 128 bytes",
       absl::StrCat(R"({"eventId":"e-9","customerId":")", long_id,
                    R"(","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":5}})"),
       v1::ID_TOO_LONG},
      {"order_id over 128 bytes",
       Ev(kHead, absl::StrCat(R"("purchase":{"orderId":")", long_id,
                              R"(","amountMinor":100,"currency":"EUR"})")),
       v1::ID_TOO_LONG},
      {"refund order_id over 128 bytes",
       Ev(kHead, absl::StrCat(R"("refund":{"orderId":")", long_id, R"(","amountMinor":100})")),
       v1::ID_TOO_LONG},
      {"referrer_id over 128 bytes",
       Ev(kHead, absl::StrCat(R"("referral":{"referrerId":")", long_id,
                              R"(","refereeId":"c-1"})")),
       v1::ID_TOO_LONG},
      {"redemption_id over 128 bytes",
       Ev(kHead, absl::StrCat(R"("redemption":{"redemptionId":")", long_id,
                              R"(","points":5})")),
       v1::ID_TOO_LONG},
      {"reward_id over 128 bytes",
       Ev(kHead, absl::StrCat(R"("redemption":{"redemptionId":"r","points":5,"rewardId":")",
                              long_id, R"("})")),
       v1::ID_TOO_LONG},
      {"sku over 128 bytes",
       Ev(kHead, absl::StrCat(R"("purchase":{"orderId":"o","amountMinor":100,"currency":"EUR",)",
                              R"("lines":[{"sku":")", long_id,
                              R"(","category":"x","amountMinor":100}]})")),
       v1::ID_TOO_LONG},
      {"purchase amount 0", Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":0,"currency":"EUR"})"),
       v1::NON_POSITIVE_AMOUNT},
      {"purchase amount negative",
       Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":-5,"currency":"EUR"})"),
       v1::NON_POSITIVE_AMOUNT},
      {"refund amount 0", Ev(kHead, R"("refund":{"orderId":"o","amountMinor":0})"),
       v1::NON_POSITIVE_AMOUNT},
      {"redemption points 0", Ev(kHead, R"("redemption":{"redemptionId":"r","points":0})"),
       v1::NON_POSITIVE_POINTS},
      {"redemption points negative",
       Ev(kHead, R"("redemption":{"redemptionId":"r","points":-3})"), v1::NON_POSITIVE_POINTS},
      {"adjustment points 0", Ev(kHead, R"("adjustment":{"points":0,"reason":"x"})"),
       v1::ZERO_POINTS},
      {"line with negative amount",
       Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":100,"currency":"EUR","lines":[)"
                 R"({"sku":"a","amountMinor":150},{"sku":"b","amountMinor":-50}]})"),
       v1::NEGATIVE_LINE_AMOUNT},
      {"lines that do not sum",
       Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":100,"currency":"EUR","lines":[)"
                 R"({"sku":"a","amountMinor":60},{"sku":"b","amountMinor":30}]})"),
       v1::LINES_SUM_MISMATCH},
      {"lines that overflow int64",
       Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":1000,"currency":"EUR",)"
                 R"("lines":[{"amountMinor":9223372036854775807},{"amountMinor":9223372036854775807}]})"),
       v1::LINES_SUM_MISMATCH},
      {"purchase amount over 10^12",
       Ev(kHead, R"("purchase":{"orderId":"o","amountMinor":1000000000001,"currency":"EUR"})"),
       v1::AMOUNT_TOO_LARGE},
      {"refund amount over 10^12",
       Ev(kHead, R"("refund":{"orderId":"o","amountMinor":"9223372036854775807"})"),
       v1::AMOUNT_TOO_LARGE},
      {"redemption points over 10^12",
       Ev(kHead, R"("redemption":{"redemptionId":"r","points":1000000000001})"),
       v1::POINTS_TOO_LARGE},
      {"adjustment points under -10^12",
       Ev(kHead, R"("adjustment":{"points":"-9223372036854775808"})"), v1::POINTS_TOO_LARGE},
      {"referee is not the customer",
       Ev(kHead, R"("referral":{"referrerId":"c-2","refereeId":"c-3"})"),
       v1::REFEREE_NOT_CUSTOMER},
      {"occurred_at over 24 h ahead",
       R"({"eventId":"e-9","customerId":"c-1","occurredAt":"2026-01-11T00:00:01Z","adjustment":{"points":5}})",
       v1::OCCURRED_IN_FUTURE},
  };
  for (const auto& bad : cases) {
    SECTION(bad.name) {
      Harness h;
      IngestCounts c = h.Ingest({bad.line});
      REQUIRE(c.applied == 0);
      REQUIRE(c.dead_letters == 1);
      v1::LogRecord r = h.Last();
      REQUIRE(r.has_dead_letter());
      CHECK(v1::DeadLetterReason_Name(r.dead_letter().reason()) ==
            v1::DeadLetterReason_Name(bad.reason));
      REQUIRE_FALSE(r.dead_letter().detail().empty());
      REQUIRE(r.raw() == bad.line);  // the original bytes, never lost
    }
  }
  SECTION("ids of exactly 128 bytes and exactly 24 h ahead are accepted") {
    Harness h;
    IngestCounts c = h.Ingest({absl::StrCat(
        R"({"eventId":")", id128, R"(","customerId":")", id128,
        R"(","occurredAt":"2026-01-11T00:00:00Z","adjustment":{"points":-5}})")});
    REQUIRE(c.applied == 1);
  }
}

TEST_CASE("the same content in another spelling is a duplicate, not a conflict") {
  // Proves: "same content" compares decoded events: field order, int64 as string,
  // fractional zero seconds, unknown fields, JSON vs protobuf make no difference.
  Harness h;
  REQUIRE(h.Ingest({kPurchase}).applied == 1);
  const std::vector<std::string> same = {
      R"({"purchase":{"currency":"EUR","amountMinor":"12550","orderId":"o-1"},"occurredAt":"2026-01-05T10:00:00.000Z","customerId":"c-1","eventId":"e-1"})",
      R"({"event_id":"e-1","customer_id":"c-1","occurred_at":"2026-01-05T10:00:00Z","source":"","purchase":{"order_id":"o-1","amount_minor":12550,"currency":"EUR"},"future_field":{"x":1}})",
  };
  IngestCounts c = h.Ingest(same);
  REQUIRE(c.duplicates == 2);
  REQUIRE(c.appended() == 0);
  // Protobuf encoding of the same event.
  auto ev = DecodeEvent(kPurchase, v1::ENCODING_JSON);
  REQUIRE(ev.ok());
  std::string bin;
  REQUIRE(ev->SerializeToString(&bin));
  REQUIRE(h.Ingest({bin}).duplicates == 1);
  REQUIRE(h.log().head().seq == 1);
}

TEST_CASE("a repeat is compared with a stored event kept only as its raw protobuf") {
  // Proves: the event-id index keeps only the record's sequence number; a later
  // batch's repeat is compared with the event decoded from the stored record, also
  // when the record keeps no copy of it (raw was the canonical protobuf encoding).
  Harness h;
  auto ev = DecodeEvent(kPurchase, v1::ENCODING_JSON);
  REQUIRE(ev.ok());
  const std::string bin = CanonicalEncoding(*ev);
  REQUIRE(h.Ingest({bin}).applied == 1);
  REQUIRE_FALSE(h.Last().applied().has_event());
  REQUIRE(h.Ingest({kPurchase}).duplicates == 1);
  v1::Event changed = *ev;
  changed.mutable_purchase()->set_amount_minor(12551);
  IngestCounts c = h.Ingest({CanonicalEncoding(changed)});
  REQUIRE(c.dead_letters_by_reason[v1::EVENT_ID_CONFLICT] == 1);
  REQUIRE(h.log().head().seq == 2);
}

TEST_CASE("same event_id with different content is EVENT_ID_CONFLICT, in and across batches") {
  // Proves: the id is reserved by the first applied event; a different body with the
  // same id is a dead letter whether it comes in the same batch or later.
  Harness h;
  const std::string other =
      R"({"eventId":"e-1","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z","purchase":{"orderId":"o-1","amountMinor":12551,"currency":"EUR"}})";
  IngestCounts c = h.Ingest({kPurchase, other, kPurchase});
  REQUIRE(c.applied == 1);
  REQUIRE(c.dead_letters == 1);
  REQUIRE(c.duplicates == 1);
  REQUIRE(c.dead_letters_by_reason[v1::EVENT_ID_CONFLICT] == 1);
  IngestCounts later = h.Ingest({other});
  REQUIRE(later.dead_letters_by_reason[v1::EVENT_ID_CONFLICT] == 1);
  REQUIRE(h.Last().dead_letter().reason() == v1::EVENT_ID_CONFLICT);
}

TEST_CASE("a dead letter does not reserve its event_id: a corrected resend is applied") {
  // Proves: rules.md section 10, "does not reserve its event_id".
  Harness h;
  const std::string bad =
      R"({"eventId":"e-1","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z","purchase":{"orderId":"o-1","amountMinor":0,"currency":"EUR"}})";
  REQUIRE(h.Ingest({bad}).dead_letters == 1);
  REQUIRE(h.Ingest({kPurchase}).applied == 1);
}

TEST_CASE("a JSON dead letter that names its event_id is found by it") {
  // A checkout that published a malformed event learns it was dead-lettered.
  Harness h;
  const std::string bad =
      R"({"eventId":"e-9","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z","redemption":{"redemptionId":"r","points":"ten"}})";
  REQUIRE(h.Ingest({bad}).dead_letters == 1);
  CHECK(h.Last().dead_letter().reason() == v1::UNDECODABLE);
  auto found = h.log().DeadLettersOf("e-9");
  REQUIRE(found.ok());
  CHECK(*found == std::vector<uint64_t>{h.log().head().seq});
  // Not JSON at all: no id to keep, nothing indexed.
  REQUIRE(h.Ingest({R"({"eventId":"e-10",)"}).dead_letters == 1);
  auto none = h.log().DeadLettersOf("e-10");
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("the future check uses the clock reading at ingest") {
  // Proves: the same event is a dead letter before the clock reaches it and applied
  // once the clock is within 24 hours.
  Harness h;
  const std::string ahead =
      R"({"eventId":"e-2","customerId":"c-1","occurredAt":"2026-01-12T00:00:00Z","adjustment":{"points":5}})";
  REQUIRE(h.Ingest({ahead}).dead_letters == 1);
  h.clock().Advance(absl::Hours(24));
  REQUIRE(h.Ingest({ahead}).applied == 1);
}

TEST_CASE("JSON is detected by its first byte or by the content-type header") {
  // Proves: leading blanks before '{' still mean JSON, and the header forces JSON
  // (so its failure to decode is reported as JSON).
  Harness h;
  REQUIRE(h.Ingest({std::string("  \t") + kPurchase}).applied == 1);
  REQUIRE(h.Last().encoding() == v1::ENCODING_JSON);
  IngestCounts c = h.Ingest({"not json at all"}, /*json_header=*/true);
  REQUIRE(c.dead_letters == 1);
  REQUIRE(h.Last().encoding() == v1::ENCODING_JSON);
}

TEST_CASE("a canonical protobuf input is stored once, not twice") {
  // Proves: an applied record omits the decoded event when the raw bytes already are
  // its canonical encoding, and keeps it otherwise.
  Harness h;
  auto ev = DecodeEvent(kPurchase, v1::ENCODING_JSON);
  REQUIRE(ev.ok());
  REQUIRE(h.Ingest({CanonicalEncoding(*ev)}).applied == 1);
  v1::LogRecord r = h.Last();
  REQUIRE(r.encoding() == v1::ENCODING_PROTOBUF);
  REQUIRE(r.has_applied());
  REQUIRE_FALSE(r.applied().has_event());
}

TEST_CASE("a protobuf string that is not UTF-8 is a dead letter naming the field and prints nothing") {
  // Protobuf's parser says which field only in its log (stderr): the dead letter
  // says it instead, and a stream of such inputs does not flood stderr.
  auto ev = DecodeEvent(kPurchase, v1::ENCODING_JSON);
  REQUIRE(ev.ok());
  std::string bytes = CanonicalEncoding(*ev);
  const size_t at = bytes.find("EUR");
  REQUIRE(at != std::string::npos);
  bytes.replace(at, 2, "\xff\xfe");  // same length, not UTF-8

  Harness h;
  IngestCounts counts;
  const std::string printed = testing::CaptureStderr([&] { counts = h.Ingest({bytes}); });
  CHECK(printed.empty());

  REQUIRE(counts.dead_letters == 1);
  const v1::LogRecord r = h.Last();
  REQUIRE(r.has_dead_letter());
  CHECK(r.dead_letter().reason() == v1::UNDECODABLE);
  CHECK(r.dead_letter().detail() ==
        "bytes do not decode as a protobuf loyalty.v1.Event: String field "
        "'loyalty.v1.Purchase.currency' contains invalid UTF-8 data");
  // Bytes that are not protobuf at all: the plain text.
  auto bad = DecodeEvent(std::string("\x0a\xff\xff\xff", 4), v1::ENCODING_PROTOBUF);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == "bytes do not decode as a protobuf loyalty.v1.Event");
}

TEST_CASE("the same dead letter at the same position is not logged twice") {
  // Proves: re-reading a source (a file ingested again) does not duplicate its dead
  // letters, while the same bad bytes at another position are logged again.
  Harness h;
  std::vector<InputMessage> batch(1);
  batch[0].raw = "garbage";
  batch[0].source.mutable_file()->set_path("f");
  batch[0].source.mutable_file()->set_line(7);
  ManualClock clock(kNow);
  Ingestor ingestor(&h.log(), &clock);
  REQUIRE(ingestor.IngestBatch(batch)->dead_letters == 1);
  REQUIRE(ingestor.IngestBatch(batch)->repeated_dead_letters == 1);
  batch[0].source.mutable_file()->set_line(8);
  REQUIRE(ingestor.IngestBatch(batch)->dead_letters == 1);
  REQUIRE(h.log().head().seq == 2);
}

TEST_CASE("decoding JSON lines together gives what decoding each alone gives") {
  // Proves: DecodeJsonEvents, which parses many lines as one document, returns for
  // every line the event or the error DecodeEvent returns for it alone, whatever
  // the lines hold: lines that try to leave their array element, brackets and
  // quotes inside strings, single quotes, deep nesting, type errors, bad times.
  const std::string head =
      R"("eventId":"e-1","customerId":"c-1","occurredAt":"2026-01-05T10:00:00Z")";
  std::vector<std::string> lines = {
      absl::StrCat("{", head, R"(,"purchase":{"orderId":"o-1","amountMinor":100,"currency":"EUR"}})"),
      absl::StrCat("  {", head, R"(,"adjustment":{"points":5,"reason":"} ] { [ \" \\","actor":"a"}}  )"),
      absl::StrCat("{", head, R"(,"refund":{"orderId":"o-1","amountMinor":"12"}})"),
      absl::StrCat("{", head, R"(,"refund":{"orderId":"o-1","amountMinor":"abc"}})"),
      absl::StrCat("{", head, R"(,"unknownField":{"a":[1,{"b":"}"}]},"redemptionCancel":{"redemptionId":"r"}})"),
      absl::StrCat("{", head, R"(,"purchase":{"orderId":"o-2"},"refund":{"orderId":"o-2"}})"),
      absl::StrCat("{", head, R"(,"adjustment":{'points':5}})"),
      absl::StrCat("{", head, R"(,"adjustment":{"reason":"it's"}})"),
      R"({"eventId":"e-2","customerId":"c-1","occurredAt":"0000-01-01T00:00:00Z","adjustment":{}})",
      R"({"eventId":"e-3","customerId":"c-1","occurredAt":"yesterday"})",
      R"({"eventId":"e-4","eventId":"e-5","customerId":"c-1"})",
      R"({"eventId":"x"}]},{"events":[{"eventId":"y"})",
      R"({"eventId":"x"},{"eventId":"y"})",
      R"({"eventId":"x"}{"eventId":"y"})",
      R"({"eventId":"x"} trailing)",
      R"({"eventId":"unterminated)",
      R"({"eventId":"x\"}, {\"eventId\":\"y"})",
      R"({"eventId":"x\\"})",
      "{}",
      "",
      "   ",
      "null",
      "[]",
      "[{}]",
      "\"a string\"",
      "{\"eventId\":\"\xff\xfe\"}",
      std::string("{\"eventId\":\"a\0b\"}", 17),
      "{\"eventId\":\"e-6\",\"customerId\":\"c-\\u00e9\"}",
      "{\"eventId\":\"e-7\"}\n",
  };
  for (int depth : {90, 98, 99, 100, 101, 200}) {
    std::string deep = "{\"x\":";
    for (int d = 0; d < depth; ++d) deep += "[";
    for (int d = 0; d < depth; ++d) deep += "]";
    lines.push_back(deep + ",\"eventId\":\"deep\"}");
  }
  const size_t distinct = lines.size();
  // Enough lines for several documents, valid ones mostly, the rest spread over them.
  for (int i = 0; i < 400; ++i) {
    lines.push_back(i % 9 == 4 ? lines[(i / 9) % distinct]
                               : absl::StrCat(R"({"eventId":"v-)", i, R"(","customerId":"c-)",
                                              i % 7, R"(","occurredAt":"2026-01-05T10:00:0)",
                                              i % 10, R"(Z","adjustment":{"points":)", i, "}}"));
  }
  for (size_t count : {size_t{1}, size_t{2}, distinct, lines.size()}) {
    std::vector<std::string_view> views(lines.begin(), lines.begin() + count);
    std::vector<absl::StatusOr<v1::Event>> together = DecodeJsonEvents(views);
    REQUIRE(together.size() == count);
    size_t ok = 0;
    for (size_t i = 0; i < count; ++i) {
      INFO("line " << i << ": " << lines[i]);
      absl::StatusOr<v1::Event> alone = DecodeEvent(lines[i], v1::ENCODING_JSON);
      REQUIRE(together[i].ok() == alone.ok());
      if (alone.ok()) {
        ++ok;
        CHECK(SerializeDeterministic(*together[i]) == SerializeDeterministic(*alone));
      } else {
        CHECK(together[i].status() == alone.status());
      }
    }
    if (count == lines.size()) CHECK(ok > 300);
  }
}

TEST_CASE("checking a batch on several threads logs exactly what one thread does") {
  // Proves: the parallel check of large batches changes nothing. A 3000-message
  // batch (valid events, each kind of bad input, duplicates and conflicts within the
  // batch, protobuf and JSON) is ingested with 1, 2 and 3 check threads into three
  // logs; their chain heads (every record's bytes, in order) must be equal.
  std::vector<InputMessage> batch;
  for (int i = 0; i < 3000; ++i) {
    InputMessage m;
    const int id = i % 7 == 3 ? i - 3 : i;  // every 7th repeats an earlier event id
    const std::string occurred = i % 13 == 0 ? "2027-01-01T00:00:00Z" : "2026-01-05T10:00:00Z";
    m.raw = absl::StrCat(R"({"eventId":"e-)", id, R"(","customerId":"c-)", i % 50,
                         R"(","occurredAt":")", occurred, R"(","purchase":{"orderId":"o-)", i,
                         R"(","amountMinor":)", i % 11 == 0 ? -5 : 1000 + i,
                         R"(,"currency":"EUR"}})");
    if (i % 17 == 0) m.raw = "not json";
    if (i % 19 == 0) {
      auto event = DecodeEvent(absl::StrCat(R"({"eventId":"p-)", i, R"(","customerId":"c-1",)",
                                            R"("occurredAt":"2026-01-05T10:00:00Z",)",
                                            R"("adjustment":{"points":5,"reason":"r","actor":"a"}})"),
                               v1::ENCODING_JSON);
      REQUIRE(event.ok());
      m.raw = event->SerializeAsString();
    }
    m.source.mutable_kafka()->set_topic("t");
    m.source.mutable_kafka()->set_offset(i);
    batch.push_back(std::move(m));
  }
  std::vector<LogHead> heads;
  std::vector<IngestCounts> counts;
  for (int threads : {1, 2, 3}) {
    testing::TempDir dir;
    LogOptions options;
    options.data_dir = dir.path();
    options.sync_writes = false;
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    ManualClock clock(kNow);
    Ingestor ingestor(log->get(), &clock);
    ingestor.set_decode_threads(threads);
    auto c = ingestor.IngestBatch(batch);
    REQUIRE(c.ok());
    counts.push_back(*c);
    heads.push_back((*log)->head());
  }
  CHECK(counts[0].applied > 1000);
  CHECK(counts[0].dead_letters > 300);
  CHECK(counts[0].duplicates + counts[0].dead_letters_by_reason[v1::EVENT_ID_CONFLICT] > 100);
  for (size_t k = 1; k < heads.size(); ++k) {
    CHECK(heads[k].seq == heads[0].seq);
    CHECK(heads[k].hash == heads[0].hash);
    CHECK(counts[k].dead_letters == counts[0].dead_letters);
  }
}

}  // namespace
}  // namespace loyalty
