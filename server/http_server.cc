#include "server/http_server.h"

#include <openssl/crypto.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/cpu_priority.h"
#include "engine/event_codec.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"
#include "server/http_params.h"

namespace loyalty {
namespace {

// A fixed pool of workers over a bounded queue: when the queue is full the accept
// loop waits for room instead of queueing without limit.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(size_t threads, size_t max_queued, absl::Duration slice)
      : max_queued_(max_queued) {
    for (size_t i = 0; i < threads; ++i) {
      workers_.emplace_back([this, slice] {
        // Best effort: without it a query waits longer, and answers the same.
        if (slice > absl::ZeroDuration()) SetThreadSlice(slice).IgnoreError();
        Work();
      });
    }
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> lock(mu_);
    room_.wait(lock, [&] { return jobs_.size() < max_queued_ || shutdown_; });
    if (shutdown_) return;  // the server is stopping: httplib closes the socket
    jobs_.push_back(std::move(fn));
    work_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    work_.notify_all();
    room_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_.wait(lock, [&] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      room_.notify_one();
      fn();
    }
  }
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable work_, room_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> workers_;
  bool shutdown_ = false;
};

// httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into
// Debian's libcpp-httplib). listen(2) on a socket that already listens sets its
// backlog anew, and the socket is the server's protected member.
class Listener final : public httplib::Server {
 public:
  bool SetBacklog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }
};

int HttpCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

void SendError(httplib::Response& res, const absl::Status& s) {
  const int code = HttpCode(s);
  res.status = code;
  res.set_content(absl::StrCat(R"({"error":{"code":)", code, R"(,"status":")",
                               absl::StatusCodeToString(s.code()), R"(","message":")",
                               JsonEscape(std::string(s.message())), "\"}}\n"),
                  "application/json");
}

