// Bench scenarios through the real engine: ingest from a JSON-lines file, ingest
// end to end through Kafka, and the replay (verify, rebuild).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "consumers/jsonl_reader.h"
#include "consumers/kafka_producer.h"
#include "consumers/kafka_source.h"
#include "consumers/mock_cluster.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "engine/status_macros.h"
#include "projections/audit.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "projections/replay.h"
#include "tools/bench.h"
#include "tools/produce.h"

namespace loyalty::bench {
namespace {


// The ingest loop's bookkeeping: counts, batch latencies, batch sizes.
struct IngestStats {
  std::atomic<uint64_t> taken{0};
  Latencies batch_latency;
  uint64_t batches = 0;
  IngestCounts counts;
};

// Fills the figures every ingest scenario reports.
void ReportIngest(IngestStats& stats, double seconds, const std::string& data_dir,
                  bool pipelined, BenchResult* result) {
  // A pipelined batch's latency is the time to take it (decode, decide, and wait
  // for the batch before it to be stored), not to store it.
  result->notes["pipelined"] = pipelined ? "yes" : "no";
  result->figures["messages"] = static_cast<double>(stats.taken.load());
  result->figures["appended"] = static_cast<double>(stats.counts.appended());
  result->figures["accepted"] = static_cast<double>(stats.counts.accepted);
  result->figures["rejected"] = static_cast<double>(stats.counts.rejected);
  result->figures["dead_letters"] = static_cast<double>(stats.counts.dead_letters);
  result->figures["duplicates"] = static_cast<double>(stats.counts.duplicates);
  result->figures["seconds"] = seconds;
  result->figures["events_per_s"] = seconds > 0 ? stats.taken.load() / seconds : 0;
  result->figures["batches"] = static_cast<double>(stats.batches);
  result->figures["batch_messages_avg"] =
      stats.batches > 0 ? static_cast<double>(stats.taken.load()) / stats.batches : 0;
  stats.batch_latency.Report("batch_latency", result);
  result->figures["peak_rss_mib"] = PeakRssBytes() / 1048576.0;
  result->series["batch_latency_cdf"] = stats.batch_latency.Cdf(200);
  result->notes["data_dir"] = data_dir;
}

// After the log is closed: bytes on disk per appended record, before and after
// a full manual compaction.
absl::Status ReportDisk(const std::string& data_dir, uint64_t records, BenchResult* result) {
  if (records == 0) return absl::OkStatus();
  result->figures["disk_bytes_per_event_before_compaction"] =
      static_cast<double>(DirectoryBytes(data_dir)) / records;
  std::map<std::string, uint64_t> cf_bytes;
  LOYALTY_RETURN_IF_ERROR(CompactDataDir(data_dir, &cf_bytes));
  for (const auto& [cf, bytes] : cf_bytes) {
    result->figures[absl::StrCat("disk_cf_", cf, "_bytes_per_event")] =
        static_cast<double>(bytes) / records;
  }
  result->figures["disk_bytes"] = static_cast<double>(DirectoryBytes(data_dir));
  result->figures["disk_bytes_per_event"] = static_cast<double>(DirectoryBytes(data_dir)) / records;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BenchResult> RunIngestFile(const BenchArgs& args, const std::string& data_dir) {
  BenchResult result;
  const std::string input = args.work_dir + "/events.jsonl";
  if (!std::filesystem::exists(input)) {
    const auto gen_start = std::chrono::steady_clock::now();
    LOYALTY_RETURN_IF_ERROR(WriteJsonLines(args, input));
    result.figures["generate_seconds"] = Since(gen_start);
  }
  result.figures["input_bytes"] = static_cast<double>(std::filesystem::file_size(input));
  std::filesystem::remove_all(data_dir);
  IngestStats stats;
  ResetPeakRss();
  double seconds = 0;
  {
    LOYALTY_ASSIGN_OR_RETURN(BenchEngine engine, OpenBenchEngine(data_dir));
    EventLog* log = engine.log.get();
    LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<JsonLinesReader> reader, JsonLinesReader::Open(input));
    Ingestor ingestor(log, RealClock(), engine.projector.get());
    ingestor.set_pipelined(args.pipelined);
    // The same batch size as `loyalty ingest` by default.
    constexpr size_t kBatchLines = kDefaultBatchMessages;
    std::vector<InputMessage> batch;
    batch.reserve(kBatchLines);
    Sampler sampler(&stats.taken, std::chrono::milliseconds(500));
    const auto start = std::chrono::steady_clock::now();
    bool more = true;
    while (more) {
      batch.clear();
      LOYALTY_ASSIGN_OR_RETURN(more, reader->Read(kBatchLines, &batch));
      if (batch.empty()) continue;
      const auto t0 = std::chrono::steady_clock::now();
      LOYALTY_ASSIGN_OR_RETURN(IngestCounts counts, ingestor.IngestBatch(batch));
      stats.batch_latency.Add(Since(t0));
      ++stats.batches;
      stats.counts.Add(counts);
      stats.taken += batch.size();
    }
    LOYALTY_RETURN_IF_ERROR(ingestor.Flush());  // the last batch, if in flight
    seconds = Since(start);
    sampler.Stop();
    result.series["throughput"] = sampler.Rows();
    result.figures["log_records"] = static_cast<double>(log->head().seq);
  }
  ReportIngest(stats, seconds, data_dir, args.pipelined, &result);
  result.notes["input"] = input;
  LOYALTY_RETURN_IF_ERROR(
      ReportDisk(data_dir, static_cast<uint64_t>(result.figures["log_records"]), &result));
  return result;
}

absl::StatusOr<BenchResult> RunIngestKafka(const BenchArgs& args, bool json,
                                           const std::string& brokers_arg) {
  BenchResult result;
  const bool mock = brokers_arg.empty();
  const std::string topic = absl::StrCat("bench.events.", getpid(), json ? ".json" : ".pb", ".",
                                         absl::ToUnixMicros(absl::Now()));
  std::unique_ptr<MockCluster> cluster;
  LOYALTY_ASSIGN_OR_RETURN(const std::string brokers, BenchBrokers(brokers_arg, topic, &cluster));
  const std::string data_dir =
      absl::StrCat(args.work_dir, "/kafka-", mock ? "mock" : "broker", json ? "-json" : "-pb");
  std::filesystem::remove_all(data_dir);
  result.notes["transport"] = mock ? "embedded mock cluster" : absl::StrCat("broker ", brokers);
  result.notes["format"] = json ? "json" : "protobuf";

  ProduceOptions produce;
  produce.events = args.events;
  produce.customers = args.customers;
  produce.seed = args.seed;
  produce.format = json ? ProduceFormat::kJson : ProduceFormat::kProtobuf;
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<KafkaProducer> producer,
                           KafkaProducer::Create(brokers, {{"linger.ms", "5"}}));
  IngestStats stats;
  std::atomic<uint64_t> produced{0};
  std::atomic<bool> stop_producer{false};
  std::atomic<bool> producer_done{false};
  absl::Status produce_status;
  double produce_seconds = 0;
  auto produce_all = [&] {
    const auto start = std::chrono::steady_clock::now();
    produce_status =
        ProduceBenchStream(*producer, topic, produce, mock, stats.taken, stop_producer, &produced);
    produce_seconds = Since(start);
    producer_done = true;
  };
  if (!mock) {
    // A real broker keeps everything: produce first, then measure the engine alone.
    produce_all();
    LOYALTY_RETURN_IF_ERROR(produce_status);
    result.figures["produce_per_s"] = produced.load() / std::max(produce_seconds, 1e-9);
  }

