// The HTTP query API's request handling without sockets: the input is a request
// target ("/v1/customers/alice/balance?as_of=..."), split and percent-decoded by
// cpp-httplib's own functions, routed by the server's path patterns, read by
// server/http_params.h and answered by a QueryService over a small real log.
// Never crashes, and bad input is never a 500 (interfaces.md): every status is one
// the HTTP server maps to 200, 400, 404 or 504.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/clock.h"
#include "engine/event_codec.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "httplib.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "server/http_params.h"
#include "server/query_service.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

// cpp-httplib refuses longer request targets (CPPHTTPLIB_REQUEST_URI_MAX_LENGTH).
constexpr size_t kMaxTargetBytes = 8192;

// Removed at exit with everything in it. The World itself is never destroyed:
// closing RocksDB from an exit handler would run after RocksDB's own statics are
// gone. It stays reachable, so LeakSanitizer does not count it.
testing::TempDir* const dir = new testing::TempDir;
struct DirRemover {
  ~DirRemover() { delete dir; }
} dir_remover;

struct World {
  ManualClock clock{absl::FromUnixSeconds(1769904000)};  // 2026-02-01T00:00:00Z
  std::unique_ptr<EventLog> log;
  std::unique_ptr<Projector> projector;
  std::unique_ptr<QueryService> service;
};

World* world = nullptr;

void Ingest(Ingestor& ingestor, const std::vector<std::string>& values) {
  std::vector<InputMessage> batch;
  int64_t offset = 0;
  for (const std::string& v : values) {
    InputMessage m;
    m.raw = v;
    m.source.mutable_kafka()->set_topic("loyalty.events");
    m.source.mutable_kafka()->set_partition(0);
    m.source.mutable_kafka()->set_offset(offset++);
    batch.push_back(std::move(m));
  }
  auto counts = ingestor.IngestBatch(batch);
  FUZZ_CHECK(counts.ok());
}

std::string Event(const std::string& id, const std::string& customer, const std::string& at,
                  const std::string& payload) {
  return absl::StrCat(R"({"eventId":")", id, R"(","customerId":")", customer,
                      R"(","occurredAt":")", at, R"(",)", payload, "}");
}

// A log with customers of every kind the listing filters on, a referral, a
// redemption, a dead letter and Kafka positions (for `after`).
void Setup() {
  world = new World;
  LogOptions options;
  options.data_dir = dir->Sub("data");
  options.sync_writes = false;
  options.write_buffer_bytes = 1 << 20;
  auto log = EventLog::Open(options);
  FUZZ_CHECK(log.ok());
  world->log = std::move(*log);
  auto projector = Projector::Open(world->log.get(), DefaultProgram());
  FUZZ_CHECK(projector.ok());
  world->projector = std::move(*projector);
  Ingestor ingestor(world->log.get(), &world->clock, world->projector.get());
  Ingest(ingestor, {
      Event("ev-1", "alice", "2026-01-01T10:00:00Z",
            R"("purchase":{"orderId":"o1","amountMinor":60000,"currency":"EUR"})"),
      Event("ev-2", "alice", "2026-01-10T10:00:00Z",
            R"("purchase":{"orderId":"o2","amountMinor":10000,"currency":"EUR"})"),
      Event("ev-3", "alice", "2026-01-20T10:00:00Z",
            R"("redemption":{"redemptionId":"r1","points":100,"rewardId":"mug"})"),
      Event("ev-4", "bob", "2025-01-05T10:00:00Z", R"("adjustment":{"points":40})"),
      Event("ev-5", "carol", "2026-01-02T10:00:00Z",
            R"("referral":{"referrerId":"alice","refereeId":"carol"})"),
      Event("ev-6", "carol", "2026-01-03T10:00:00Z",
            R"("purchase":{"orderId":"o3","amountMinor":2500,"currency":"EUR"})"),
      Event("ev-7", "shop/alice", "2026-01-04T10:00:00Z",
            R"("refund":{"orderId":"none","amountMinor":10})"),
      R"({"eventId":"dl-1","customerId":"alice","occurredAt":"not a time"})",
  });
  QueryLimits limits;
  limits.max_wait_ms = 0;  // a wait for what never comes must not stall the run
  world->service = std::make_unique<QueryService>(world->log.get(), &world->clock,
                                                  std::make_shared<Rules>(DefaultProgram()),
                                                  limits);
}

