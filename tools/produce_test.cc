#include "tools/produce.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <catch2/catch.hpp>

#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "loyalty/v1/event.pb.h"

namespace loyalty {
namespace {

struct Message {
  std::string key;
  std::string value;
  bool operator==(const Message& other) const = default;
};

std::vector<Message> Produce(const ProduceOptions& options) {
  std::vector<Message> messages;
  GenerateStream(options, [&](std::string_view key, std::string_view value) {
    messages.push_back(Message{std::string(key), std::string(value)});
    return true;
  });
  return messages;
}

bool Decode(const std::string& value, ProduceFormat format, v1::Event* event) {
  event->Clear();
  if (format == ProduceFormat::kProtobuf) return event->ParseFromString(value);
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(value, event, options).ok();
}

int64_t LatestTime(const ProduceOptions& options) {
  return options.start_unix_seconds + options.span_seconds;
}

// The input rule of rules.md section 10 that a decoded event breaks ("" if none),
// judged with the generation's last timestamp as the clock.
std::string InputProblem(const v1::Event& event, int64_t latest_time) {
  constexpr size_t kMaxIdBytes = 128;
  if (event.event_id().empty()) return "missing event_id";
  if (event.customer_id().empty()) return "missing customer_id";
  if (!event.has_occurred_at()) return "missing occurred_at";
  if (event.occurred_at().seconds() > latest_time) return "future";
  std::vector<const std::string*> ids = {&event.event_id(), &event.customer_id()};
  std::string problem;
  switch (event.payload_case()) {
    case v1::Event::kPurchase: {
      const v1::Purchase& purchase = event.purchase();
      ids.push_back(&purchase.order_id());
      if (purchase.order_id().empty() || purchase.currency().empty()) problem = "empty id";
      if (purchase.amount_minor() <= 0) problem = "amount <= 0";
      int64_t sum = 0;
      for (const v1::PurchaseLine& line : purchase.lines()) {
        ids.push_back(&line.sku());
        if (line.amount_minor() < 0) problem = "negative line";
        sum += line.amount_minor();
      }
      if (problem.empty() && purchase.lines_size() > 0 && sum != purchase.amount_minor()) {
        problem = "lines do not sum";
      }
      break;
    }
    case v1::Event::kRefund:
      ids.push_back(&event.refund().order_id());
      if (event.refund().order_id().empty()) problem = "empty id";
      if (event.refund().amount_minor() <= 0) problem = "amount <= 0";
      break;
    case v1::Event::kReferral:
      ids.push_back(&event.referral().referrer_id());
      ids.push_back(&event.referral().referee_id());
      if (event.referral().referrer_id().empty()) problem = "empty id";
      if (event.referral().referee_id() != event.customer_id()) problem = "referee mismatch";
      break;
    case v1::Event::kRedemption:
      ids.push_back(&event.redemption().redemption_id());
      ids.push_back(&event.redemption().reward_id());
      if (event.redemption().redemption_id().empty()) problem = "empty id";
      if (event.redemption().points() <= 0) problem = "points <= 0";
      break;
    case v1::Event::kRedemptionCancel:
      ids.push_back(&event.redemption_cancel().redemption_id());
      if (event.redemption_cancel().redemption_id().empty()) problem = "empty id";
      break;
    case v1::Event::kAdjustment:
      if (event.adjustment().points() == 0) problem = "adjustment points 0";
      break;
    case v1::Event::PAYLOAD_NOT_SET:
      return "no payload";
  }
  for (const std::string* id : ids) {
    if (id->size() > kMaxIdBytes) return "id too long";
  }
  return problem;
}

ProduceOptions CleanOptions(ProduceFormat format) {
  ProduceOptions options;
  options.customers = 2'000;
  options.events = 40'000;
  options.seed = 7;
  options.format = format;
  options.malformed_share = 0;
  options.duplicate_share = 0;
  return options;
}

// Checks a stream without malformed input or duplicates: every message decodes to a
// valid event keyed by its customer, ids are unique, all six payload kinds occur,
// times stay in [start, start + span] with a few late ones, and refunds / cancels
// name what the same customer bought / redeemed earlier.
void CheckCleanStream(const ProduceOptions& options, const std::vector<Message>& messages) {
  REQUIRE(messages.size() == options.events);
  std::set<std::string> event_ids;
  std::map<v1::Event::PayloadCase, uint64_t> kinds;
  std::map<std::pair<std::string, std::string>, int64_t> refundable;  // (customer, order)
  std::set<std::pair<std::string, std::string>> redemptions;          // (customer, id)
  uint64_t refunds_known = 0, cancels_known = 0, late = 0, usd = 0, with_lines = 0;
  int64_t previous_time = options.start_unix_seconds;
  v1::Event event;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& message = messages[i];
    INFO("message " << i << ": " << message.value);
    REQUIRE(Decode(message.value, options.format, &event));
    REQUIRE(InputProblem(event, LatestTime(options)) == "");
    REQUIRE(message.key == event.customer_id());
    REQUIRE(event_ids.insert(event.event_id()).second);
    REQUIRE(event.occurred_at().nanos() == 0);
    REQUIRE(event.occurred_at().seconds() >= options.start_unix_seconds);
    if (i == 0) REQUIRE(event.occurred_at().seconds() == options.start_unix_seconds);
    if (event.occurred_at().seconds() < previous_time) ++late;
    previous_time = event.occurred_at().seconds();
    ++kinds[event.payload_case()];
    const std::string& customer = event.customer_id();
    switch (event.payload_case()) {
      case v1::Event::kPurchase:
        if (event.purchase().currency() == "USD") ++usd;
        if (event.purchase().lines_size() > 0) ++with_lines;
        refundable[{customer, event.purchase().order_id()}] = event.purchase().amount_minor();
        break;
      case v1::Event::kRefund: {
        auto it = refundable.find({customer, event.refund().order_id()});
        if (it != refundable.end()) {
          ++refunds_known;
          it->second -= event.refund().amount_minor();
          REQUIRE(it->second >= 0);  // never more than the order
        }
        break;
      }
      case v1::Event::kRedemption:
        redemptions.insert({customer, event.redemption().redemption_id()});
        break;
      case v1::Event::kRedemptionCancel:
        if (redemptions.count({customer, event.redemption_cancel().redemption_id()}) > 0) {
          ++cancels_known;
        }
        break;
      default:
        break;
    }
  }
  REQUIRE(kinds.size() == 6);
  REQUIRE(kinds.count(v1::Event::PAYLOAD_NOT_SET) == 0);
  const double n = static_cast<double>(messages.size());
  CHECK(kinds[v1::Event::kPurchase] / n > 0.60);
  CHECK(kinds[v1::Event::kPurchase] / n < 0.85);
  CHECK(kinds[v1::Event::kRefund] / n > 0.04);
  CHECK(kinds[v1::Event::kReferral] / n > 0.03);
  CHECK(kinds[v1::Event::kRedemption] / n > 0.08);
  CHECK(kinds[v1::Event::kAdjustment] / n > 0.01);
  CHECK(refunds_known >= 0.9 * kinds[v1::Event::kRefund]);
  CHECK(refunds_known < kinds[v1::Event::kRefund]);  // some name unknown orders
  CHECK(cancels_known >= 0.8 * kinds[v1::Event::kRedemptionCancel]);
  CHECK(cancels_known < kinds[v1::Event::kRedemptionCancel]);
  CHECK(late / n > 0.015);
  CHECK(late / n < 0.06);
  CHECK(usd > 0);
  CHECK(with_lines / static_cast<double>(kinds[v1::Event::kPurchase]) > 0.3);
}

// Proves determinism: same options give identical bytes (both formats), another seed differs,
// and stopping early yields a prefix.
TEST_CASE("GenerateStream is deterministic per seed", "[produce]") {
  for (ProduceFormat format : {ProduceFormat::kJson, ProduceFormat::kProtobuf}) {
    ProduceOptions options;
    options.customers = 500;
    options.events = 5'000;
    options.format = format;
    const std::vector<Message> first = Produce(options);
    const std::vector<Message> second = Produce(options);
    REQUIRE(first == second);
    options.seed = 2;
    const std::vector<Message> other_seed = Produce(options);
    REQUIRE(other_seed.size() == first.size());
    REQUIRE(other_seed != first);

    options.seed = 1;
    std::vector<Message> prefix;
    GenerateStream(options, [&](std::string_view key, std::string_view value) {
      prefix.push_back(Message{std::string(key), std::string(value)});
      return prefix.size() < 100;
    });
    REQUIRE(prefix.size() == 100);
    REQUIRE(std::equal(prefix.begin(), prefix.end(), first.begin()));
  }
}

// Proves the count: exactly `events` messages whatever the shares and customer count.
TEST_CASE("GenerateStream emits exactly the requested number of messages", "[produce]") {
  struct Case {
    uint64_t customers;
    uint64_t events;
    double malformed;
    double duplicate;
  };
  for (const Case& c : {Case{100, 0, 0.02, 0.01}, Case{100, 1, 0.02, 0.01},
                        Case{0, 777, 0.02, 0.01}, Case{1, 12'345, 0.5, 0.5},
                        Case{3'000, 12'345, 0.0, 0.0}, Case{3'000, 12'345, 1.0, 0.0},
                        Case{3'000, 12'345, 0.0, 1.0}}) {
    for (ProduceFormat format : {ProduceFormat::kJson, ProduceFormat::kProtobuf}) {
      ProduceOptions options;
      options.customers = c.customers;
      options.events = c.events;
      options.malformed_share = c.malformed;
      options.duplicate_share = c.duplicate;
      options.format = format;
      uint64_t count = 0;
      GenerateStream(options, [&](std::string_view, std::string_view value) {
        ++count;
        if (format == ProduceFormat::kJson) CHECK(value.find('\n') == std::string_view::npos);
        return true;
      });
      CHECK(count == c.events);
    }
  }
}

// Proves well-formed JSON: with no malformed input or duplicates every line decodes with
// JsonStringToMessage into a valid Event, ids are unique, and all six payload kinds occur.
TEST_CASE("Well-formed JSON stream decodes and is realistic", "[produce]") {
  const ProduceOptions options = CleanOptions(ProduceFormat::kJson);
  const std::vector<Message> messages = Produce(options);
  CheckCleanStream(options, messages);
  // int64 are JSON numbers, times RFC 3339 in whole seconds.
  CHECK(messages[0].value.find("\"occurredAt\":\"2025-01-01T00:00:00Z\"") != std::string::npos);
  CHECK(messages[0].value.find("\"amountMinor\":\"") == std::string::npos);
}

// Proves well-formed protobuf: every message parses with ParseFromString into a valid Event,
// and decodes to the same events as the JSON stream of the same options.
TEST_CASE("Well-formed protobuf stream parses and matches the JSON stream", "[produce]") {
  const ProduceOptions options = CleanOptions(ProduceFormat::kProtobuf);
  const std::vector<Message> messages = Produce(options);
  CheckCleanStream(options, messages);

  const std::vector<Message> json = Produce(CleanOptions(ProduceFormat::kJson));
  REQUIRE(json.size() == messages.size());
  v1::Event from_json, from_protobuf;
  for (size_t i = 0; i < messages.size(); ++i) {
    REQUIRE(Decode(json[i].value, ProduceFormat::kJson, &from_json));
    REQUIRE(Decode(messages[i].value, ProduceFormat::kProtobuf, &from_protobuf));
    REQUIRE(google::protobuf::util::MessageDifferencer::Equals(from_json, from_protobuf));
    REQUIRE(json[i].key == messages[i].key);
  }
}

// Proves the malformed and duplicate shares: with default shares about malformed_share of the
// messages break an input rule (every kind occurs), and about duplicate_share re-send an
// earlier event with the same key and content (byte for byte, or re-spelled in JSON).
TEST_CASE("Default shares give malformed input and duplicates in proportion", "[produce]") {
  for (ProduceFormat format : {ProduceFormat::kJson, ProduceFormat::kProtobuf}) {
    ProduceOptions options;
    options.customers = 5'000;
    options.events = 60'000;
    options.seed = 11;
    options.format = format;
    const std::vector<Message> messages = Produce(options);
    REQUIRE(messages.size() == options.events);

    std::map<std::string, uint64_t> problems;
    std::unordered_map<std::string, size_t> first_index;  // event_id -> message
    uint64_t bad = 0, duplicates = 0, same_bytes = 0, other_bytes = 0;
    v1::Event event, original;
    for (size_t i = 0; i < messages.size(); ++i) {
      std::string problem = Decode(messages[i].value, format, &event)
                                ? InputProblem(event, LatestTime(options))
                                : "undecodable";
      if (!problem.empty()) {
        ++bad;
        ++problems[problem];
        if (problem == "missing customer_id") CHECK(messages[i].key.empty());
        continue;
      }
      CHECK(messages[i].key == event.customer_id());
      auto [it, inserted] = first_index.emplace(event.event_id(), i);
      if (inserted) continue;
      ++duplicates;
      const Message& first = messages[it->second];
      REQUIRE(Decode(first.value, format, &original));
      CHECK(google::protobuf::util::MessageDifferencer::Equals(event, original));
      CHECK(first.key == messages[i].key);
      if (first.value == messages[i].value) {
        ++same_bytes;
      } else {
        ++other_bytes;
      }
    }
    INFO("format " << static_cast<int>(format) << ", bad " << bad << ", duplicates "
                   << duplicates);
    const double n = static_cast<double>(messages.size());
    CHECK(bad >= options.malformed_share / 2 * n);
    CHECK(bad <= options.malformed_share * 2 * n);
    CHECK(duplicates >= options.duplicate_share / 2 * n);
    CHECK(duplicates <= options.duplicate_share * 2 * n);
    for (const char* expected :
         {"undecodable", "missing event_id", "missing customer_id", "missing occurred_at",
          "no payload", "amount <= 0", "points <= 0", "adjustment points 0", "lines do not sum",
          "negative line", "id too long", "referee mismatch", "future"}) {
      INFO(expected);
      CHECK(problems[expected] > 0);
    }
    CHECK(same_bytes > 0);
    if (format == ProduceFormat::kJson) {
      CHECK(other_bytes > 0);
    } else {
      CHECK(other_bytes == 0);
    }
  }
}

// Proves the JSON decode errors are really undecodable in both formats and that the
// two formats agree message by message: both decode to equal events, or neither decodes.
TEST_CASE("JSON and protobuf streams agree on what decodes", "[produce]") {
  ProduceOptions options;
  options.customers = 1'000;
  options.events = 20'000;
  options.malformed_share = 0.2;
  options.duplicate_share = 0.1;
  options.format = ProduceFormat::kJson;
  const std::vector<Message> json = Produce(options);
  options.format = ProduceFormat::kProtobuf;
  const std::vector<Message> protobuf = Produce(options);
  REQUIRE(json.size() == protobuf.size());
  uint64_t undecodable = 0;
  v1::Event from_json, from_protobuf;
  for (size_t i = 0; i < json.size(); ++i) {
    INFO("message " << i << ": " << json[i].value);
    const bool json_ok = Decode(json[i].value, ProduceFormat::kJson, &from_json);
    const bool protobuf_ok = Decode(protobuf[i].value, ProduceFormat::kProtobuf, &from_protobuf);
    REQUIRE(json_ok == protobuf_ok);
    if (!json_ok) {
      ++undecodable;
      CHECK(protobuf[i].value.front() != '{');
      continue;
    }
    REQUIRE(google::protobuf::util::MessageDifferencer::Equals(from_json, from_protobuf));
  }
  // 3 of the 15 malformed kinds do not decode: about 4% of the messages here.
  CHECK(undecodable > 0.02 * json.size());
  CHECK(undecodable < 0.08 * json.size());
}

// Proves the skew: the most active customer has far more events than the median active one.
TEST_CASE("Customer activity is skewed", "[produce]") {
  ProduceOptions options = CleanOptions(ProduceFormat::kJson);
  options.customers = 1'000;
  options.events = 50'000;
  std::unordered_map<std::string, uint64_t> per_customer;
  GenerateStream(options, [&](std::string_view key, std::string_view) {
    ++per_customer[std::string(key)];
    return true;
  });
  std::vector<uint64_t> counts;
  for (const auto& [customer, count] : per_customer) counts.push_back(count);
  std::sort(counts.begin(), counts.end());
  const uint64_t median = counts[counts.size() / 2];
  const uint64_t top = counts.back();
  INFO("customers " << counts.size() << ", top " << top << ", median " << median);
  CHECK(counts.size() > 700);  // most customers show up at least once
  // Weights 1/(rank+50)^1.1 give the top customer (551/51)^1.1 ~ 13.7 times the
  // median's share over 1,000 customers; a uniform sampler gives about 1.5.
  CHECK(top >= 8 * median);
  // ...and no single customer dominates: its expected share is about 1.7%.
  CHECK(top < options.events / 25);
}

}  // namespace
}  // namespace loyalty
