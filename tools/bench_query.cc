// Bench: queries (balance, tier, churn) over HTTP and gRPC on loopback, at a few
// concurrency levels, with and without ingestion running into the same log.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/clock.h"
#include "engine/cpu_priority.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "engine/status_macros.h"
#include "loyalty/v1/event.pb.h"
#include "loyalty/v1/query.grpc.pb.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "rocksdb/env.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/query_service.h"
#include "tools/bench.h"
#include "tools/produce.h"

namespace loyalty::bench {
namespace {

// Customer ids the clients ask for: known customers, at most this many.
constexpr size_t kMaxQueryCustomers = 200'000;
// Messages per batch of the background ingestion (KafkaSource's default).
constexpr size_t kIngestBatch = 5000;

enum class Kind { kBalance, kTier, kChurn };
const char* KindName(Kind k) {
  return k == Kind::kBalance ? "balance" : k == Kind::kTier ? "tier" : "churn";
}

struct Level {
  uint64_t requests = 0;
  uint64_t errors = 0;
  double seconds = 0;
  Latencies latency;
  std::string first_error;  // what the first failed request said
};

// One client's loop: closed loop (next request when the answer arrives), or paced
// (request k at start + k * interval; latency counted from the scheduled time, so
// falling behind shows up as latency rather than as fewer requests).
template <typename Call>
void ClientLoop(const std::vector<std::string>& ids, uint64_t seed, uint64_t max_requests,
                double seconds, double interval_s, Call call, Level* out) {
  std::mt19937_64 random(seed);
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t k = 0; k < max_requests; ++k) {
    auto scheduled = std::chrono::steady_clock::now();
    if (interval_s > 0) {
      scheduled = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(interval_s * k));
      std::this_thread::sleep_until(scheduled);
    }
    if (Since(start) >= seconds) break;
    const std::string& id = ids[random() % ids.size()];
    std::string error;
    if (!call(id, &error)) {
      if (out->errors++ == 0) out->first_error = error;
    }
    out->latency.Add(Since(scheduled));
    ++out->requests;
  }
  out->seconds = Since(start);
}

