// `loyalty bench` (docs/benchmarks.md): the scenarios and what they share.
//
// Each scenario runs in this process, sized by BenchArgs, and returns a
// BenchResult: named figures (numbers), notes (strings), and series for plots.
// Scenarios start and stop everything they need (mock clusters, servers,
// PostgreSQL) on every exit path; a scenario that cannot run returns an error
// and the others still run.
#ifndef LOYALTY_TOOLS_BENCH_H_
#define LOYALTY_TOOLS_BENCH_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace loyalty {
class EventLog;
class KafkaProducer;
class MockCluster;
class Projector;
struct ProduceOptions;
}  // namespace loyalty

namespace loyalty::bench {

// Bounds on what the command line may ask for: a benchmark is never unbounded.
inline constexpr uint64_t kMaxEvents = 50'000'000;
inline constexpr int kMaxSeconds = 3600;
inline constexpr int kMaxClients = 256;

struct BenchArgs {
  uint64_t events = 1'000'000;
  uint64_t customers = 1'000'000;
  uint64_t seed = 1;
  // Per query level, and the cap on other timed phases that have no natural end.
  int seconds = 10;
  // Working directory (data directories, the generated input, PostgreSQL's
  // cluster). Removed at the end unless keep_work_dir.
  std::string work_dir;
  bool keep_work_dir = false;
  // A real Kafka broker (host:port) for ingest-kafka, besides the mock cluster.
  std::string brokers;
  // Query concurrency levels.
  std::vector<int> clients = {1, 4, 16};
  // Requests per client and level at most.
  uint64_t requests_per_client = 200'000;
  // Target rate of the paced balance run (0: skip it).
  int paced_qps = 10'000;
  // The nice value of the ingestion that runs beside the queries (above 0, RocksDB's
  // background threads run at 19 too): an experiment in leaving the queries the CPU
  // (docs/benchmarks.md, run M). Default 0: the same priority.
  int ingest_nice = 0;
  // The time slice of the HTTP server's threads, as `serve --query-slice-us`
  // (0: the kernel's default).
  int query_slice_us = 100;
  // The time slice the load generator's client threads ask for (0: the kernel's
  // default). The clients share the engine's two cores; clients on other machines
  // would not wait behind its ingestion to send or to read an answer.
  int client_slice_us = 0;
  // Ingestion pipelined as `loyalty ingest` and `serve` run it (Ingestor::
  // set_pipelined); --no-pipeline measures it without.
  bool pipelined = true;
  // Events applied to PostgreSQL (0: the same as events).
  uint64_t postgres_events = 0;
  // The SQL file (tools/bench_postgres.sql); found beside the binary's source when empty.
  std::string postgres_sql;
  // Directory for plot data (CSV); empty: none.
  std::string plot_data_dir;
};

// One scenario's outcome.
struct BenchResult {
  std::map<std::string, double> figures;
  std::map<std::string, std::string> notes;
  // name -> rows of (x, y...) for plots.
  std::map<std::string, std::vector<std::vector<double>>> series;
};

// Latency samples (seconds); percentiles by sorting. Thread-compatible.
class Latencies {
 public:
  void Add(double seconds) {
    samples_.push_back(seconds);
    sorted_ = false;
  }
  void Merge(const Latencies& other);
  size_t count() const { return samples_.size(); }
  // q in [0, 1]; 0 when empty.
  double Quantile(double q);
  double Max();
  // Puts name_p50_ms, name_p99_ms, name_max_ms into `figures`.
  void Report(const std::string& name, BenchResult* result);
  // A CDF of at most `points` rows (latency ms, fraction) for plots.
  std::vector<std::vector<double>> Cdf(size_t points);