void SendMessage(httplib::Response& res, const google::protobuf::Message& m) {
  res.status = 200;
  res.set_content(ToJson(m) + "\n", "application/json");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const QueryService* service, Metrics* metrics, std::function<absl::Status()> health,
    const HttpOptions& options) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  auto svr = std::make_unique<Listener>();
  const size_t threads = options.threads, queued = options.max_queued_connections;
  const absl::Duration slice = options.thread_slice;
  svr->new_task_queue = [threads, queued, slice] {
    return new BoundedPool(threads, queued, slice);
  };
  svr->set_read_timeout(options.read_timeout_s, 0);
  svr->set_write_timeout(options.write_timeout_s, 0);
  svr->set_keep_alive_timeout(options.keep_alive_timeout_s);
  svr->set_keep_alive_max_count(options.keep_alive_max_requests);
  svr->set_payload_max_length(options.max_request_bytes);
  // Answers are small: without TCP_NODELAY, Nagle and delayed ACKs stall each
  // request on a kept-alive connection by ~40 ms.
  svr->set_tcp_nodelay(true);

  metrics->Describe("loyalty_http_requests_total", "HTTP requests by route and status code");
  metrics->Describe("loyalty_http_request_duration_seconds", "HTTP request latency by route");
  const std::string token = options.auth_token;

  // Wraps a route: auth, timing, metrics, and no exception ever escapes as a 500
  // for bad input (handlers return statuses).
  auto route = [metrics, token](const std::string& name, bool guarded,
                                std::function<absl::Status(const httplib::Request&,
                                                           httplib::Response&)> fn) {
    Histogram* latency = &metrics->Latency("loyalty_http_request_duration_seconds",
                                           absl::StrCat("route=\"", name, "\""));
    return [=](const httplib::Request& req, httplib::Response& res) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status s;
      if (guarded && !token.empty()) {
        const std::string want = "Bearer " + token;
        const std::string got = req.get_header_value("Authorization");
        if (got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0) {
          s = absl::UnauthenticatedError("a valid bearer token is required");
        }
      }
      if (s.ok()) s = fn(req, res);
      if (!s.ok()) SendError(res, s);
      latency->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      ++metrics->Counter("loyalty_http_requests_total",
                         absl::StrCat("route=\"", name, "\",code=\"", res.status, "\""));
    };
  };

  auto customer_route = [&](const std::string& name, auto call) {
    return route(name, true, [service, call](const httplib::Request& req, httplib::Response& res) {
      v1::CustomerRequest request;
      if (auto s = ParseCustomerRequest(req.matches[1], req.params, &request); !s.ok()) return s;
      auto answer = (service->*call)(request);
      if (!answer.ok()) return answer.status();
      SendMessage(res, *answer);
      return absl::OkStatus();
    });
  };
  svr->Get(R"(/v1/customers/(.+)/balance)", customer_route("balance", &QueryService::GetBalance));
  svr->Get(R"(/v1/customers/(.+)/tier)", customer_route("tier", &QueryService::GetTier));
  svr->Get(R"(/v1/customers/(.+)/churn)", customer_route("churn", &QueryService::GetChurn));
  svr->Get(R"(/v1/customers/(.+)/statement)",
           route("statement", true, [service](const httplib::Request& req, httplib::Response& res) {
             v1::StatementRequest request;
             if (auto s = ParseStatementRequest(req.matches[1], req.params, &request); !s.ok()) {
               return s;
             }
             auto answer = service->GetStatement(request);
             if (!answer.ok()) return answer.status();
             SendMessage(res, *answer);
             return absl::OkStatus();
           }));
  svr->Get("/v1/customers",
           route("customers", true, [service](const httplib::Request& req, httplib::Response& res) {
             v1::ListCustomersRequest request;
             if (auto s = ParseListCustomersRequest(req.params, service->limits().max_page_size,
                                                    &request);
                 !s.ok()) {
               return s;
             }
             auto answer = service->ListCustomers(request);
             if (!answer.ok()) return answer.status();
             SendMessage(res, *answer);
             return absl::OkStatus();
           }));
  svr->Get("/v1/stats",
           route("stats", true, [service](const httplib::Request& req, httplib::Response& res) {
             v1::StatsRequest request;
             if (auto s = ParseStatsRequest(req.params, &request); !s.ok()) return s;
             auto answer = service->GetStats(request);
             if (!answer.ok()) return answer.status();
             SendMessage(res, *answer);
             return absl::OkStatus();
           }));
  svr->Get(R"(/v1/events/(.+))",
           route("event", true, [service](const httplib::Request& req, httplib::Response& res) {
             v1::EventRequest request;
             if (auto s = ParseEventRequest(req.matches[1], req.params, &request); !s.ok()) {
               return s;
             }
             auto answer = service->GetEvent(request);
             if (!answer.ok()) return answer.status();
             SendMessage(res, *answer);
             return absl::OkStatus();
           }));
  svr->Get("/v1/progress",
           route("progress", true, [service](const httplib::Request&, httplib::Response& res) {
             auto answer = service->GetProgress();
             if (!answer.ok()) return answer.status();
             SendMessage(res, *answer);
             return absl::OkStatus();
           }));
  svr->Get("/healthz", route("healthz", false, [health](const httplib::Request&,
                                                       httplib::Response& res) {
             absl::Status s = health ? health() : absl::OkStatus();
             if (!s.ok()) {
               res.status = 503;
               res.set_content(absl::StrCat(R"({"status":"unhealthy","reason":")",
                                            JsonEscape(std::string(s.message())), "\"}\n"),
                               "application/json");
               return absl::OkStatus();
             }
             res.set_content("{\"status\":\"ok\"}\n", "application/json");
             return absl::OkStatus();
           }));
  svr->Get("/metrics", route("metrics", false, [metrics](const httplib::Request&,
                                                        httplib::Response& res) {
             res.set_content(metrics->RenderPrometheus(), "text/plain; version=0.0.4");
             return absl::OkStatus();
           }));
  // Anything else: a JSON 404 (and never a 500).
  svr->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      SendError(res, absl::NotFoundError("no such route"));
    } else if (res.body.empty()) {
      SendError(res, absl::Status(res.status == 413 ? absl::StatusCode::kResourceExhausted
                                                    : absl::StatusCode::kInvalidArgument,
                                  absl::StrCat("HTTP ", res.status)));
    }
  });
  svr->set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr) {
    SendError(res, absl::InternalError("the request failed"));
  });

  int port = options.port;
  if (port == 0) {
    port = svr->bind_to_any_port(options.host);
    if (port < 0) return absl::UnavailableError(absl::StrCat("cannot bind ", options.host));
  } else if (!svr->bind_to_port(options.host, port)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.host, ":", port));
  }
  if (!svr->SetBacklog(options.listen_backlog)) {
    return absl::UnavailableError(absl::StrCat("cannot set the listen backlog of ", options.host,
                                               ":", port, " to ", options.listen_backlog, ": ",
                                               strerror(errno)));
  }
  server->port_ = port;
  server->server_ = std::move(svr);
  httplib::Server* raw = server->server_.get();
  std::atomic<bool>* ended = &server->listen_ended_;
  server->thread_ = std::thread([raw, ended, slice = options.thread_slice] {
    // The accept loop too: clients that reconnect together wait for it.
    if (slice > absl::ZeroDuration()) SetThreadSlice(slice).IgnoreError();
    raw->listen_after_bind();
    *ended = true;
  });
  // httplib's stop() does nothing until the accept loop has started: a Stop right
  // after Start would leave the loop blocked in accept(2), and Stop waiting for it.
  while (!raw->is_running() && !*ended) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return server;
}

void HttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace loyalty