// What HttpServer maps to 200, 400, 404 or 504; anything else would be a 500 or a
// status no request should cause.
bool AllowedStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      std::fprintf(stderr, "unexpected status: %s\n", s.ToString().c_str());
      return false;
  }
}

template <typename T>
void CheckAnswer(const absl::StatusOr<T>& answer) {
  FUZZ_CHECK(AllowedStatus(answer.status()));
  if (answer.ok()) FUZZ_CHECK(!ToJson(*answer).empty());
}

// The patterns of HttpServer::Start (server/http_server.cc), in its order.
struct Routes {
  std::regex balance{R"(/v1/customers/(.+)/balance)"};
  std::regex tier{R"(/v1/customers/(.+)/tier)"};
  std::regex churn{R"(/v1/customers/(.+)/churn)"};
  std::regex statement{R"(/v1/customers/(.+)/statement)"};
  std::regex event{R"(/v1/events/(.+))"};
};

void Handle(const std::string& target) {
  static const Routes routes;
  const QueryService& service = *world->service;
  // As cpp-httplib reads a request line: the path before '?', decoded; the query
  // after it, split into parameters and decoded.
  const size_t q = target.find('?');
  const std::string path = httplib::detail::decode_url(target.substr(0, q), false);
  HttpParams params;
  if (q != std::string::npos && q + 1 < target.size()) {
    httplib::detail::parse_query_text(target.substr(q + 1), params);
  }
  std::smatch m;
  if (std::regex_match(path, m, routes.balance) || std::regex_match(path, m, routes.tier) ||
      std::regex_match(path, m, routes.churn)) {
    v1::CustomerRequest request;
    absl::Status s = ParseCustomerRequest(m[1], params, &request);
    FUZZ_CHECK(AllowedStatus(s));
    if (!s.ok()) return;
    CheckAnswer(service.GetBalance(request));
    CheckAnswer(service.GetTier(request));
    CheckAnswer(service.GetChurn(request));
  } else if (std::regex_match(path, m, routes.statement)) {
    v1::StatementRequest request;
    absl::Status s = ParseStatementRequest(m[1], params, &request);
    FUZZ_CHECK(AllowedStatus(s));
    if (s.ok()) CheckAnswer(service.GetStatement(request));
  } else if (path == "/v1/customers") {
    v1::ListCustomersRequest request;
    absl::Status s =
        ParseListCustomersRequest(params, service.limits().max_page_size, &request);
    FUZZ_CHECK(AllowedStatus(s));
    if (s.ok()) CheckAnswer(service.ListCustomers(request));
  } else if (path == "/v1/stats") {
    v1::StatsRequest request;
    absl::Status s = ParseStatsRequest(params, &request);
    FUZZ_CHECK(AllowedStatus(s));
    if (s.ok()) CheckAnswer(service.GetStats(request));
  } else if (std::regex_match(path, m, routes.event)) {
    v1::EventRequest request;
    absl::Status s = ParseEventRequest(m[1], params, &request);
    FUZZ_CHECK(AllowedStatus(s));
    if (s.ok()) CheckAnswer(service.GetEvent(request));
  } else if (path == "/v1/progress") {
    CheckAnswer(service.GetProgress());
  } else {
    // No route (a 404 from the server): the parameters are still read as every
    // route reads them, so the parsers see every input.
    v1::ListCustomersRequest request;
    FUZZ_CHECK(AllowedStatus(ParseListCustomersRequest(params, 1000, &request)));
    v1::StatementRequest statement;
    FUZZ_CHECK(AllowedStatus(ParseStatementRequest("x", params, &statement)));
  }
}

}  // namespace
}  // namespace loyalty

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  loyalty::fuzz::QuietProtobuf();
  loyalty::Setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > loyalty::kMaxTargetBytes) return 0;
  loyalty::Handle(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
