// End-to-end tests of `loyalty serve` as an operator runs it: the real binary on a
// data directory, answers read over HTTP with curl.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/event_log.h"
#include "projections/projector.h"
#include "tests/testing/raw_db.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

int RunQuiet(const std::string& command) {
  const int status = std::system(absl::StrCat(command, " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// stdout of a shell command.
std::string Output(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// Waits up to `seconds` for `needle` in the file; true if it appeared.
bool WaitFor(const std::string& path, const std::string& needle, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (absl::StrContains(Slurp(path), needle)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The nice value of each thread of process `pid` (/proc/PID/task/TID/stat, field 19).
std::map<int, int> ThreadNices(pid_t pid) {
  std::map<int, int> nices;
  for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"))) {
    const std::string stat = Slurp(task.path().string() + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;  // the thread ended meanwhile
    std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
    int tid = 0, nice = 0;
    if (fields.size() > 16 && absl::SimpleAtoi(task.path().filename().string(), &tid) &&
        absl::SimpleAtoi(fields[16], &nice)) {
      nices[tid] = nice;
    }
  }
  return nices;
}

// Starts `serve` on `data` with the embedded Kafka cluster and `extra` arguments,
// its output to `log`, waits until the output shows `ready`, and returns its pid.
pid_t StartServe(const std::string& data, const std::string& log,
                 const std::vector<std::string>& extra,
                 const std::string& ready = "consuming loyalty.events") {
  std::vector<std::string> args = {LOYALTY_BINARY, "serve", "--data-dir", data, "--embedded-kafka",
                                   "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::filesystem::remove(log);  // what an earlier run left must not be taken for this one's
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    FILE* out = std::fopen(log.c_str(), "w");
    dup2(fileno(out), STDERR_FILENO);
    dup2(fileno(out), STDOUT_FILENO);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(LOYALTY_BINARY, argv.data());
    _exit(127);
  }
  const bool is_ready = WaitFor(log, ready, 60);
  INFO(Slurp(log));
  REQUIRE(is_ready);
  return pid;
}

void StopServe(pid_t pid, const std::string& log) {
  REQUIRE(kill(pid, SIGTERM) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO(Slurp(log));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("serve: outdated projections are rebuilt in the background, answers go on, ingestion follows") {
  // Proves the online rebuild (docs/audit.md): a store whose projections carry an
  // older projection version is answered from while they are rebuilt from the
  // log, switched atomically, and only then does ingestion start.
  testing::TempDir dir;
  const std::string file = dir.Sub("in.jsonl"), data = dir.Sub("data"), log = dir.Sub("serve.log");
  REQUIRE(RunQuiet(absl::StrCat(LOYALTY_BINARY, " produce --file ", file,
                                " --events 20000 --customers 2000 --seed 5")) == 0);
  REQUIRE(RunQuiet(absl::StrCat(LOYALTY_BINARY, " ingest --no-sync --data-dir ", data, " ",
                                file)) == 0);
  testing::EditRaw(data, [](rocksdb::DB* db, testing::RawCfs& cfs) {
    REQUIRE(db->Put(rocksdb::WriteOptions(), cfs.at("projection_meta"), kMetaProjectionVersion, "1")
                .ok());
  });

  const pid_t pid = StartServe(data, log, {}, "HTTP on 127.0.0.1:");
  const std::string text = Slurp(log);
  INFO(text);
  CHECK(absl::StrContains(text, "built by projection version 1"));
  const size_t at = text.find("HTTP on 127.0.0.1:") + std::string("HTTP on 127.0.0.1:").size();
  const std::string port = text.substr(at, text.find(',', at) - at);
  // Answers come from the projections in force, before and after the switch.
  const std::string balance =
      Output(absl::StrCat("curl -s -o /dev/null -w '%{http_code}' localhost:", port,
                          "/v1/customers/c-000001/balance"));
  CHECK(balance == "200");
  REQUIRE(WaitFor(log, "projections rebuilt (generation 1), switched", 120));
  REQUIRE(WaitFor(log, "consuming loyalty.events", 30));
  CHECK(Output(absl::StrCat("curl -s -o /dev/null -w '%{http_code}' localhost:", port,
                            "/v1/customers/c-000001/balance")) == "200");
  // Writing started after the switch and is healthy.
  CHECK(absl::StrContains(Output(absl::StrCat("curl -s localhost:", port, "/healthz")), "ok"));
  StopServe(pid, log);

  {
    LogOptions options;
    options.data_dir = data;
    options.read_only = true;
    auto opened = EventLog::Open(options);
    REQUIRE(opened.ok());
    CHECK((*opened)->projection_generation() == 1);
    auto version = (*opened)->GetProjection(LogBatch::ProjectionCf::kProjectionMeta,
                                            kMetaProjectionVersion);
    REQUIRE(version.ok());
    CHECK(*version == absl::StrCat(kProjectionVersion));
  }
  CHECK(RunQuiet(absl::StrCat(LOYALTY_BINARY, " replay verify --data-dir ", data)) == 0);
}

TEST_CASE("serve: --ingest-nice runs ingestion at that nice value and the rest at 0") {
  testing::TempDir dir;
  const std::string data = dir.Sub("data"), log = dir.Sub("serve.log");
  {
    const pid_t pid = StartServe(data, log, {"--ingest-nice", "19"});
    const std::map<int, int> nices = ThreadNices(pid);
    int at_19 = 0;
    for (const auto& [tid, nice] : nices) at_19 += nice == 19;
    INFO(nices.size() << " threads");
    CHECK(at_19 >= 1);                // the ingest loop's thread
    CHECK(nices.at(pid) == 0);        // the main thread (and the servers) stay at 0
    CHECK(at_19 < static_cast<int>(nices.size()));
    StopServe(pid, log);
  }
  {
    const pid_t pid = StartServe(data, log, {});
    for (const auto& [tid, nice] : ThreadNices(pid)) CHECK(nice == 0);
    StopServe(pid, log);
  }
  // Refused at once (were it taken, `timeout` would end the serve it started: 124).
  const int refused = RunQuiet(absl::StrCat("timeout 20 ", LOYALTY_BINARY, " serve --data-dir ",
                                            data, " --ingest-nice 20 --http 127.0.0.1:0"));
  CHECK(refused != 0);
  CHECK(refused != 124);
}

}  // namespace
}  // namespace loyalty
