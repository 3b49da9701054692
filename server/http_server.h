// HTTP/JSON transport of the query service (docs/api.md): cpp-httplib, answers
// printed by protobuf's JSON mapping from the same messages gRPC returns.
#ifndef LOYALTY_SERVER_HTTP_SERVER_H_
#define LOYALTY_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/metrics.h"
#include "server/query_service.h"

namespace httplib {
class Server;
}

namespace loyalty {

struct HttpOptions {
  // Listen address. Default: loopback only.
  std::string host = "127.0.0.1";
  // 0 picks a free port (see HttpServer::port()).
  int port = 8080;
  // Worker threads; a kept-alive connection holds one while it lasts, so this is
  // also the number of clients served at once. Default: 32 (queries are short;
  // waits are bounded).
  size_t threads = 32;
  // Connections queued for a worker before the accept loop stops taking more (the
  // kernel backlog then pushes back). Default: 512.
  size_t max_queued_connections = 512;
  // The listening socket's backlog: connections the kernel completes before the
  // accept loop takes them (capped by net.core.somaxconn). A SYN that finds it full
  // is dropped and the client sends it again only after a second, so a small backlog
  // stalls clients that connect together (httplib's own is 5). Default: 1024.
  int listen_backlog = 1024;
  // Per-connection socket timeouts, so a slow client cannot hold a worker.
  int read_timeout_s = 5;
  int write_timeout_s = 5;
  int keep_alive_timeout_s = 5;
  size_t keep_alive_max_requests = 1000;
  // Requests are GETs: anything larger than this is refused.
  size_t max_request_bytes = 16 * 1024;
  // When non-empty, /v1/* requires `Authorization: Bearer <token>`.
  std::string auth_token;
  // The time slice the workers and the accept loop ask the scheduler for (SetThreadSlice,
  // engine/cpu_priority.h): shorter than the kernel's default (about 1.5-3 ms), so a
  // worker woken by a request preempts a busy ingestion thread at once instead of
  // waiting for its slice to end. Zero leaves the kernel's default. Default: 100 us
  // (docs/benchmarks.md, run Y).
  absl::Duration thread_slice = absl::Microseconds(100);
};

class HttpServer {
 public:
  // Binds and starts serving on a thread of its own. `service` and `metrics` are
  // not owned and must outlive the server. `health` says whether the engine is
  // healthy (ingestion not stuck, store writable); it may be empty.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const QueryService* service, Metrics* metrics, std::function<absl::Status()> health,
      const HttpOptions& options);
  ~HttpServer();  // stops

  int port() const { return port_; }
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_ended_{false};  // the accept loop has returned
  int port_ = 0;
};

}  // namespace loyalty

#endif  // LOYALTY_SERVER_HTTP_SERVER_H_
