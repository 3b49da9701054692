// `loyalty serve`: the engine's query service over an existing data directory
// (Kafka ingestion joins it in the Kafka issue). Owns the directory for writing,
// answers over HTTP/JSON and gRPC, and stops cleanly on SIGTERM/SIGINT.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/query_service.h"
#include "tools/commands.h"

namespace loyalty {
namespace {

struct ServeArgs {
  std::string data_dir;
  std::string http = "127.0.0.1:8080";
  std::string grpc = "127.0.0.1:9090";
  std::string program_file;
  std::string auth_token_file;
};

bool SplitHostPort(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = text.substr(0, colon);
  return absl::SimpleAtoi(text.substr(colon + 1), port) && *port >= 0 && *port <= 65535;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "loyalty serve: %s\n", message.c_str());
  return 1;
}

int RunServe(const ServeArgs& args) {
  // gRPC starts threads of its own: block the stop signals in every thread
  // (they inherit this mask) and wait for them on this one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::string token;
  if (!args.auth_token_file.empty()) {
    std::ifstream in(args.auth_token_file);
    if (!in) return Fail(absl::StrCat("cannot read ", args.auth_token_file));
    std::stringstream text;
    text << in.rdbuf();
    token = std::string(absl::StripAsciiWhitespace(text.str()));
    if (token.empty()) return Fail(absl::StrCat(args.auth_token_file, " holds no token"));
  }
  HttpOptions http;
  if (!SplitHostPort(args.http, &http.host, &http.port)) {
    return Fail(absl::StrCat("--http ", args.http, " is not ADDR:PORT"));
  }
  http.auth_token = token;
  GrpcOptions grpc;
  grpc.address = args.grpc;
  grpc.auth_token = token;

  LogOptions options;
  options.data_dir = args.data_dir;
  auto log = EventLog::Open(options);
  if (!log.ok()) return Fail(std::string(log.status().message()));
  auto program = LoadProgram(args.program_file);
  if (!program.ok()) return Fail(std::string(program.status().message()));
  auto projector = Projector::Open(log->get(), *program);
  if (!projector.ok()) return Fail(std::string(projector.status().message()));

  Metrics metrics;
  metrics.Describe("loyalty_log_length", "records in the event log");
  metrics.Gauge("loyalty_log_length") = static_cast<int64_t>((*log)->head().seq);
  QueryService service(log->get(), RealClock(),
                       std::make_shared<Rules>((*projector)->rules()));
  const EventLog* log_ptr = log->get();
  auto health = [log_ptr]() -> absl::Status {
    auto snap = log_ptr->TakeSnapshot();  // the store answers
    return snap.ok() ? absl::OkStatus() : snap.status();
  };
  auto http_server = HttpServer::Start(&service, &metrics, health, http);
  if (!http_server.ok()) return Fail(std::string(http_server.status().message()));
  auto grpc_server = GrpcServer::Start(&service, &metrics, grpc);
  if (!grpc_server.ok()) return Fail(std::string(grpc_server.status().message()));
  std::fprintf(stderr, "loyalty serve: %s, log at seq %llu; HTTP on %s:%d, gRPC on port %d\n",
               args.data_dir.c_str(), static_cast<unsigned long long>((*log)->head().seq),
               http.host.c_str(), (*http_server)->port(), (*grpc_server)->port());

  int signal_number = 0;
  sigwait(&stop, &signal_number);
  std::fprintf(stderr, "loyalty serve: signal %d, stopping\n", signal_number);
  (*grpc_server)->Stop();
  (*http_server)->Stop();
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Answer queries (HTTP/JSON and gRPC) over the engine's data directory");
  cmd->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  cmd->add_option("--http", args->http, "HTTP listen address ADDR:PORT (port 0: any)");
  cmd->add_option("--grpc", args->grpc, "gRPC listen address ADDR:PORT (port 0: any)");
  cmd->add_option("--program", args->program_file,
                  "the program settings (JSON, docs/program.md); default: rules.md's");
  cmd->add_option("--auth-token-file", args->auth_token_file,
                  "require 'Authorization: Bearer <token>' on /v1/* and gRPC");
  cmd->callback([args, exit_code] { *exit_code = RunServe(*args); });
}

}  // namespace loyalty
