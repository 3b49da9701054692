// `loyalty bench`: runs the scenarios of docs/benchmarks.md, prints a table, and
// writes every figure as JSON (--json) and plot data as CSV (--plot-data).
#include <signal.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "tools/bench.h"
#include "tools/commands.h"

namespace loyalty {
namespace {

using bench::BenchArgs;
using bench::BenchResult;

struct BenchCommandArgs {
  BenchArgs bench;
  std::vector<std::string> scenarios;
  std::string json_file;
};

const std::vector<std::string>& KnownScenarios() {
  static const auto* names = new std::vector<std::string>{
      "ingest-file", "replay", "query", "ingest-kafka", "ingest-kafka-protobuf", "raw",
      "postgres", "all"};
  return *names;
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

struct Target {
  std::string name;
  double value = NAN;
  double target = 0;
  bool at_most = false;  // the value must not exceed the target
};

std::string ReadLoadAvg() {
  std::ifstream in("/proc/loadavg");
  std::string line;
  std::getline(in, line);
  return line;
}

int RunBench(const BenchCommandArgs& command) {
  BenchArgs args = command.bench;
  // Stop signals go to one thread that cleans up (the work directory) before
  // exiting; every other thread, gRPC's included, has them blocked.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGUSR2);  // our own wake-up of the watcher at the end
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  bool own_work_dir = false;
  if (args.work_dir.empty()) {
    char tmpl[] = "/tmp/loyalty-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::fprintf(stderr, "loyalty bench: cannot create a work directory\n");
      return 1;
    }
    args.work_dir = tmpl;
    own_work_dir = true;
  } else {
    std::filesystem::create_directories(args.work_dir);
  }
  const std::string work_dir = args.work_dir;
  const bool remove_work_dir = own_work_dir && !args.keep_work_dir;
  std::thread watcher([stop, work_dir, remove_work_dir] {
    int sig = 0;
    sigwait(&stop, &sig);
    if (sig == SIGUSR2) return;  // our own wake-up at the end
    std::fprintf(stderr, "loyalty bench: signal %d, stopping\n", sig);
    // PostgreSQL, if it runs, is a daemon of its own: stop it before leaving.
    const std::string pg_data = work_dir + "/postgres/data";
    if (std::filesystem::exists(pg_data + "/postmaster.pid")) {
      const std::string cmd = absl::StrCat(
          geteuid() == 0 ? "runuser -u postgres -- " : "",
          "/usr/lib/postgresql/15/bin/pg_ctl -D ", pg_data, " -m immediate -w stop >/dev/null 2>&1");
      if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "loyalty bench: pg_ctl stop failed\n");
    }
    std::error_code ec;
    if (remove_work_dir) std::filesystem::remove_all(work_dir, ec);
    _exit(128 + sig);
  });
  // Wakes the watcher with the signal it takes for "done".
  auto end_watcher = [&] { pthread_kill(watcher.native_handle(), SIGUSR2); };

  std::vector<std::string> wanted = command.scenarios;
  if (wanted.empty() || std::find(wanted.begin(), wanted.end(), "all") != wanted.end()) {
    wanted = {"ingest-file", "replay", "query", "ingest-kafka", "raw", "postgres"};
  }
  auto want = [&](const std::string& s) {
    return std::find(wanted.begin(), wanted.end(), s) != wanted.end();
  };

  const std::string load_start = ReadLoadAvg();
  std::vector<std::pair<std::string, BenchResult>> results;
  std::vector<std::pair<std::string, std::string>> failures;
  auto run = [&](const std::string& name, const std::function<absl::StatusOr<BenchResult>()>& fn) {
    std::fprintf(stderr, "loyalty bench: %s ...\n", name.c_str());
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<BenchResult> r = fn();
    if (!r.ok()) {
      std::fprintf(stderr, "loyalty bench: %s failed: %s\n", name.c_str(),
                   r.status().ToString().c_str());
      failures.emplace_back(name, r.status().ToString());
      return;
    }
    r->figures["scenario_seconds"] = bench::Since(start);
    std::fprintf(stderr, "loyalty bench: %s done in %.1f s\n", name.c_str(), bench::Since(start));
    results.emplace_back(name, std::move(*r));
  };
  auto figure = [&](const std::string& scenario, const std::string& name) -> double {
    for (auto& [n, r] : results) {
      if (n == scenario) {
        auto it = r.figures.find(name);
        if (it != r.figures.end()) return it->second;
      }
    }
    return NAN;
  };