// Runs `clients` clients of `kind` over `transport` and adds the figures under `prefix`.
void RunLevel(const std::string& transport, Kind kind, int clients, double interval_s,
              const BenchArgs& args, const std::vector<std::string>& ids, int http_port,
              int grpc_port, const std::string& prefix, BenchResult* result) {
  std::vector<Level> levels(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      if (args.client_slice_us > 0) {
        if (absl::Status s = SetThreadSlice(absl::Microseconds(args.client_slice_us)); !s.ok()) {
          std::fprintf(stderr, "bench: client slice: %s\n", s.ToString().c_str());
        }
      }
      const uint64_t seed = args.seed * 1000 + c;
      if (transport == "http") {
        httplib::Client client("127.0.0.1", http_port);
        client.set_keep_alive(true);
        client.set_read_timeout(5, 0);
        client.set_tcp_nodelay(true);
        ClientLoop(ids, seed, args.requests_per_client, args.seconds, interval_s,
                   [&](const std::string& id, std::string* error) {
                     auto res = client.Get(
                         absl::StrCat("/v1/customers/", id, "/", KindName(kind)).c_str());
                     if (res && res->status == 200) return true;
                     *error = res ? absl::StrCat("HTTP ", res->status, " ", res->body)
                                  : absl::StrCat("httplib error ", static_cast<int>(res.error()));
                     return false;
                   },
                   &levels[c]);
      } else {
        grpc::ChannelArguments channel_args;
        channel_args.SetInt("loyalty.bench.client", c);  // one connection per client
        auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", grpc_port),
                                                 grpc::InsecureChannelCredentials(), channel_args);
        auto stub = v1::LoyaltyQuery::NewStub(channel);
        ClientLoop(ids, seed, args.requests_per_client, args.seconds, interval_s,
                   [&](const std::string& id, std::string* error) {
                     grpc::ClientContext context;
                     context.set_deadline(std::chrono::system_clock::now() +
                                          std::chrono::seconds(5));
                     v1::CustomerRequest request;
                     request.set_customer_id(id);
                     grpc::Status s;
                     if (kind == Kind::kBalance) {
                       v1::Balance answer;
                       s = stub->GetBalance(&context, request, &answer);
                     } else if (kind == Kind::kTier) {
                       v1::TierStatus answer;
                       s = stub->GetTier(&context, request, &answer);
                     } else {
                       v1::ChurnSignals answer;
                       s = stub->GetChurn(&context, request, &answer);
                     }
                     if (!s.ok()) {
                       *error = absl::StrCat("gRPC ", s.error_code(), " ", s.error_message());
                     }
                     return s.ok();
                   },
                   &levels[c]);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Level total;
  for (Level& l : levels) {
    if (total.first_error.empty()) total.first_error = l.first_error;
    total.requests += l.requests;
    total.errors += l.errors;
    total.seconds = std::max(total.seconds, l.seconds);
    total.latency.Merge(l.latency);
  }
  result->figures[prefix + "_qps"] = total.seconds > 0 ? total.requests / total.seconds : 0;
  result->figures[prefix + "_requests"] = static_cast<double>(total.requests);
  result->figures[prefix + "_errors"] = static_cast<double>(total.errors);
  total.latency.Report(prefix, result);
  if (!total.first_error.empty()) result->notes[prefix + "_first_error"] = total.first_error;
  if (interval_s > 0 || (kind == Kind::kBalance && clients == args.clients.back())) {
    result->series[prefix + "_latency_cdf"] = total.latency.Cdf(200);
  }
}

// Ingests generated protobuf streams into the log until stopped, round after round,
// so that every level measured "while ingesting" has ingestion beside it: round r
// has event ids of its own ("bg<r>-") and a week of its own from 2026-01-01 (the
// log's stream covers 2025), so that its events are new work, not duplicates or
// late events.
class BackgroundIngest {
 public:
  BackgroundIngest(Ingestor* ingestor, const BenchArgs& args) : ingestor_(ingestor), args_(args) {}
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~BackgroundIngest() { Stop(); }
  std::atomic<uint64_t>& taken() { return taken_; }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  static constexpr int64_t kRoundStart = 1'767'225'600;  // 2026-01-01T00:00:00Z
  static constexpr int64_t kRoundSpan = 7 * 86'400;
  static constexpr uint64_t kRoundsBeforeWrap = 44;      // ends before 2026-11-05

  void Run() {
    // --ingest-nice: the batches' helper threads inherit the nice value.
    if (absl::Status s = SetThreadNice(args_.ingest_nice); !s.ok()) {
      absl::MutexLock lock(&mu_);
      status_ = s;
      return;
    }
    std::vector<InputMessage> batch;
    uint64_t offset = 0;
    // The last batch in flight (pipelined) is stored when the stream stops.
    struct FlushAtEnd {
      BackgroundIngest* self;
      ~FlushAtEnd() {
        if (absl::Status s = self->ingestor_->Flush(); !s.ok()) {
          absl::MutexLock lock(&self->mu_);
          if (self->status_.ok()) self->status_ = s;
        }
      }
    } flush_at_end{this};
    bool failed = false;
    for (uint64_t round = 0; !stop_ && !failed; ++round) {
      ProduceOptions produce;
      produce.events = args_.events;
      produce.customers = args_.customers;
      produce.seed = args_.seed + 7 + round;
      produce.format = ProduceFormat::kProtobuf;
      produce.start_unix_seconds =
          kRoundStart + static_cast<int64_t>(round % kRoundsBeforeWrap) * kRoundSpan;
      produce.span_seconds = kRoundSpan;
      const std::string prefix = absl::StrCat("bg", round, "-");
      // Stops when told to or on an error.
      GenerateStream(produce, [&](std::string_view key, std::string_view value) {
        if (stop_) return false;
        InputMessage m;
        v1::Event event;
        if (event.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          event.set_event_id(absl::StrCat(prefix, event.event_id()));
          m.raw = event.SerializeAsString();
        } else {
          m.raw = std::string(value);
        }
        m.key = std::string(key);
        m.source.mutable_kafka()->set_topic("bench.background");
        m.source.mutable_kafka()->set_partition(0);
        m.source.mutable_kafka()->set_offset(offset++);
        batch.push_back(std::move(m));
        if (batch.size() < kIngestBatch) return true;
        absl::StatusOr<IngestCounts> counts = ingestor_->IngestBatch(batch);
        if (!counts.ok()) {
          absl::MutexLock lock(&mu_);
          status_ = counts.status();
          failed = true;
          return false;
        }
        taken_ += batch.size();
        batch.clear();
        return true;
      });
    }
  }

  Ingestor* ingestor_;
  const BenchArgs& args_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> taken_{0};
  std::thread thread_;
  absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<BenchResult> RunQueries(const BenchArgs& args, const std::string& data_dir) {
  BenchResult result;
  LOYALTY_RETURN_IF_ERROR(EnsureIngested(args, data_dir));
  LOYALTY_ASSIGN_OR_RETURN(BenchEngine engine, OpenBenchEngine(data_dir));
  EventLog* log = engine.log.get();
  std::vector<std::string> ids;
  absl::Status scanned = log->ScanProjection(
      LogBatch::ProjectionCf::kCustomerState, [&](std::string_view key, std::string_view) {
        ids.emplace_back(key);
        // Cancelled stops the scan once there are enough.
        return ids.size() < kMaxQueryCustomers ? absl::OkStatus()
                                               : absl::CancelledError("enough customers");
      });
  if (!scanned.ok() && !(absl::IsCancelled(scanned) && ids.size() >= kMaxQueryCustomers)) {
    return scanned;
  }
  if (ids.empty()) return absl::FailedPreconditionError("no customers in the log");
  result.figures["query_customers"] = static_cast<double>(ids.size());
  QueryService service(log, RealClock(), std::make_shared<Rules>(engine.projector->rules()));
  Metrics metrics;
  HttpOptions http;
  http.port = 0;
  http.thread_slice = absl::Microseconds(args.query_slice_us);
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> http_server,
                           HttpServer::Start(&service, &metrics, {}, http));
  GrpcOptions grpc_options;
  grpc_options.address = "127.0.0.1:0";
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<GrpcServer> grpc_server,
                           GrpcServer::Start(&service, &metrics, grpc_options));
  const int http_port = http_server->port();
  const int grpc_port = grpc_server->port();
  result.notes["http_threads"] = absl::StrCat(http.threads);
  result.notes["grpc_max_threads"] = absl::StrCat(grpc_options.max_threads);
  result.notes["query_slice_us"] = absl::StrCat(args.query_slice_us);
  result.notes["client_slice_us"] = absl::StrCat(args.client_slice_us);

  for (const std::string transport : {"http", "grpc"}) {
    for (Kind kind : {Kind::kBalance, Kind::kTier, Kind::kChurn}) {
      for (int clients : args.clients) {
        RunLevel(transport, kind, clients, 0, args, ids, http_port, grpc_port,
                 absl::StrCat(transport, "_", KindName(kind), "_c", clients), &result);
      }
    }
  }

  // The same with ingestion running into the log the queries read.
  Ingestor ingestor(log, RealClock(), engine.projector.get());
  ingestor.set_pipelined(args.pipelined);
  if (args.ingest_nice > 0) LOYALTY_RETURN_IF_ERROR(LowerBackgroundPriority(rocksdb::Env::Default()));
  result.notes["ingest_nice"] = absl::StrCat(args.ingest_nice);
  BackgroundIngest background(&ingestor, args);
  background.Start();
  const auto ingest_start = std::chrono::steady_clock::now();
  // Each level while ingesting also reports the ingest rate beside it.
  auto run_ingesting = [&](const std::string& transport, int clients, double interval_s,
                           const std::string& prefix) {
    const uint64_t taken_before = background.taken().load();
    const auto level_start = std::chrono::steady_clock::now();
    RunLevel(transport, Kind::kBalance, clients, interval_s, args, ids, http_port, grpc_port,
             prefix, &result);
    result.figures[prefix + "_ingest_events_per_s"] =
        (background.taken().load() - taken_before) / Since(level_start);
  };
  for (const std::string transport : {"http", "grpc"}) {
    for (int clients : args.clients) {
      run_ingesting(transport, clients, 0,
                    absl::StrCat("ingesting_", transport, "_balance_c", clients));
    }
  }
  if (args.paced_qps > 0) {
    // Paced balance over HTTP: 8 clients sharing the rate.
    constexpr int kPacedClients = 8;
    const double interval_s = static_cast<double>(kPacedClients) / args.paced_qps;
    run_ingesting("http", kPacedClients, interval_s,
                  absl::StrCat("ingesting_http_balance_paced", args.paced_qps));
    run_ingesting("http", kPacedClients, interval_s, "ingesting_http_balance_paced_again");
  }
  const double ingest_seconds = Since(ingest_start);
  background.Stop();
  LOYALTY_RETURN_IF_ERROR(background.status());
  result.figures["ingesting_events_per_s"] = background.taken().load() / ingest_seconds;
  if (args.paced_qps > 0) {
    // And paced without ingestion, for comparison.
    RunLevel("http", Kind::kBalance, 8, 8.0 / args.paced_qps, args, ids, http_port, grpc_port,
             absl::StrCat("idle_http_balance_paced", args.paced_qps), &result);
  }
  grpc_server->Stop();
  http_server->Stop();
  return result;
}

}  // namespace loyalty::bench
