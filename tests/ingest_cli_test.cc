// End-to-end tests of `loyalty ingest` and `loyalty replay verify` as a user runs
// them: the real binary in a child process, on files.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/event_log.h"
#include "engine/internal/keys.h"
#include "rocksdb/db.h"
#include "engine/log_verify.h"
#include "loyalty/v1/log.pb.h"
#include "tests/testing/raw_db.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

struct Run {
  int exit_code = -1;
  std::string out;
};

// Runs build/loyalty with `args`, capturing stdout.
Run RunLoyalty(const std::vector<std::string>& args) {
  std::string cmd = LOYALTY_BINARY;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>/dev/null";
  Run run;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) run.out.append(buf, n);
  int status = pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string LastLine(const std::string& s) {
  std::vector<std::string> lines = absl::StrSplit(s, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : lines.back();
}

// `n` events (2026-01-01 onwards, adjustments so they never depend on each other),
// with a malformed line every `bad_every` lines.
void WriteEvents(const std::string& path, int n, int bad_every) {
  std::ofstream f(path);
  for (int i = 1; i <= n; ++i) {
    if (bad_every > 0 && i % bad_every == 0) {
      f << "{\"eventId\":\"bad-" << i << "\", this is not json\n";
      continue;
    }
    f << "{\"eventId\":\"e-" << i << "\",\"customerId\":\"c-" << (i % 97)
      << "\",\"occurredAt\":\"2026-01-01T00:00:00Z\",\"adjustment\":{\"points\":"
      << (i % 50 + 1) << ",\"reason\":\"test\",\"actor\":\"t\"}}\n";
  }
}

std::unique_ptr<EventLog> OpenReadOnly(const std::string& dir) {
  LogOptions options;
  options.data_dir = dir;
  options.read_only = true;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  return std::move(*log);
}

TEST_CASE("ingesting the same file twice appends nothing the second time") {
  // Proves: idempotency by event_id plus dead-letter positions make a re-ingest a
  // no-op, and the summary's last line says so.
  testing::TempDir dir;
  WriteEvents(dir.Sub("in.jsonl"), 1000, 10);
  Run first = RunLoyalty({"ingest", "--data-dir", dir.Sub("data"), dir.Sub("in.jsonl")});
  REQUIRE(first.exit_code == 0);
  REQUIRE(LastLine(first.out) == "appended 900, duplicate 0, dead-lettered 100");
  Run second = RunLoyalty({"ingest", "--data-dir", dir.Sub("data"), dir.Sub("in.jsonl")});
  REQUIRE(second.exit_code == 0);
  REQUIRE(LastLine(second.out) == "appended 0, duplicate 1000, dead-lettered 0");
  auto log = OpenReadOnly(dir.Sub("data"));
  REQUIRE(log->head().seq == 1001);  // the program in force, then one record per line
  Run verify = RunLoyalty({"replay", "verify", "--data-dir", dir.Sub("data")});
  REQUIRE(verify.exit_code == 0);
  REQUIRE(verify.out.find("verified 1001 records") != std::string::npos);
}

TEST_CASE("bad usage exits non-zero") {
  // Proves: a missing required option or unknown subcommand is refused.
  REQUIRE(RunLoyalty({"ingest"}).exit_code != 0);
  REQUIRE(RunLoyalty({"no-such-command"}).exit_code != 0);
  REQUIRE(RunLoyalty({"ingest", "--data-dir", "/tmp/x", "/nonexistent/file"}).exit_code != 0);
  REQUIRE(RunLoyalty({"ingest", "--help"}).exit_code == 0);
}

TEST_CASE("verify exits non-zero on a tampered log") {
  // Proves: the CLI reports a failed verification by its exit status and names the
  // first bad sequence number.
  testing::TempDir dir;
  WriteEvents(dir.Sub("in.jsonl"), 50, 0);
  REQUIRE(RunLoyalty({"ingest", "--data-dir", dir.Sub("data"), dir.Sub("in.jsonl")}).exit_code == 0);
  REQUIRE(RunLoyalty({"replay", "verify", "--data-dir", dir.Sub("data")}).exit_code == 0);
  {
    // Delete record 25 underneath the log API, with raw RocksDB.
    testing::EditRaw(dir.Sub("data"), [](rocksdb::DB* db, testing::RawCfs& cfs) {
      REQUIRE(db->Delete(rocksdb::WriteOptions(), cfs.at("log"), internal::SeqKey(25)).ok());
    });
  }
  Run verify = RunLoyalty({"replay", "verify", "--data-dir", dir.Sub("data")});
  REQUIRE(verify.exit_code == 1);
  REQUIRE(verify.out.find("FAILED at sequence 25") != std::string::npos);
}

TEST_CASE("SIGKILL mid-ingest loses no committed batch and leaves no partial batch") {
  // Proves: a child `loyalty ingest` killed with SIGKILL after it reported committed
  // batches keeps all of them; the log verifies; records and source position agree
  // (no half batch); re-running ingest completes every event exactly once.
  testing::TempDir dir;
  const int kEvents = 200000;
  WriteEvents(dir.Sub("in.jsonl"), kEvents, 0);

  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDERR_FILENO);
    const std::string data = dir.Sub("data"), in = dir.Sub("in.jsonl");
    execl(LOYALTY_BINARY, LOYALTY_BINARY, "ingest", "--data-dir", data.c_str(),
          "--batch-lines", "500", "--print-commits", in.c_str(), (char*)nullptr);
    _exit(127);
  }
  close(pipefd[1]);
  FILE* out = fdopen(pipefd[0], "r");
  char line[256];
  int commits = 0;
  unsigned long long acked_line = 0, acked_seq = 0;
  while (commits < 20 && fgets(line, sizeof line, out) != nullptr) {
    if (sscanf(line, "committed line=%llu seq=%llu", &acked_line, &acked_seq) == 2) ++commits;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  fclose(out);
  REQUIRE(commits == 20);
  REQUIRE(WIFSIGNALED(status));

  {
    auto log = OpenReadOnly(dir.Sub("data"));
    const LogHead head = log->head();
    REQUIRE(head.seq >= acked_seq);
    REQUIRE(head.seq < static_cast<uint64_t>(kEvents));  // it really was cut short
    auto report = VerifyLog(*log);
    REQUIRE(report.ok());
    REQUIRE(report->ok);
    v1::SourcePosition any;
    any.mutable_file()->set_path(dir.Sub("in.jsonl"));
    auto pos = log->SourcePositionOf(any);
    REQUIRE(pos.ok());
    REQUIRE(pos->has_value());
    auto last = log->Read(head.seq);
    REQUIRE(last.ok());
    // Record 1 is the program in force; every line is a valid, distinct event, so
    // line n is record n + 1, and a whole number of batches is stored exactly when
    // the position is one behind the head.
    REQUIRE((*pos)->file().line() + 1 == head.seq);
    REQUIRE(last->source().file().line() + 1 == head.seq);
    REQUIRE((head.seq - 1) % 500 == 0);
  }

  Run rest = RunLoyalty({"ingest", "--data-dir", dir.Sub("data"), dir.Sub("in.jsonl")});
  REQUIRE(rest.exit_code == 0);
  auto log = OpenReadOnly(dir.Sub("data"));
  REQUIRE(log->head().seq == static_cast<uint64_t>(kEvents) + 1);
  std::set<std::string> ids;
  REQUIRE(log->Scan(1, UINT64_MAX, [&](uint64_t, std::string_view, std::string_view bytes,
                                       std::string_view) {
            v1::LogRecord r;
            REQUIRE(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
            if (r.has_program()) return absl::OkStatus();
            REQUIRE(r.has_applied());
            REQUIRE(ids.insert(r.applied().event().event_id()).second);
            return absl::OkStatus();
          }).ok());
  REQUIRE(ids.size() == static_cast<size_t>(kEvents));
}

}  // namespace
}  // namespace loyalty
