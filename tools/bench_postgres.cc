// Bench: the PostgreSQL peer. A PostgreSQL 15 cluster on a temporary directory and
// a unix socket (no TCP), started and stopped here (as the `postgres` user when
// run as root: initdb refuses root), with synchronous_commit on. The same
// generated events as ingest-kafka (protobuf), decoded here, sent as one jsonb
// array per 1000 events to apply_batch() of tools/bench_postgres.sql through a
// `psql` session driven over pipes: one statement, one transaction, one answer
// line per batch.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/status_macros.h"
#include "loyalty/v1/event.pb.h"
#include "tools/bench.h"
#include "tools/produce.h"

#ifndef LOYALTY_BENCH_SQL
#define LOYALTY_BENCH_SQL "tools/bench_postgres.sql"
#endif

extern char** environ;

namespace loyalty::bench {
namespace {

constexpr char kPgBin[] = "/usr/lib/postgresql/15/bin";
constexpr char kPsql[] = "/usr/bin/psql";
// Events per apply_batch call (one transaction each).
constexpr size_t kPgBatch = 1000;
// The socket's port number (only names the socket file; no TCP listener).
constexpr int kPgPort = 54329;
// Bounded waits on PostgreSQL's tools.
constexpr int kPgCtlTimeoutS = 120;

// Runs argv (as `postgres` when root) to completion, output appended to `log`.
absl::Status Run(std::vector<std::string> argv, const std::string& log, bool as_postgres) {
  if (as_postgres && geteuid() == 0) {
    argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot start ", argv[0]));
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), " failed; see ", log));
  }
  return absl::OkStatus();
}