  const std::string file_dir = work_dir + "/file-log";
  if (want("ingest-file")) run("ingest-file", [&] { return bench::RunIngestFile(args, file_dir); });
  if (want("replay")) run("replay", [&] { return bench::RunReplay(args, file_dir); });
  if (want("query")) run("query", [&] { return bench::RunQueries(args, file_dir); });
  if (want("ingest-kafka") || want("ingest-kafka-protobuf")) {
    run("ingest-kafka-mock-protobuf", [&] { return bench::RunIngestKafka(args, false, ""); });
  }
  if (want("ingest-kafka")) {
    run("ingest-kafka-mock-json", [&] { return bench::RunIngestKafka(args, true, ""); });
    if (!args.brokers.empty()) {
      run("ingest-kafka-broker-protobuf",
          [&] { return bench::RunIngestKafka(args, false, args.brokers); });
      run("ingest-kafka-broker-json", [&] { return bench::RunIngestKafka(args, true, args.brokers); });
    }
  }
  if (want("raw")) {
    run("raw-kafka-mock", [&] { return bench::RunRawKafka(args, ""); });
    if (!args.brokers.empty()) {
      run("raw-kafka-broker", [&] { return bench::RunRawKafka(args, args.brokers); });
    }
    // The engine's batch size on the Kafka path, when measured; else KafkaSource's maximum.
    double batch = figure("ingest-kafka-mock-protobuf", "batch_messages_avg");
    if (!std::isfinite(batch) || batch < 1) batch = 5000;
    run("raw-rocksdb", [&] { return bench::RunRawRocksDb(args, static_cast<size_t>(batch)); });
  }
  if (want("postgres")) run("postgres", [&] { return bench::RunPostgres(args); });
  const std::string load_end = ReadLoadAvg();

  // Ratios and targets.
  std::map<std::string, double> ratios;
  auto ratio = [&](const std::string& name, double a, double b) {
    if (std::isfinite(a) && std::isfinite(b) && b > 0) ratios[name] = a / b;
  };
  const double kafka_pb = figure("ingest-kafka-mock-protobuf", "events_per_s");
  const double file_rate = figure("ingest-file", "events_per_s");
  const double pg = figure("postgres", "events_per_s");
  ratio("ingest_kafka_protobuf_over_raw_rocksdb", kafka_pb, figure("raw-rocksdb", "append_per_s"));
  ratio("ingest_kafka_protobuf_over_raw_rocksdb_with_index", kafka_pb,
        figure("raw-rocksdb", "append_with_random_key_index_per_s"));
  ratio("ingest_kafka_protobuf_over_raw_kafka", kafka_pb, figure("raw-kafka-mock", "consume_per_s"));
  ratio("ingest_kafka_broker_protobuf_over_raw_kafka_broker",
        figure("ingest-kafka-broker-protobuf", "events_per_s"),
        figure("raw-kafka-broker", "consume_per_s"));
  ratio("ingest_kafka_protobuf_over_postgres", kafka_pb, pg);
  ratio("ingest_file_over_postgres", file_rate, pg);
  ratio("ingest_kafka_json_over_protobuf", figure("ingest-kafka-mock-json", "events_per_s"),
        kafka_pb);

