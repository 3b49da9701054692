#include "server/grpc_server.h"

#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "loyalty/v1/query.grpc.pb.h"

namespace loyalty {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace

struct GrpcServer::Impl final : public v1::LoyaltyQuery::Service {
  Impl(const QueryService* service, Metrics* metrics, std::string token)
      : service_(service), metrics_(metrics), token_(std::move(token)) {}

  template <typename Request, typename Response, typename Call>
  grpc::Status Serve(const char* name, grpc::ServerContext* ctx, const Request& request,
                     Response* response, Call call) {
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = Authorize(ctx);
    if (s.ok()) {
      auto answer = call(request);
      if (answer.ok()) {
        *response = std::move(*answer);
      } else {
        s = answer.status();
      }
    }
    metrics_->Latency("loyalty_grpc_request_duration_seconds", absl::StrCat("rpc=\"", name, "\""))
        .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    ++metrics_->Counter("loyalty_grpc_requests_total",
                        absl::StrCat("rpc=\"", name, "\",code=\"", absl::StatusCodeToString(s.code()),
                                     "\""));
    return ToGrpc(s);
  }

  absl::Status Authorize(grpc::ServerContext* ctx) const {
    if (token_.empty()) return absl::OkStatus();
    const std::string want = "Bearer " + token_;
    auto it = ctx->client_metadata().find("authorization");
    if (it == ctx->client_metadata().end() || it->second.size() != want.size() ||
        CRYPTO_memcmp(it->second.data(), want.data(), want.size()) != 0) {
      return absl::UnauthenticatedError("a valid bearer token is required");
    }
    return absl::OkStatus();
  }

  grpc::Status GetBalance(grpc::ServerContext* c, const v1::CustomerRequest* r,
                          v1::Balance* out) override {
    return Serve("GetBalance", c, *r, out, [&](const auto& q) { return service_->GetBalance(q); });
  }
  grpc::Status GetTier(grpc::ServerContext* c, const v1::CustomerRequest* r,
                       v1::TierStatus* out) override {
    return Serve("GetTier", c, *r, out, [&](const auto& q) { return service_->GetTier(q); });
  }
  grpc::Status GetChurn(grpc::ServerContext* c, const v1::CustomerRequest* r,
                        v1::ChurnSignals* out) override {
    return Serve("GetChurn", c, *r, out, [&](const auto& q) { return service_->GetChurn(q); });
  }
  grpc::Status GetStatement(grpc::ServerContext* c, const v1::StatementRequest* r,
                            v1::Statement* out) override {
    return Serve("GetStatement", c, *r, out,
                 [&](const auto& q) { return service_->GetStatement(q); });
  }
  grpc::Status ListCustomers(grpc::ServerContext* c, const v1::ListCustomersRequest* r,
                             v1::ListCustomersResponse* out) override {
    return Serve("ListCustomers", c, *r, out,
                 [&](const auto& q) { return service_->ListCustomers(q); });
  }
  grpc::Status GetStats(grpc::ServerContext* c, const v1::StatsRequest* r,
                        v1::Stats* out) override {
    return Serve("GetStats", c, *r, out, [&](const auto& q) { return service_->GetStats(q); });
  }
  grpc::Status GetEvent(grpc::ServerContext* c, const v1::EventRequest* r,
                        v1::EventStatus* out) override {
    return Serve("GetEvent", c, *r, out, [&](const auto& q) { return service_->GetEvent(q); });
  }
  grpc::Status GetProgress(grpc::ServerContext* c, const v1::ProgressRequest* r,
                           v1::Progress* out) override {
    return Serve("GetProgress", c, *r, out, [&](const auto&) { return service_->GetProgress(); });
  }

  const QueryService* service_;
  Metrics* metrics_;
  std::string token_;
};

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const QueryService* service,
                                                               Metrics* metrics,
                                                               const GrpcOptions& options) {
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->impl_ = std::make_unique<Impl>(service, metrics, options.auth_token);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->impl_.get());
  grpc::ResourceQuota quota("loyalty-query");
  quota.SetMaxThreads(options.max_threads);
  builder.SetResourceQuota(quota);
  builder.SetMaxReceiveMessageSize(options.max_request_bytes);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.address, " (gRPC)"));
  }
  return server;
}

void GrpcServer::Stop() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }
}

GrpcServer::~GrpcServer() { Stop(); }

}  // namespace loyalty