  ResetPeakRss();
  double seconds = 0;
  double wall_seconds = 0;
  {
    LOYALTY_ASSIGN_OR_RETURN(BenchEngine engine, OpenBenchEngine(data_dir));
    EventLog* log = engine.log.get();
    Ingestor ingestor(log, RealClock(), engine.projector.get());
    ingestor.set_pipelined(args.pipelined);
    KafkaSourceOptions source_options;
    source_options.brokers = brokers;
    source_options.topic = topic;
    source_options.group = absl::StrCat("bench-", getpid(), "-", absl::ToUnixMicros(absl::Now()));
    source_options.session_timeout_ms = 6000;
    std::chrono::steady_clock::time_point first_batch;
    auto sink = [&](const std::vector<InputMessage>& batch) -> absl::Status {
      const auto t0 = std::chrono::steady_clock::now();
      if (stats.batches == 0) first_batch = t0;
      LOYALTY_ASSIGN_OR_RETURN(IngestCounts counts, ingestor.IngestBatch(batch));
      stats.batch_latency.Add(Since(t0));
      ++stats.batches;
      stats.counts.Add(counts);
      stats.taken += batch.size();
      return absl::OkStatus();
    };
    LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<KafkaSource> source,
                             KafkaSource::Create(source_options, log, sink,
                                                 [&ingestor] { return ingestor.Flush(); }));
    std::thread producer_thread;
    if (mock) producer_thread = std::thread(produce_all);
    // Bounded: a generous rate floor of 2k/s plus a minute for the group join.
    const double deadline_s = 60.0 + static_cast<double>(args.events) / 2000.0;
    Sampler sampler(&stats.taken, std::chrono::milliseconds(500));
    const auto start = std::chrono::steady_clock::now();
    absl::Status poll_status;
    while (stats.taken.load() < args.events && Since(start) < deadline_s) {
      absl::StatusOr<size_t> n = source->PollOnce();
      if (!n.ok()) {
        poll_status = n.status();
        break;
      }
      // A producer that stopped early (failed) leaves nothing more to take.
      if (mock && producer_done && stats.taken.load() >= produced.load()) break;
    }
    if (poll_status.ok()) poll_status = ingestor.Flush();  // the last batch, if in flight
    const auto end = std::chrono::steady_clock::now();
    wall_seconds = Since(start);
    seconds = stats.batches > 0 ? std::chrono::duration<double>(end - first_batch).count() : 0;
    sampler.Stop();
    stop_producer = true;
    if (producer_thread.joinable()) producer_thread.join();
    source->Close();
    LOYALTY_RETURN_IF_ERROR(poll_status);
    LOYALTY_RETURN_IF_ERROR(produce_status);
    if (mock) result.figures["produce_per_s"] = produced.load() / std::max(produce_seconds, 1e-9);
    result.series["throughput"] = sampler.Rows();
    result.figures["log_records"] = static_cast<double>(log->head().seq);
    if (stats.taken.load() < args.events) {
      return absl::DeadlineExceededError(absl::StrCat("took only ", stats.taken.load(), " of ",
                                                      args.events, " messages in ",
                                                      wall_seconds, " s"));
    }
  }
  ReportIngest(stats, seconds, data_dir, args.pipelined, &result);
  result.figures["wall_seconds_with_group_join"] = wall_seconds;
  LOYALTY_RETURN_IF_ERROR(
      ReportDisk(data_dir, static_cast<uint64_t>(result.figures["log_records"]), &result));
  std::filesystem::remove_all(data_dir);
  return result;
}

