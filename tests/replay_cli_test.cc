// End-to-end tests of `loyalty replay` as an auditor runs it: the real binary on a
// data directory filled by `loyalty produce` + `loyalty ingest`.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "projections/ledger.h"
#include "projections/ledger_reader.h"
#include "projections/program.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

struct Run {
  int exit_code = -1;
  std::string out;
  long max_rss_kb = 0;
};

// Runs build/loyalty with `args` in a child, capturing stdout and its peak RSS.
Run RunLoyalty(const std::vector<std::string>& args) {
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    FILE* devnull = std::fopen("/dev/null", "w");
    dup2(fileno(devnull), STDERR_FILENO);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(LOYALTY_BINARY));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(LOYALTY_BINARY, argv.data());
    _exit(127);
  }
  close(pipefd[1]);
  Run run;
  char buf[65536];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) run.out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.max_rss_kb = usage.ru_maxrss;
  return run;
}

// A data directory holding `events` generated events.
std::string Fill(const testing::TempDir& dir, const std::string& name, int events) {
  const std::string file = dir.Sub(name + ".jsonl"), data = dir.Sub(name);
  REQUIRE(RunLoyalty({"produce", "--file", file, "--events", std::to_string(events), "--customers",
                      "500", "--seed", "11"})
              .exit_code == 0);
  REQUIRE(RunLoyalty({"ingest", "--no-sync", "--data-dir", data, file}).exit_code == 0);
  return data;
}

TEST_CASE("replay: statement totals equal the balance answer for the same as_of") {
  // Proves the statement's arithmetic agrees with the query path for several
  // customers and times.
  testing::TempDir dir;
  const std::string data = Fill(dir, "s", 5000);
  LogOptions options;
  options.data_dir = data;
  options.read_only = true;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  const Rules rules(DefaultProgram());
  LedgerReader reader(log->get(), &rules);
  int compared = 0;
  for (const char* customer : {"c-000001", "c-000002", "c-000003", "c-000010", "c-000100"}) {
    for (int64_t back_days : {0, 30, 120, 300}) {
      const int64_t as_of = absl::ToUnixSeconds(absl::Now()) - back_days * kDaySeconds;
      auto state = reader.StateAsOf(customer, as_of);
      REQUIRE(state.ok());
      if (!state->has_value()) continue;
      const BalanceView want = EvaluateBalance(rules, **state, as_of);
      const std::string as_of_text = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                                      absl::FromUnixSeconds(as_of), absl::UTCTimeZone());
      Run r = RunLoyalty({"replay", "statement", "--data-dir", data, "--customer", customer,
                          "--as-of", as_of_text, "--format", "json"});
      REQUIRE(r.exit_code == 0);
      std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
      REQUIRE_FALSE(lines.empty());
      google::protobuf::Struct last;
      REQUIRE(google::protobuf::util::JsonStringToMessage(lines.back(), &last).ok());
      const auto& totals = last.fields().at("totals").struct_value().fields();
      CHECK(totals.at("available").number_value() == want.available);
      CHECK(totals.at("pending").number_value() == want.pending);
      CHECK(totals.at("earned").number_value() == want.earned);
      CHECK(totals.at("redeemed").number_value() == want.redeemed);
      CHECK(totals.at("expired").number_value() == want.expired);
      CHECK(totals.at("debt").number_value() == want.debt);
      ++compared;
    }
  }
  CHECK(compared >= 10);
}

TEST_CASE("replay: verify passes, digest round-trips, and export memory does not grow with the log") {
  // Proves: the audit of a generated log passes; a kept digest verifies; export of
  // a log 10x larger peaks at about the same RSS (it streams record by record).
  testing::TempDir dir;
  const std::string small = Fill(dir, "small", 4000);
  const std::string large = Fill(dir, "large", 40000);
  Run verify = RunLoyalty({"replay", "verify", "--data-dir", large});
  INFO(verify.out);
  REQUIRE(verify.exit_code == 0);
  REQUIRE(RunLoyalty({"replay", "digest", "--data-dir", large, "--out", dir.Sub("d.txt")}).exit_code == 0);
  CHECK(RunLoyalty({"replay", "verify", "--data-dir", large, "--digest", dir.Sub("d.txt")}).exit_code == 0);

  Run a = RunLoyalty({"replay", "export", "--data-dir", small, "--format", "jsonl"});
  Run b = RunLoyalty({"replay", "export", "--data-dir", large, "--format", "csv"});
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  const size_t lines_a = std::count(a.out.begin(), a.out.end(), '\n');
  const size_t lines_b = std::count(b.out.begin(), b.out.end(), '\n');
  CHECK(lines_b > 8 * lines_a);
  INFO("peak RSS small " << a.max_rss_kb << " KiB, large " << b.max_rss_kb << " KiB");
  CHECK(b.max_rss_kb < 2 * a.max_rss_kb);
}

TEST_CASE("replay: verify runs beside a live writer") {
  // Proves the read-only audit: it opens while `loyalty ingest` holds the
  // directory's lock and checks what is committed.
  testing::TempDir dir;
  const std::string data = Fill(dir, "live", 2000);
  REQUIRE(RunLoyalty({"produce", "--file", dir.Sub("more.jsonl"), "--events", "60000", "--seed", "12"})
              .exit_code == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    FILE* devnull = std::fopen("/dev/null", "w");
    dup2(fileno(devnull), STDOUT_FILENO);
    dup2(fileno(devnull), STDERR_FILENO);
    const std::string more = dir.Sub("more.jsonl");
    execl(LOYALTY_BINARY, LOYALTY_BINARY, "ingest", "--data-dir", data.c_str(), more.c_str(),
          (char*)nullptr);
    _exit(127);
  }
  Run v = RunLoyalty({"replay", "verify", "--data-dir", data});
  int status = 0;
  waitpid(pid, &status, 0);
  INFO(v.out);
  CHECK(v.out.find("verified") != std::string::npos);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(RunLoyalty({"replay", "verify", "--data-dir", data}).exit_code == 0);
}

}  // namespace
}  // namespace loyalty