// A started cluster; stopped when destroyed.
class PgCluster {
 public:
  static absl::StatusOr<std::unique_ptr<PgCluster>> Start(const std::string& dir) {
    if (!std::filesystem::exists(absl::StrCat(kPgBin, "/initdb"))) {
      return absl::FailedPreconditionError(
          "PostgreSQL 15 is not installed: run tools/bench_setup.sh (apt-get install "
          "postgresql-15)");
    }
    std::unique_ptr<PgCluster> pg(new PgCluster());
    pg->data_ = dir + "/data";
    pg->socket_ = dir + "/socket";
    pg->log_ = dir + "/pg.log";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(pg->socket_);
    if (geteuid() == 0) {
      // Everything PostgreSQL touches belongs to `postgres`; the path to it must
      // be traversable.
      struct passwd* pw = getpwnam("postgres");
      if (pw == nullptr) return absl::FailedPreconditionError("no user postgres");
      for (auto p = std::filesystem::path(dir); !p.empty() && p != p.root_path();
           p = p.parent_path()) {
        struct stat st;
        if (stat(p.c_str(), &st) == 0) chmod(p.c_str(), st.st_mode | S_IXOTH);
      }
      for (const std::string& d : {dir, pg->socket_}) {
        if (chown(d.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
          return absl::InternalError(absl::StrCat("cannot chown ", d));
        }
      }
      if (chown(pg->log_.c_str(), pw->pw_uid, pw->pw_gid) != 0 && errno != ENOENT) {
        return absl::InternalError("cannot chown the log");
      }
    }
    LOYALTY_RETURN_IF_ERROR(Run({absl::StrCat(kPgBin, "/initdb"), "-D", pg->data_, "-U",
                                 "postgres", "-A", "trust", "-E", "UTF8", "--no-instructions"},
                                dir + "/initdb.log", true));
    const std::string server_options = absl::StrCat(
        "-c listen_addresses= -k ", pg->socket_, " -p ", kPgPort,
        " -c fsync=on -c synchronous_commit=on -c shared_buffers=512MB -c max_wal_size=8GB"
        " -c checkpoint_timeout=30min -c wal_buffers=16MB");
    LOYALTY_RETURN_IF_ERROR(Run({absl::StrCat(kPgBin, "/pg_ctl"), "-D", pg->data_, "-l",
                                 pg->log_, "-w", "-t", absl::StrCat(kPgCtlTimeoutS), "-o",
                                 server_options, "start"},
                                dir + "/pg_ctl.log", true));
    pg->started_ = true;
    return pg;
  }

  ~PgCluster() {
    if (started_) {
      // Errors are in pg_ctl.log; there is nothing more to do about them here.
      Run({absl::StrCat(kPgBin, "/pg_ctl"), "-D", data_, "-m", "fast", "-w", "-t",
           absl::StrCat(kPgCtlTimeoutS), "stop"},
          data_ + "/../pg_ctl.log", true)
          .IgnoreError();
    }
  }

  std::vector<std::string> PsqlArgs(const std::string& db) const {
    return {kPsql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", socket_, "-p",
            absl::StrCat(kPgPort), "-U", "postgres", "-d", db};
  }
  const std::string& log() const { return log_; }
  const std::string& data() const { return data_; }

 private:
  PgCluster() = default;
  std::string data_, socket_, log_;
  bool started_ = false;
};

// A psql session over pipes: statements in, one answer line per statement out.
class PsqlSession {
 public:
  static absl::StatusOr<std::unique_ptr<PsqlSession>> Open(std::vector<std::string> argv,
                                                           const std::string& log) {
    int in[2], out[2];
    if (pipe(in) != 0) return absl::InternalError("pipe");
    if (pipe(out) != 0) {
      close(in[0]);
      close(in[1]);
      return absl::InternalError("pipe");
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::unique_ptr<PsqlSession> s(new PsqlSession());
    const int rc = posix_spawn(&s->pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    s->to_ = fdopen(in[1], "w");
    s->from_ = fdopen(out[0], "r");
    if (rc != 0) {
      s->pid_ = 0;
      return absl::InternalError("cannot start psql");
    }
    return s;
  }
  ~PsqlSession() { Close().IgnoreError(); }

  // Sends one statement and reads its one-line answer.
  absl::StatusOr<std::string> Query(const std::string& sql) {
    if (std::fwrite(sql.data(), 1, sql.size(), to_) != sql.size() || std::fflush(to_) != 0) {
      return absl::InternalError("psql went away (see the PostgreSQL logs)");
    }
    char line[4096];
    if (std::fgets(line, sizeof(line), from_) == nullptr) {
      return absl::InternalError("psql stopped answering (see the PostgreSQL logs)");
    }
    std::string answer(line);
    while (!answer.empty() && answer.back() == '\n') answer.pop_back();
    return answer;
  }

  absl::Status Close() {
    if (to_ != nullptr) std::fclose(to_);
    to_ = nullptr;
    if (from_ != nullptr) std::fclose(from_);
    from_ = nullptr;
    if (pid_ > 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = 0;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return absl::InternalError("psql failed");
    }
    return absl::OkStatus();
  }

 private:
  PsqlSession() = default;
  pid_t pid_ = 0;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      absl::StrAppend(out, "\\u00", absl::Hex(c, absl::kZeroPad2));
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

// One batch element: the decoded event, or a dead letter (the raw bytes in hex).
// The input checks are the cheap ones the engine's validation also makes.
void AppendElement(std::string_view raw, std::string* out) {
  // Decoded as the engine decodes (protobuf's complaints about a string that is
  // not UTF-8 go into the status, not to stderr).
  absl::StatusOr<v1::Event> decoded = DecodeEvent(raw, v1::ENCODING_PROTOBUF);
  const v1::Event e = decoded.ok() ? *std::move(decoded) : v1::Event();
  const char* why = nullptr;
  if (!decoded.ok()) {
    why = "UNDECODABLE";
  } else if (e.event_id().empty() || e.customer_id().empty() || !e.has_occurred_at() ||
             e.payload_case() == v1::Event::PAYLOAD_NOT_SET) {
    why = "MISSING_FIELD";
  } else if (e.event_id().size() > 128 || e.customer_id().size() > 128 ||
             e.event_id().find('\0') != std::string::npos ||
             e.customer_id().find('\0') != std::string::npos) {
    why = "BAD_ID";
  } else if ((e.has_purchase() && e.purchase().amount_minor() <= 0) ||
             (e.has_refund() && e.refund().amount_minor() <= 0) ||
             (e.has_redemption() && e.redemption().points() <= 0) ||
             (e.has_adjustment() && e.adjustment().points() == 0)) {
    why = "BAD_AMOUNT";
  }
  if (!out->empty() && out->back() != '[') out->push_back(',');
  if (why != nullptr) {
    absl::StrAppend(out, "{\"k\":\"dead\",\"why\":\"", why, "\",\"raw\":\"",
                    absl::BytesToHexString(absl::string_view(raw.data(), raw.size())), "\"}");
    return;
  }
  out->append("{\"id\":");
  AppendJsonString(e.event_id(), out);
  out->append(",\"c\":");
  AppendJsonString(e.customer_id(), out);
  absl::StrAppend(out, ",\"t\":", e.occurred_at().seconds());
  switch (e.payload_case()) {
    case v1::Event::kPurchase:
      out->append(",\"k\":\"purchase\",\"o\":");
      AppendJsonString(e.purchase().order_id(), out);
      out->append(",\"cur\":");
      AppendJsonString(e.purchase().currency(), out);
      absl::StrAppend(out, ",\"amt\":", e.purchase().amount_minor());
      break;
    case v1::Event::kRefund:
      out->append(",\"k\":\"refund\",\"o\":");
      AppendJsonString(e.refund().order_id(), out);
      absl::StrAppend(out, ",\"amt\":", e.refund().amount_minor());
      break;
    case v1::Event::kReferral:
      out->append(",\"k\":\"referral\",\"rr\":");
      AppendJsonString(e.referral().referrer_id(), out);
      break;
    case v1::Event::kRedemption:
      out->append(",\"k\":\"redemption\",\"r\":");
      AppendJsonString(e.redemption().redemption_id(), out);
      absl::StrAppend(out, ",\"pts\":", e.redemption().points());
      break;
    case v1::Event::kRedemptionCancel:
      out->append(",\"k\":\"cancel\",\"r\":");
      AppendJsonString(e.redemption_cancel().redemption_id(), out);
      break;
    case v1::Event::kAdjustment:
      absl::StrAppend(out, ",\"k\":\"adjustment\",\"pts\":", e.adjustment().points());
      break;
    default:
      out->append(",\"k\":\"unknown\"");
  }
  out->push_back('}');
}

}  // namespace

absl::StatusOr<BenchResult> RunPostgres(const BenchArgs& args) {
  BenchResult result;
  const std::string sql_file = args.postgres_sql.empty() ? LOYALTY_BENCH_SQL : args.postgres_sql;
  if (!std::filesystem::exists(sql_file)) {
    return absl::NotFoundError(absl::StrCat(sql_file, " not found (--postgres-sql)"));
  }
  // Absolute: the server resolves paths (its socket directory) from its data
  // directory, not from where the bench runs.
  const std::string dir = std::filesystem::absolute(args.work_dir + "/postgres").string();
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<PgCluster> pg, PgCluster::Start(dir));
  const std::string client_log = dir + "/psql.log";
  {
    std::vector<std::string> create = pg->PsqlArgs("postgres");
    create.insert(create.end(), {"-c", "CREATE DATABASE bench"});
    LOYALTY_RETURN_IF_ERROR(Run(create, client_log, false));
    std::vector<std::string> schema = pg->PsqlArgs("bench");
    schema.insert(schema.end(), {"-f", sql_file});
    LOYALTY_RETURN_IF_ERROR(Run(schema, client_log, false));
  }
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<PsqlSession> session,
                           PsqlSession::Open(pg->PsqlArgs("bench"), client_log));
  LOYALTY_ASSIGN_OR_RETURN(std::string sync, session->Query("SHOW synchronous_commit;\n"));
  result.notes["synchronous_commit"] = sync;
  LOYALTY_ASSIGN_OR_RETURN(std::string version, session->Query("SHOW server_version;\n"));
  result.notes["server_version"] = version;

