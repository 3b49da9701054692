// The HTTP/JSON API's query parameters (docs/api.md) read into the query service's
// request messages. Kept apart from the transport (http_server.cc) so that what
// reads client input can be tested and fuzzed without sockets (tests/fuzz).
#ifndef LOYALTY_SERVER_HTTP_PARAMS_H_
#define LOYALTY_SERVER_HTTP_PARAMS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "loyalty/v1/query.pb.h"

namespace loyalty {

// A request's query parameters, already percent-decoded, as cpp-httplib's
// `Request::params` holds them. When a name repeats, its first value counts.
using HttpParams = std::multimap<std::string, std::string>;

// Every function below fills `out` from `params` (and the id taken from the path)
// and returns InvalidArgument, naming the parameter, when one is malformed: times
// are RFC 3339 (taken to the second), numbers whole and in range, enums by name.
// The ids themselves are checked by the QueryService.

// as_of, after=topic:partition:offset, after_seq, wait_ms.
absl::Status ParseReadParams(const HttpParams& params, v1::ReadOptions* out);
// GET /v1/customers/{id}/balance|tier|churn
absl::Status ParseCustomerRequest(const std::string& customer_id, const HttpParams& params,
                                  v1::CustomerRequest* out);
// GET /v1/customers/{id}/statement: the read options, from, to.
absl::Status ParseStatementRequest(const std::string& customer_id, const HttpParams& params,
                                   v1::StatementRequest* out);
// GET /v1/customers: the read options, risk_level, tier, limit in [1, max_page_size],
// page_token.
absl::Status ParseListCustomersRequest(const HttpParams& params, int32_t max_page_size,
                                       v1::ListCustomersRequest* out);
// GET /v1/stats
absl::Status ParseStatsRequest(const HttpParams& params, v1::StatsRequest* out);
// GET /v1/events/{event_id}: wait_ms.
absl::Status ParseEventRequest(const std::string& event_id, const HttpParams& params,
                               v1::EventRequest* out);

}  // namespace loyalty

#endif  // LOYALTY_SERVER_HTTP_PARAMS_H_
