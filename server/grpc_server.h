// gRPC transport of the query service: loyalty.v1.LoyaltyQuery, answering with the
// same messages as HTTP; absl status codes map one to one onto gRPC's.
#ifndef LOYALTY_SERVER_GRPC_SERVER_H_
#define LOYALTY_SERVER_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/metrics.h"
#include "server/query_service.h"

namespace grpc {
class Server;
}

namespace loyalty {

struct GrpcOptions {
  // "host:port"; port 0 picks a free one (see GrpcServer::port()). Default: loopback.
  std::string address = "127.0.0.1:9090";
  // Handler threads at most (a gRPC resource quota); a call beyond them is
  // RESOURCE_EXHAUSTED. Default: 64 (8 turned 16 concurrent clients away).
  int max_threads = 64;
  // Largest request accepted. Default: 16 KiB (requests are small).
  int max_request_bytes = 16 * 1024;
  // When non-empty, every call needs metadata `authorization: Bearer <token>`.
  std::string auth_token;
};

class GrpcServer {
 public:
  // `service` and `metrics` are not owned and must outlive the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const QueryService* service,
                                                           Metrics* metrics,
                                                           const GrpcOptions& options);
  ~GrpcServer();  // stops
  int port() const { return port_; }
  void Stop();

 private:
  GrpcServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace loyalty

#endif  // LOYALTY_SERVER_GRPC_SERVER_H_