  ProduceOptions produce;
  produce.events = args.postgres_events > 0 ? args.postgres_events : args.events;
  produce.customers = args.customers;
  produce.seed = args.seed;
  produce.format = ProduceFormat::kProtobuf;
  Latencies latencies;
  std::atomic<uint64_t> sent{0};
  uint64_t applied = 0, duplicates = 0, dead = 0;
  absl::Status status;
  std::string batch = "[";
  size_t in_batch = 0;
  auto flush = [&]() -> absl::Status {
    batch.push_back(']');
    if (batch.find("$lb$") != std::string::npos) return absl::InternalError("quote tag in data");
    const auto t0 = std::chrono::steady_clock::now();
    LOYALTY_ASSIGN_OR_RETURN(std::string answer,
                             session->Query(absl::StrCat("SELECT apply_batch($lb$", batch,
                                                         "$lb$::jsonb);\n")));
    latencies.Add(Since(t0));
    std::vector<std::string> parts = absl::StrSplit(answer, ' ');
    uint64_t a = 0, d = 0, x = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &a) || !absl::SimpleAtoi(parts[1], &d) ||
        !absl::SimpleAtoi(parts[2], &x)) {
      return absl::InternalError(absl::StrCat("unexpected answer: ", answer));
    }
    applied += a;
    duplicates += d;
    dead += x;
    sent += in_batch;
    batch.assign(1, '[');  // (GCC 12 warns falsely of an overlap for = "[")
    in_batch = 0;
    return absl::OkStatus();
  };
  Sampler sampler(&sent, std::chrono::milliseconds(500));
  ResetPeakRss();
  const auto start = std::chrono::steady_clock::now();
  GenerateStream(produce, [&](std::string_view, std::string_view value) {
    AppendElement(value, &batch);
    if (++in_batch < kPgBatch) return true;
    status = flush();
    return status.ok();
  });
  if (status.ok() && in_batch > 0) status = flush();
  const double seconds = Since(start);
  sampler.Stop();
  LOYALTY_RETURN_IF_ERROR(status);
  LOYALTY_RETURN_IF_ERROR(session->Close());
  result.figures["messages"] = static_cast<double>(sent.load());
  result.figures["applied"] = static_cast<double>(applied);
  result.figures["duplicates"] = static_cast<double>(duplicates);
  result.figures["dead_letters"] = static_cast<double>(dead);
  result.figures["seconds"] = seconds;
  result.figures["events_per_s"] = sent.load() / seconds;
  result.figures["batch_messages"] = static_cast<double>(kPgBatch);
  latencies.Report("batch_latency", &result);
  result.series["throughput"] = sampler.Rows();
  result.series["batch_latency_cdf"] = latencies.Cdf(200);
  // The whole cluster (WAL included: max_wal_size keeps it) and the tables alone.
  result.figures["disk_bytes_per_event_with_wal"] =
      static_cast<double>(DirectoryBytes(pg->data())) / std::max<uint64_t>(1, sent.load());
  result.figures["disk_bytes_per_event"] =
      static_cast<double>(DirectoryBytes(pg->data() + "/base")) / std::max<uint64_t>(1, sent.load());
  return result;
}

}  // namespace loyalty::bench