  auto r = [&](const std::string& n) {
    auto it = ratios.find(n);
    return it == ratios.end() ? NAN : it->second;
  };
  std::vector<Target> targets = {
      {"ingest end to end protobuf (mock) events/s", kafka_pb, 200'000},
      {"ingest protobuf / raw RocksDB append", r("ingest_kafka_protobuf_over_raw_rocksdb"), 0.40},
      {"ingest protobuf / PostgreSQL", r("ingest_kafka_protobuf_over_postgres"), 20},
      {"JSON-lines file ingest / PostgreSQL", r("ingest_file_over_postgres"), 10},
      {"verify events/s", figure("replay", "verify_events_per_s"), 500'000},
      {"rebuild events/s", figure("replay", "rebuild_events_per_s"), 1'000'000},
      {"balance over HTTP p99 ms at the paced rate while ingesting",
       figure("query", absl::StrCat("ingesting_http_balance_paced", args.paced_qps, "_p99_ms")), 2,
       true},
      {"  ... and the rate achieved (QPS)",
       figure("query", absl::StrCat("ingesting_http_balance_paced", args.paced_qps, "_qps")),
       static_cast<double>(args.paced_qps) * 0.99},
      {"  ... with ingestion beside it (events/s)",
       figure("query", absl::StrCat("ingesting_http_balance_paced", args.paced_qps,
                                    "_ingest_events_per_s")),
       1},
      {"peak RSS MiB, file ingest", figure("ingest-file", "peak_rss_mib"), 1024, true},
      {"peak RSS MiB, Kafka protobuf ingest (mock cluster in-process)",
       figure("ingest-kafka-mock-protobuf", "peak_rss_mib"), 1024, true},
      {"bytes/event on disk after compaction (file ingest)",
       figure("ingest-file", "disk_bytes_per_event"), 150, true},
  };

  // The table.
  std::printf("loyalty bench: %llu events, %llu customers, seed %llu, work dir %s\n",
              static_cast<unsigned long long>(args.events),
              static_cast<unsigned long long>(args.customers),
              static_cast<unsigned long long>(args.seed), work_dir.c_str());
  std::printf("load average at start: %s; at end: %s\n\n", load_start.c_str(), load_end.c_str());
  for (auto& [name, result] : results) {
    std::printf("%s\n", name.c_str());
    for (const auto& [k, v] : result.figures) {
      std::printf("  %-52s %14s\n", k.c_str(), absl::StrFormat("%.6g", v).c_str());
    }
    for (const auto& [k, v] : result.notes) std::printf("  %-52s %14s\n", k.c_str(), v.c_str());
  }
  if (!ratios.empty()) std::printf("ratios\n");
  for (const auto& [k, v] : ratios) std::printf("  %-52s %14.3f\n", k.c_str(), v);
  std::printf("targets\n");
  for (const Target& t : targets) {
    if (!std::isfinite(t.value)) {
      std::printf("  %-60s %12s\n", t.name.c_str(), "not run");
      continue;
    }
    const bool met = t.at_most ? t.value <= t.target : t.value >= t.target;
    const double margin = t.at_most ? (t.target - t.value) / t.target : (t.value - t.target) / t.target;
    // How far the figure is past the target, or short of it ("met" or "MISSED" says which).
    std::printf("  %-60s %12.4g (target %s %g): %s by %.0f%%\n", t.name.c_str(), t.value,
                t.at_most ? "<=" : ">=", t.target, met ? "met" : "MISSED",
                std::abs(margin) * 100);
  }
  for (const auto& [name, why] : failures) std::printf("FAILED %s: %s\n", name.c_str(), why.c_str());

  if (!command.json_file.empty()) {
    std::ofstream out(command.json_file);
    struct utsname u;
    uname(&u);
    out << "{\n  \"args\": {\"events\": " << args.events << ", \"customers\": " << args.customers
        << ", \"seed\": " << args.seed << ", \"seconds\": " << args.seconds
        << ", \"clients\": [" << absl::StrJoin(args.clients, ", ") << "], \"paced_qps\": "
        << args.paced_qps << ", \"brokers\": " << JsonString(args.brokers)
        << ", \"scenarios\": [";
    for (size_t i = 0; i < wanted.size(); ++i) out << (i ? ", " : "") << JsonString(wanted[i]);
    out << "]},\n  \"machine\": {\"nproc\": " << std::thread::hardware_concurrency()
        << ", \"kernel\": " << JsonString(u.release) << ", \"loadavg_start\": "
        << JsonString(load_start) << ", \"loadavg_end\": " << JsonString(load_end) << "},\n";
    out << "  \"scenarios\": {";
    for (size_t i = 0; i < results.size(); ++i) {
      auto& [name, result] = results[i];
      out << (i ? ",\n" : "\n") << "    " << JsonString(name) << ": {";
      bool first = true;
      for (const auto& [k, v] : result.figures) {
        out << (first ? "" : ", ") << JsonString(k) << ": " << JsonNumber(v);
        first = false;
      }
      for (const auto& [k, v] : result.notes) {
        out << (first ? "" : ", ") << JsonString(k) << ": " << JsonString(v);
        first = false;
      }
      out << "}";
    }
    out << "\n  },\n  \"ratios\": {";
    bool first = true;
    for (const auto& [k, v] : ratios) {
      out << (first ? "" : ", ") << JsonString(k) << ": " << JsonNumber(v);
      first = false;
    }
    out << "},\n  \"targets\": [";
    for (size_t i = 0; i < targets.size(); ++i) {
      const Target& t = targets[i];
      const bool ran = std::isfinite(t.value);
      const bool met = ran && (t.at_most ? t.value <= t.target : t.value >= t.target);
      out << (i ? ",\n" : "\n") << "    {\"name\": " << JsonString(t.name)
          << ", \"value\": " << JsonNumber(t.value) << ", \"target\": " << JsonNumber(t.target)
          << ", \"at_most\": " << (t.at_most ? "true" : "false")
          << ", \"met\": " << (ran ? (met ? "true" : "false") : "null") << "}";
    }
    out << "\n  ],\n  \"failures\": {";
    for (size_t i = 0; i < failures.size(); ++i) {
      out << (i ? ", " : "") << JsonString(failures[i].first) << ": "
          << JsonString(failures[i].second);
    }
    out << "}\n}\n";
    if (!out) std::fprintf(stderr, "loyalty bench: writing %s failed\n", command.json_file.c_str());
  }
  if (!args.plot_data_dir.empty()) {
    std::filesystem::create_directories(args.plot_data_dir);
    for (auto& [name, result] : results) {
      for (const auto& [series, rows] : result.series) {
        std::ofstream out(absl::StrCat(args.plot_data_dir, "/", name, ".", series, ".csv"));
        for (const auto& row : rows) out << absl::StrJoin(row, " ") << "\n";
      }
    }
  }
  end_watcher();
  watcher.join();
  if (remove_work_dir) {
    std::error_code ec;
    std::filesystem::remove_all(work_dir, ec);
  }
  return failures.empty() ? 0 : 1;
}

}  // namespace

void AddBenchCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<BenchCommandArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Benchmarks (docs/benchmarks.md): ingest-file, ingest-kafka, replay, query, raw "
      "(librdkafka and RocksDB alone), postgres (the PostgreSQL peer), or all");
  cmd->add_option("scenario", args->scenarios, "which scenarios (default: all)")
      ->check(CLI::IsMember(KnownScenarios()));
  cmd->add_option("--events", args->bench.events, "events per scenario")
      ->check(CLI::Range(uint64_t{1}, bench::kMaxEvents));
  cmd->add_option("--customers", args->bench.customers, "distinct customers")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  cmd->add_option("--seconds", args->bench.seconds, "seconds per query level")
      ->check(CLI::Range(1, bench::kMaxSeconds));
  cmd->add_option("--seed", args->bench.seed, "the generator's seed");
  cmd->add_option("--brokers", args->bench.brokers,
                  "a real Kafka broker (host:port) for ingest-kafka and raw, besides the mock");
  cmd->add_option("--json", args->json_file, "write every figure to this file as JSON");
  cmd->add_option("--plot-data", args->bench.plot_data_dir,
                  "write throughput and latency series as CSV into this directory");
  cmd->add_option("--work-dir", args->bench.work_dir,
                  "where data directories go (default: a fresh directory under /tmp, removed)");
  cmd->add_flag("--keep-work-dir", args->bench.keep_work_dir, "keep the work directory");
  cmd->add_option("--clients", args->bench.clients, "query concurrency levels")
      ->check(CLI::Range(1, bench::kMaxClients));
  cmd->add_flag("--no-pipeline{false}", args->bench.pipelined,
                "ingest each batch before deciding the next (default: pipelined, as "
                "`loyalty ingest` and `serve` run)");
  cmd->add_option("--ingest-nice", args->bench.ingest_nice,
                  "query: nice value (0-19) of the ingestion beside the queries; above 0 "
                  "RocksDB's background threads run at 19 too (default 0)")
      ->check(CLI::Range(0, 19));
  cmd->add_option("--query-slice-us", args->bench.query_slice_us,
                  "query: the time slice (microseconds) of the HTTP server's threads, as "
                  "`serve --query-slice-us`; 0: the kernel's default (default 100)")
      ->check(CLI::Range(0, 100'000));
  cmd->add_option("--client-slice-us", args->bench.client_slice_us,
                  "query: the time slice (microseconds) of the load generator's client "
                  "threads; 0: the kernel's default (default 0)")
      ->check(CLI::Range(0, 100'000));
  cmd->add_option("--requests-per-client", args->bench.requests_per_client,
                  "requests per client and level at most")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  cmd->add_option("--paced-qps", args->bench.paced_qps,
                  "the rate of the paced balance run over HTTP (0: skip)")
      ->check(CLI::Range(0, 1'000'000));
  cmd->add_option("--postgres-events", args->bench.postgres_events,
                  "events applied to PostgreSQL (default: --events)")
      ->check(CLI::Range(uint64_t{0}, bench::kMaxEvents));
  cmd->add_option("--postgres-sql", args->bench.postgres_sql,
                  "the peer's schema and functions (default: tools/bench_postgres.sql)");
  cmd->callback([args, exit_code] { *exit_code = RunBench(*args); });
}

}  // namespace loyalty