 private:
  void Sort();
  std::vector<double> samples_;
  bool sorted_ = true;
};

// Peak resident set size of this process since the last ResetPeakRss (VmHWM,
// reset through /proc/self/clear_refs), in bytes.
void ResetPeakRss();
uint64_t PeakRssBytes();
uint64_t CurrentRssBytes();

// Samples a counter (and the RSS) every `interval` on a thread of its own, for a
// throughput-over-time plot. Stop() (or the destructor) ends it.
class Sampler {
 public:
  Sampler(const std::atomic<uint64_t>* counter, std::chrono::milliseconds interval);
  ~Sampler();
  void Stop();
  // Rows (seconds since start, counter per second over the interval, RSS MiB).
  std::vector<std::vector<double>> Rows() const;

 private:
  const std::atomic<uint64_t>* counter_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::vector<double>> rows_;
};

// Seconds on a steady clock since `start`.
inline double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Total size of the regular files under `dir`.
uint64_t DirectoryBytes(const std::string& dir);

// Opens a closed data directory with the options it was written with, compacts
// every column family fully, and closes it again. `cf_bytes`, if given, gets each
// column family's table bytes after compaction.
absl::Status CompactDataDir(const std::string& dir,
                            std::map<std::string, uint64_t>* cf_bytes = nullptr);

// Writes the generated stream (GenerateStream, JSON) to `path`, one line each.
absl::Status WriteJsonLines(const BenchArgs& args, const std::string& path);

// Scenarios. `data_dir` names the log they create or read.
// Kafka scenarios: partitions of the mock topic (the mock keeps ~5 MiB per
// partition, so more partitions give the producer more room ahead of the
// consumer), and how far the producer may run ahead of what was taken.
inline constexpr int kMockPartitions = 12;
inline constexpr uint64_t kMockWindowMessages = 100'000;
static_assert(kMockWindowMessages * 400 < kMockPartitions * (5ull << 20),
              "the produce window must fit in the mock cluster's retention");

// Produces the stream `options` describes into `topic` with `producer`, counting
// into `produced`; with `paced` (the mock cluster) it stays at most
// kMockWindowMessages ahead of `taken`. Stops early once `stop` is set. The first
// send error, else the final flush's status.
absl::Status ProduceBenchStream(KafkaProducer& producer, const std::string& topic,
                                const ProduceOptions& options, bool paced,
                                const std::atomic<uint64_t>& taken, const std::atomic<bool>& stop,
                                std::atomic<uint64_t>* produced);

// The engine's write side over `data_dir`, opened as `loyalty ingest` opens it: the
// default program, the WAL synced per batch.
struct BenchEngine {
  std::unique_ptr<EventLog> log;
  std::unique_ptr<Projector> projector;  // declared after log: destroyed first
};
absl::StatusOr<BenchEngine> OpenBenchEngine(const std::string& data_dir);

// Fills `data_dir` with the file-ingest scenario's log unless it holds one already.
absl::Status EnsureIngested(const BenchArgs& args, const std::string& data_dir);

// The brokers to use: `brokers_arg`, or (if empty) a mock cluster started into
// `cluster` with `topic` created on it.
absl::StatusOr<std::string> BenchBrokers(const std::string& brokers_arg, const std::string& topic,
                                         std::unique_ptr<MockCluster>* cluster);

absl::StatusOr<BenchResult> RunIngestFile(const BenchArgs& args, const std::string& data_dir);
// `json`: JSON values instead of protobuf. `brokers` empty: an embedded mock cluster.
absl::StatusOr<BenchResult> RunIngestKafka(const BenchArgs& args, bool json,
                                           const std::string& brokers);
absl::StatusOr<BenchResult> RunReplay(const BenchArgs& args, const std::string& data_dir);
absl::StatusOr<BenchResult> RunQueries(const BenchArgs& args, const std::string& data_dir);
// Raw limits: librdkafka consuming the same messages; RocksDB appending the same
// bytes in batches of `batch_messages` with a WAL sync per batch.
absl::StatusOr<BenchResult> RunRawKafka(const BenchArgs& args, const std::string& brokers);
absl::StatusOr<BenchResult> RunRawRocksDb(const BenchArgs& args, size_t batch_messages);
absl::StatusOr<BenchResult> RunPostgres(const BenchArgs& args);

}  // namespace loyalty::bench

#endif  // LOYALTY_TOOLS_BENCH_H_
