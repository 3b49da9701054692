#include "server/http_params.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/query_service.h"

namespace loyalty {
namespace {

// cpp-httplib's Request::has_param and get_param_value(name): the first value.
const std::string* Param(const HttpParams& params, const std::string& name) {
  auto it = params.lower_bound(name);
  return it != params.end() && it->first == name ? &it->second : nullptr;
}

absl::Status ParseTime(const std::string& name, const std::string& text,
                       google::protobuf::Timestamp* out) {
  // RFC 3339 allows a lowercase 't' and 'z'; protobuf's parser takes only capitals
  // (no other letter is valid in the format, so capitalizing changes nothing else).
  std::string upper = text;
  for (char& c : upper) c = absl::ascii_toupper(static_cast<unsigned char>(c));
  if (!google::protobuf::util::TimeUtil::FromString(upper, out)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " '", text, "' is not an RFC 3339 time (e.g. 2026-01-05T10:00:00Z)"));
  }
  out->set_nanos(0);  // times are taken to the second
  return absl::OkStatus();
}

absl::Status ParseInt(const std::string& name, const std::string& text, int64_t lo, int64_t hi,
                      int64_t* out) {
  if (!absl::SimpleAtoi(text, out) || *out < lo || *out > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " '", text, "' is not a whole number in [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

template <typename E>
absl::Status ParseEnum(const std::string& name, const std::string& text,
                       bool (*parse)(const std::string&, E*), E* out) {
  if (!parse(text, out)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " '", text, "' is not a known value"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseReadParams(const HttpParams& params, v1::ReadOptions* read) {
  if (const std::string* as_of = Param(params, "as_of")) {
    if (auto s = ParseTime("as_of", *as_of, read->mutable_as_of()); !s.ok()) return s;
  }
  if (const std::string* after = Param(params, "after")) {
    if (auto p = ParseAfter(*after); !p.ok()) return p.status();
    read->set_after(*after);
  }
  int64_t v = 0;
  if (const std::string* after_seq = Param(params, "after_seq")) {
    if (auto s = ParseInt("after_seq", *after_seq, 1, INT64_MAX, &v); !s.ok()) return s;
    read->set_after_seq(static_cast<uint64_t>(v));
  }
  if (const std::string* wait_ms = Param(params, "wait_ms")) {
    if (auto s = ParseInt("wait_ms", *wait_ms, 0, INT64_MAX, &v); !s.ok()) return s;
    read->set_wait_ms(v);
  }
  return absl::OkStatus();
}

absl::Status ParseCustomerRequest(const std::string& customer_id, const HttpParams& params,
                                  v1::CustomerRequest* out) {
  out->set_customer_id(customer_id);
  return ParseReadParams(params, out->mutable_read());
}

absl::Status ParseStatementRequest(const std::string& customer_id, const HttpParams& params,
                                   v1::StatementRequest* out) {
  out->set_customer_id(customer_id);
  if (auto s = ParseReadParams(params, out->mutable_read()); !s.ok()) return s;
  if (const std::string* from = Param(params, "from")) {
    if (auto s = ParseTime("from", *from, out->mutable_from()); !s.ok()) return s;
  }
  if (const std::string* to = Param(params, "to")) {
    if (auto s = ParseTime("to", *to, out->mutable_to()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParseListCustomersRequest(const HttpParams& params, int32_t max_page_size,
                                       v1::ListCustomersRequest* out) {
  if (auto s = ParseReadParams(params, out->mutable_read()); !s.ok()) return s;
  if (const std::string* text = Param(params, "risk_level")) {
    v1::RiskLevel level;
    if (auto s = ParseEnum("risk_level", *text, &v1::RiskLevel_Parse, &level); !s.ok()) return s;
    out->set_risk_level(level);
  }
  if (const std::string* text = Param(params, "tier")) {
    v1::Tier tier;
    if (auto s = ParseEnum("tier", *text, &v1::Tier_Parse, &tier); !s.ok()) return s;
    out->set_tier(tier);
  }
  if (const std::string* text = Param(params, "limit")) {
    int64_t limit = 0;
    if (auto s = ParseInt("limit", *text, 1, max_page_size, &limit); !s.ok()) return s;
    out->set_limit(static_cast<int32_t>(limit));
  }
  if (const std::string* token = Param(params, "page_token")) out->set_page_token(*token);
  return absl::OkStatus();
}

absl::Status ParseStatsRequest(const HttpParams& params, v1::StatsRequest* out) {
  return ParseReadParams(params, out->mutable_read());
}

absl::Status ParseEventRequest(const std::string& event_id, const HttpParams& params,
                               v1::EventRequest* out) {
  out->set_event_id(event_id);
  if (const std::string* text = Param(params, "wait_ms")) {
    int64_t wait = 0;
    if (auto s = ParseInt("wait_ms", *text, 0, INT64_MAX, &wait); !s.ok()) return s;
    out->set_wait_ms(wait);
  }
  return absl::OkStatus();
}

}  // namespace loyalty