absl::StatusOr<BenchResult> RunReplay(const BenchArgs& args, const std::string& data_dir) {
  BenchResult result;
  LOYALTY_RETURN_IF_ERROR(EnsureIngested(args, data_dir));
  {
    LogOptions options;
    options.data_dir = data_dir;
    options.read_only = true;
    LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<EventLog> log, EventLog::Open(options));
    AuditOptions audit;
    audit.now = absl::ToUnixSeconds(RealClock()->Now());
    ResetPeakRss();
    const auto start = std::chrono::steady_clock::now();
    LOYALTY_ASSIGN_OR_RETURN(AuditReport report, AuditLog(*log, audit));
    const double s = Since(start);
    if (!report.ok) {
      return absl::DataLossError(absl::StrCat("verify failed at ", report.first_bad_seq, " (",
                                              report.check, "): ", report.problem));
    }
    result.figures["records"] = static_cast<double>(report.records);
    result.figures["verify_seconds"] = s;
    result.figures["verify_events_per_s"] = report.records / s;
    result.figures["verify_peak_rss_mib"] = PeakRssBytes() / 1048576.0;
  }
  {
    LogOptions options;
    options.data_dir = data_dir;
    LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<EventLog> log, EventLog::Open(options));
    ResetPeakRss();
    const auto start = std::chrono::steady_clock::now();
    LOYALTY_ASSIGN_OR_RETURN(RebuildReport report, RebuildProjections(log.get()));
    const double s = Since(start);
    result.figures["rebuild_seconds"] = s;
    result.figures["rebuild_events_per_s"] = report.records / s;
    result.figures["rebuild_customers"] = static_cast<double>(report.customers);
    result.figures["rebuild_peak_rss_mib"] = PeakRssBytes() / 1048576.0;
  }
  return result;
}

}  // namespace loyalty::bench
