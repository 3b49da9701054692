// `loyalty serve`: the engine. Owns the data directory for writing, consumes the
// events topic (--brokers, or an embedded mock cluster) batch by batch into the
// log and projections, answers over HTTP/JSON and gRPC, and stops cleanly on
// SIGTERM/SIGINT (the batch in progress finishes, the consumer leaves its group).
// Without Kafka it serves queries over the existing log only.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "consumers/kafka_source.h"
#include "consumers/mock_cluster.h"
#include "consumers/outbox.h"
#include "engine/cpu_priority.h"
#include "engine/ingestor.h"
#include "engine/status_macros.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "projections/replay.h"
#include "rocksdb/env.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/query_service.h"
#include "tools/commands.h"

namespace loyalty {
namespace {

struct ServeArgs {
  std::string data_dir;
  std::string brokers;
  bool embedded_kafka = false;
  std::string topic = kDefaultEventsTopic;
  std::string group = "loyalty-engine";
  std::vector<std::string> kafka_config;
  std::string http = "127.0.0.1:8080";
  std::string grpc = "127.0.0.1:9090";
  std::string program_file;
  std::string auth_token_file;
  int sweep_interval_s = 60;
  int ingest_nice = 0;
  int query_slice_us = 100;
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

// Consumes the events topic batch by batch on a thread of its own, until told to
// stop. A batch or sweep the store refuses (a full disk, a failing device:
// EventLog::write_fault) is aborted whole and ingestion pauses: the consumer is
// closed (what it took since the last stored batch is dropped, it was not stored),
// /healthz says why, and every 1 to 5 s the loop asks the log whether the store
// takes writes again (EventLog::ResumeWrites). Once it does, a new consumer resumes
// from the input positions stored in the log, so the aborted batch is read again,
// once. A fault RocksDB cannot recover from in-process, and any other error, stop
// ingestion for good (/healthz says so; a restart resumes exactly).
class IngestLoop {
 public:
  // Opens a consumer that resumes from the positions stored in the log.
  using SourceFactory = std::function<absl::StatusOr<std::unique_ptr<KafkaSource>>()>;

  // Every `sweep_interval` between batches, `ingestor` sweeps for what changes only
  // because time passed (signals; the sweep is a record in the log).
  IngestLoop(std::unique_ptr<KafkaSource> source, SourceFactory reopen, EventLog* log,
             Ingestor* ingestor, absl::Duration sweep_interval, Metrics* metrics)
      : source_(std::move(source)),
        reopen_(std::move(reopen)),
        log_(log),
        ingestor_(ingestor),
        sweep_interval_(sweep_interval),
        metrics_(metrics) {}
  ~IngestLoop() { Stop(); }

  // `outbox` (optional, not owned) is reported in /metrics after every poll. The
  // loop's thread, and the helper threads the ingestor starts from it, run at
  // `nice` (0-19, cpu_priority.h).
  void Start(const Outbox* outbox, int nice) {
    outbox_ = outbox;
    thread_ = std::thread([this, nice] {
      if (absl::Status s = SetThreadNice(nice); !s.ok()) {
        std::fprintf(stderr, "loyalty serve: ingestion stays at nice 0: %s\n",
                     std::string(s.message()).c_str());
      }
      Run();
    });
  }
  // Finishes the batch in progress, leaves the group.
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Unhealthy while ingestion is paused or once it stopped, or when one round of the
  // loop (a poll, its batch, a sweep) has been running for longer than kStuckAfter:
  // ingestion is stuck.
  absl::Status health() const {
    {
      absl::MutexLock lock(&mu_);
      if (!error_.ok()) return error_;
    }
    const absl::Duration busy = absl::Now() - absl::FromUnixMicros(round_started_us_.load());
    if (running_ && busy > kStuckAfter) {
      return absl::UnavailableError(absl::StrCat(
          "ingestion is stuck: one poll, batch or sweep has run for ", absl::FormatDuration(busy)));
    }
    return absl::OkStatus();
  }

 private:
  void Run() {
    running_ = true;
    absl::Time last_sweep = absl::InfinitePast();
    absl::Time last_report = absl::Now();
    int64_t taken_at_report = 0;
    absl::Duration backoff = kResumeBackoffMin;
    while (!stop_) {
      round_started_us_ = absl::ToUnixMicros(absl::Now());
      if (source_ == nullptr) {  // paused by a storage fault
        absl::Status s = Resume();
        if (absl::IsUnavailable(s)) {
          SetError(absl::UnavailableError(absl::StrCat("ingestion paused: ", s.message())));
          SleepUnlessStopped(backoff);
          backoff = std::min(2 * backoff, kResumeBackoffMax);
          continue;
        }
        if (!s.ok()) {
          StopForGood(s);
          break;
        }
        std::fprintf(stderr, "loyalty serve: ingestion resumed from the stored positions\n");
        SetError(absl::OkStatus());
        backoff = kResumeBackoffMin;
        last_sweep = absl::InfinitePast();  // a sweep the fault refused runs now
        continue;
      }
      if (absl::Status fault = log_->write_fault(); !fault.ok()) {
        Pause(fault);  // another writer (the outbox) met the fault first
        continue;
      }
      absl::StatusOr<size_t> polled = source_->PollOnce();
      absl::Status s = polled.status();
      if (s.ok()) metrics_->Counter("loyalty_messages_taken_total") += static_cast<int64_t>(*polled);
      // Nothing came: the batch in flight, if any, is waited for, so that what it
      // stored is counted (and its states may leave memory) without a next batch.
      if (s.ok() && *polled == 0) s = ingestor_->Flush();
      if (s.ok() && absl::Now() - last_sweep >= sweep_interval_) {
        last_sweep = absl::Now();
        absl::StatusOr<size_t> swept = ingestor_->Sweep();
        s = swept.status();
        if (s.ok() && *swept > 0) {
          ++metrics_->Counter("loyalty_sweeps_total");
          metrics_->Gauge("loyalty_log_length") = static_cast<int64_t>(log_->head().seq);
        }
      }
      if (!s.ok()) {
        if (absl::Status fault = log_->write_fault(); !fault.ok()) {
          Pause(fault);
          continue;
        }
        StopForGood(s);
        break;
      }
      if (absl::Now() - last_report >= absl::Seconds(10)) {
        // A line in the log every 10 s: throughput and lag, for operators.
        const int64_t taken = metrics_->Counter("loyalty_messages_taken_total").load();
        std::fprintf(stderr, "loyalty serve: %lld messages in the last %.0f s (%.0f/s), lag %lld\n",
                     static_cast<long long>(taken - taken_at_report),
                     absl::ToDoubleSeconds(absl::Now() - last_report),
                     (taken - taken_at_report) / absl::ToDoubleSeconds(absl::Now() - last_report),
                     static_cast<long long>(source_->lag()));
        last_report = absl::Now();
        taken_at_report = taken;
      }
      ReportStored();
      metrics_->Gauge("loyalty_consumer_lag") = source_->lag();
      if (outbox_ != nullptr) {
        metrics_->Gauge("loyalty_outbox_cursor") = static_cast<int64_t>(outbox_->cursor());
      }
      metrics_->Gauge("loyalty_rebalances") = static_cast<int64_t>(source_->rebalances());
    }
    running_ = false;
    // The last batch taken (the ingestor is pipelined) is stored before the group
    // is left; if it cannot be, a restart reads it again from the stored positions.
    if (absl::Status s = ingestor_->Flush(); !s.ok()) {
      std::fprintf(stderr, "loyalty serve: the last batch was not stored: %s\n",
                   std::string(s.message()).c_str());
    }
    ReportStored();
    if (source_ != nullptr) source_->Close();
  }

  // Adds what was stored since the last report to the event counters: counted
  // once stored, never for a batch whose commit failed.
  void ReportStored() {
    const IngestCounts& now = ingestor_->stored();
    const IngestCounts& was = reported_;
    Metrics& m = *metrics_;
    m.Counter("loyalty_events_total", "outcome=\"accepted\"") += now.accepted - was.accepted;
    m.Counter("loyalty_events_total", "outcome=\"rejected\"") += now.rejected - was.rejected;
    m.Counter("loyalty_events_total", "outcome=\"dead_letter\"") +=
        now.dead_letters - was.dead_letters;
    m.Counter("loyalty_events_total", "outcome=\"duplicate\"") +=
        now.duplicates + now.repeated_dead_letters - was.duplicates - was.repeated_dead_letters;
    m.Counter("loyalty_key_mismatches_total") += now.key_mismatches - was.key_mismatches;
    for (const auto& [reason, n] : now.dead_letters_by_reason) {
      auto it = was.dead_letters_by_reason.find(reason);
      const uint64_t before = it == was.dead_letters_by_reason.end() ? 0 : it->second;
      if (n == before) continue;
      m.Counter("loyalty_dead_letters_total",
                absl::StrCat("reason=\"", v1::DeadLetterReason_Name(reason), "\"")) += n - before;
    }
    m.Gauge("loyalty_log_length") = static_cast<int64_t>(log_->head().seq);
    reported_ = now;
  }

  // The store refused a write: the batch (or sweep) was aborted whole. The consumer
  // goes: the messages it took since the last stored batch are in no batch, and a
  // new consumer reads them again from the stored positions.
  void Pause(const absl::Status& fault) {
    std::fprintf(stderr, "loyalty serve: ingestion paused: %s\n",
                 std::string(fault.message()).c_str());
    SetError(absl::UnavailableError(absl::StrCat("ingestion paused: ", fault.message())));
    // A batch still in flight fails too, or is stored: either way the new consumer
    // resumes from what the store holds.
    ingestor_->Flush().IgnoreError();
    source_->Close();
    source_.reset();
  }

  // Unavailable while the store refuses writes; OK once it takes them and a new
  // consumer is open; any other error ends ingestion.
  absl::Status Resume() {
    LOYALTY_RETURN_IF_ERROR(log_->ResumeWrites());
    LOYALTY_ASSIGN_OR_RETURN(source_, reopen_());
    return absl::OkStatus();
  }

  void StopForGood(const absl::Status& s) {
    std::fprintf(stderr, "loyalty serve: ingestion stopped: %s\n", std::string(s.message()).c_str());
    SetError(absl::UnavailableError(absl::StrCat("ingestion stopped: ", s.message())));
  }

  void SetError(absl::Status s) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(s);
  }

  void SleepUnlessStopped(absl::Duration d) {
    const absl::Time until = absl::Now() + d;
    while (!stop_ && absl::Now() < until) absl::SleepFor(absl::Milliseconds(100));
  }

  static constexpr absl::Duration kStuckAfter = absl::Seconds(60);
  // Between attempts to resume after a storage fault: RocksDB itself looks for free
  // space every 5 s, so waiting longer than that only delays the resumption.
  static constexpr absl::Duration kResumeBackoffMin = absl::Seconds(1);
  static constexpr absl::Duration kResumeBackoffMax = absl::Seconds(5);

  std::unique_ptr<KafkaSource> source_;  // null while paused by a storage fault
  SourceFactory reopen_;
  std::atomic<int64_t> round_started_us_{absl::ToUnixMicros(absl::Now())};
  std::atomic<bool> running_{false};  // the loop is running (the "stuck" check)
  EventLog* log_;
  Ingestor* ingestor_;
  const Outbox* outbox_ = nullptr;
  absl::Duration sweep_interval_;
  Metrics* metrics_;
  IngestCounts reported_;  // the ingestor's stored() as last added to the metrics
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

int RunServe(const ServeArgs& args) {
  // gRPC starts threads of its own: block the stop signals in every thread
  // (they inherit this mask) and wait for them on this one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  if (args.embedded_kafka && !args.brokers.empty()) {
    return Fail("--brokers and --embedded-kafka exclude each other");
  }
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
  http.thread_slice = absl::Microseconds(args.query_slice_us);
  GrpcOptions grpc;
  grpc.address = args.grpc;
  grpc.auth_token = token;

  LogOptions options;
  options.data_dir = args.data_dir;
  auto log = EventLog::Open(options);
  if (!log.ok()) return Fail(std::string(log.status().message()));
  auto program = LoadProgram(args.program_file);
  if (!program.ok()) return Fail(std::string(program.status().message()));
  // Projections built by other projection code (a version kept beside them) are
  // rebuilt from the log in the background while the old ones keep answering;
  // the switch is atomic (EventLog::CommitProjectionRebuild). Ingestion starts
  // once the projections are current.
  auto stored_version =
      (*log)->GetProjection(LogBatch::ProjectionCf::kProjectionMeta, kMetaProjectionVersion);
  if (!stored_version.ok() && !absl::IsNotFound(stored_version.status())) {
    return Fail(std::string(stored_version.status().message()));
  }
  const bool outdated = stored_version.ok() && *stored_version != absl::StrCat(kProjectionVersion);
  // Answers use the program in force in the store, or the configured one.
  v1::Program answering = *program;
  if (auto stored = (*log)->GetProjection(LogBatch::ProjectionCf::kProjectionMeta, kMetaProgram);
      stored.ok()) {
    v1::ProgramChange change;
    if (!change.ParseFromString(*stored)) return Fail("the stored program does not decode");
    if (change.version() > 0) answering = change.program();
  }

  Metrics metrics;
  metrics.Describe("loyalty_log_length", "records in the event log");
  metrics.Describe("loyalty_log_bytes", "bytes on disk (tables and WAL)");
  metrics.Describe("loyalty_events_total", "input messages by what became of them");
  metrics.Describe(
      "loyalty_batch_duration_seconds",
      "time to take one batch: decode and decide it, and wait until the one before it is stored");
  metrics.Describe("loyalty_consumer_lag", "messages behind the partitions' ends");
  metrics.Describe("loyalty_rebalances", "consumer group rebalances seen");
  metrics.Describe("loyalty_dead_letters_total", "dead letters by reason");
  metrics.Describe("loyalty_messages_taken_total", "Kafka messages taken into batches (throughput)");
  metrics.Describe("loyalty_outbox_cursor", "the last log record published to Kafka");
  metrics.Describe("loyalty_sweeps_total", "sweeps that looked at customers (records in the log)");
  metrics.Describe("loyalty_projection_rebuild_records",
                   "records replayed by the background projection rebuild");
  metrics.Gauge("loyalty_log_length") = static_cast<int64_t>((*log)->head().seq);
  metrics.Gauge("loyalty_log_bytes") = static_cast<int64_t>((*log)->ApproximateBytes());

  // Kafka: an embedded mock cluster, or real brokers.
  std::unique_ptr<MockCluster> embedded;
  std::string brokers = args.brokers;
  if (args.embedded_kafka) {
    auto cluster = MockCluster::Start(1);
    if (!cluster.ok()) return Fail(std::string(cluster.status().message()));
    embedded = std::move(*cluster);
    for (const auto& [topic, partitions] :
         std::vector<std::pair<std::string, int>>{{args.topic, 6}, {kDeadLetterTopic, 1},
                                                  {kOutcomesTopic, 6}, {kSignalsTopic, 6}}) {
      if (auto s = embedded->CreateTopic(topic, partitions); !s.ok()) {
        return Fail(std::string(s.message()));
      }
    }
    brokers = embedded->bootstrap_servers();
    std::fprintf(stderr, "loyalty serve: embedded Kafka bootstrap %s\n", brokers.c_str());
  }
  KafkaSourceOptions kafka;
  kafka.brokers = brokers;
  kafka.topic = args.topic;
  kafka.group = args.group;
  for (const std::string& kv : args.kafka_config) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail(absl::StrCat("--kafka-config ", kv, " is not KEY=VALUE"));
    }
    kafka.config.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }

  // The write side: the projector, the ingest loop and the outbox. Started now, or
  // once a background rebuild has finished.
  std::unique_ptr<Projector> projector;
  std::unique_ptr<Ingestor> ingestor;
  std::unique_ptr<IngestLoop> loop;
  std::unique_ptr<Outbox> outbox;
  std::atomic<IngestLoop*> loop_ptr{nullptr};
  std::atomic<Outbox*> outbox_ptr{nullptr};
  EventLog* writer = log->get();
  Metrics* m = &metrics;
  auto start_writing = [&]() -> absl::Status {
    LOYALTY_ASSIGN_OR_RETURN(projector, Projector::Open(writer, *program));
    if (brokers.empty()) return absl::OkStatus();  // queries only
    ingestor = std::make_unique<Ingestor>(writer, RealClock(), projector.get());
    // A batch is decided while the one before it is written (Ingestor::set_pipelined).
    ingestor->set_pipelined(true);
    Ingestor* ing = ingestor.get();
    auto sink = [ing, m](const std::vector<InputMessage>& batch) -> absl::Status {
      const auto start = std::chrono::steady_clock::now();
      auto counts = ing->IngestBatch(batch);
      if (!counts.ok()) return counts.status();
      m->Latency("loyalty_batch_duration_seconds")
          .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      // The event counters follow what is stored (IngestLoop::ReportStored).
      return absl::OkStatus();
    };
    IngestLoop::SourceFactory open_source = [kafka, writer, sink, ing] {
      return KafkaSource::Create(kafka, writer, sink, [ing] { return ing->Flush(); });
    };
    LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<KafkaSource> source, open_source());
    loop = std::make_unique<IngestLoop>(std::move(source), open_source, writer, ing,
                                        absl::Seconds(args.sweep_interval_s), m);
    OutboxOptions outbox_options;
    outbox_options.brokers = brokers;
    outbox_options.config = kafka.config;
    LOYALTY_ASSIGN_OR_RETURN(outbox, Outbox::Start(outbox_options, writer));
    if (args.ingest_nice > 0) {
      LOYALTY_RETURN_IF_ERROR(LowerBackgroundPriority(rocksdb::Env::Default()));
    }
    loop->Start(outbox.get(), args.ingest_nice);
    loop_ptr = loop.get();
    outbox_ptr = outbox.get();
    std::fprintf(stderr, "loyalty serve: consuming %s from %s as group %s\n", args.topic.c_str(),
                 brokers.c_str(), args.group.c_str());
    return absl::OkStatus();
  };

  std::thread rebuild_thread;
  std::atomic<bool> rebuilt{!outdated};
  absl::Status rebuild_status;
  if (outdated) {
    std::fprintf(stderr,
                 "loyalty serve: the projections were built by projection version %s, this "
                 "engine is %u: rebuilding them from the log in the background; queries are "
                 "answered from the old ones until the switch, ingestion starts after it\n",
                 stored_version->c_str(), kProjectionVersion);
    rebuild_thread = std::thread([&] {
      auto report = RebuildProjections(writer, [m](uint64_t records) {
        m->Gauge("loyalty_projection_rebuild_records") = static_cast<int64_t>(records);
      });
      rebuild_status = report.status();
      rebuilt = true;
    });
  } else if (absl::Status s = start_writing(); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  QueryService service(log->get(), RealClock(), std::make_shared<Rules>(answering));
  // The stats timeline left by the last clean stop, if the log has not moved since.
  const std::string timeline_file = args.data_dir + "/stats-timeline.pb";
  if (absl::Status s = service.LoadStatsTimeline(timeline_file); s.ok()) {
    std::fprintf(stderr, "loyalty serve: stats timeline taken from %s (seq %llu)\n",
                 timeline_file.c_str(),
                 static_cast<unsigned long long>(service.stats_timeline().seq));
  } else if (!absl::IsNotFound(s)) {
    std::fprintf(stderr, "loyalty serve: stats timeline in %s not taken (%s): building it\n",
                 timeline_file.c_str(), std::string(s.message()).c_str());
  }
  const EventLog* log_ptr = log->get();
  Metrics* metrics_ptr = &metrics;
  auto health = [log_ptr, &loop_ptr, &outbox_ptr, metrics_ptr]() -> absl::Status {
    auto snap = log_ptr->TakeSnapshot();  // the store answers
    if (!snap.ok()) return snap.status();
    metrics_ptr->Gauge("loyalty_log_bytes") = static_cast<int64_t>(log_ptr->ApproximateBytes());
    Outbox* outbox = outbox_ptr.load();
    if (outbox != nullptr) {
      metrics_ptr->Gauge("loyalty_outbox_cursor") = static_cast<int64_t>(outbox->cursor());
    }
    // Ingestion first: on a storage fault it says what the operator is to do.
    if (IngestLoop* loop = loop_ptr.load(); loop != nullptr) {
      LOYALTY_RETURN_IF_ERROR(loop->health());
    }
    if (outbox != nullptr) {
      if (absl::Status s = outbox->health(); !s.ok()) {
        return absl::UnavailableError(absl::StrCat("publishing is failing: ", s.message()));
      }
    }
    return absl::OkStatus();
  };
  auto http_server = HttpServer::Start(&service, &metrics, health, http);
  if (!http_server.ok()) return Fail(std::string(http_server.status().message()));
  auto grpc_server = GrpcServer::Start(&service, &metrics, grpc);
  if (!grpc_server.ok()) return Fail(std::string(grpc_server.status().message()));
  std::fprintf(stderr, "loyalty serve: %s, log at seq %llu; HTTP on %s:%d, gRPC on port %d\n",
               args.data_dir.c_str(), static_cast<unsigned long long>((*log)->head().seq),
               http.host.c_str(), (*http_server)->port(), (*grpc_server)->port());

  // Keeps the stats index current, so that /v1/stats reads only what changed since
  // (the first round reads every customer's state once).
  std::atomic<bool> stopping{false};
  std::thread stats_thread([&service, &stopping] {
    std::string last_error;
    while (!stopping) {
      absl::Status s = service.RefreshStats();
      const std::string error = s.ok() ? "" : std::string(s.message());
      if (error != last_error && !error.empty()) {
        std::fprintf(stderr, "loyalty serve: keeping stats current: %s\n", error.c_str());
      }
      last_error = error;
      for (int i = 0; i < 10 && !stopping; ++i) absl::SleepFor(absl::Milliseconds(100));
    }
  });

  // Builds the stats timeline in the background (and again after the rules or the
  // projections change), so that /v1/stats at any as_of is one prefix sum; until it
  // is in place the kept shares answer.
  std::thread timeline_thread([&service, &stopping] {
    std::string last_error;
    while (!stopping) {
      const absl::Time start = absl::Now();
      bool built = false;
      absl::Status s = service.BuildStatsTimeline(&stopping, &built);
      if (built) {
        const StatsIndex::TimelineInfo info = service.stats_timeline();
        std::fprintf(stderr,
                     "loyalty serve: stats timeline built at seq %llu in %.1f s (passes over "
                     "the log: %llu): %zu points, %.1f MiB\n",
                     static_cast<unsigned long long>(info.seq),
                     absl::ToDoubleSeconds(absl::Now() - start),
                     static_cast<unsigned long long>(info.passes), info.points,
                     static_cast<double>(info.bytes) / (1 << 20));
      }
      const std::string error = s.ok() || stopping ? "" : std::string(s.message());
      if (error != last_error && !error.empty()) {
        std::fprintf(stderr, "loyalty serve: building the stats timeline: %s\n", error.c_str());
      }
      last_error = error;
      // A failed build (it reads the whole log) is tried again a minute later.
      const int ticks = error.empty() ? 10 : 600;
      for (int i = 0; i < ticks && !stopping; ++i) absl::SleepFor(absl::Milliseconds(100));
    }
  });

  // Wait for a stop signal; meanwhile, start writing once a rebuild is done.
  int signal_number = 0;
  int exit_code = 0;
  bool writing = !outdated;
  while (true) {
    if (!writing && rebuilt) {
      rebuild_thread.join();
      writing = true;
      absl::Status s = rebuild_status;
      if (s.ok()) {
        std::fprintf(stderr, "loyalty serve: projections rebuilt (generation %llu), switched\n",
                     static_cast<unsigned long long>((*log)->projection_generation()));
        s = start_writing();
      }
      if (!s.ok()) {
        std::fprintf(stderr, "loyalty serve: %s\n", std::string(s.message()).c_str());
        exit_code = 1;
        break;
      }
    }
    const timespec tick{0, 200'000'000};
    signal_number = sigtimedwait(&stop, nullptr, &tick);
    if (signal_number > 0) {
      std::fprintf(stderr, "loyalty serve: signal %d, stopping\n", signal_number);
      break;
    }
  }
  stopping = true;
  stats_thread.join();
  timeline_thread.join();
  if (rebuild_thread.joinable()) rebuild_thread.join();  // a rebuild is not interrupted
  if (loop != nullptr) loop->Stop();  // finishes its batch, leaves the group
  if (outbox != nullptr) outbox->Stop();  // the rest is published after a restart
  // After the last batch: the next start takes the timeline as it is now.
  if (service.stats_timeline().ready) {
    if (absl::Status s = service.SaveStatsTimeline(timeline_file); !s.ok()) {
      std::fprintf(stderr, "loyalty serve: saving the stats timeline: %s\n",
                   std::string(s.message()).c_str());
    }
  }
  (*grpc_server)->Stop();
  (*http_server)->Stop();
  return exit_code;
}

}  // namespace

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "The engine: consume, log, project, and answer queries over HTTP/JSON and gRPC "
      "(without --brokers or --embedded-kafka: queries over the existing log only)");
  cmd->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  cmd->add_option("--brokers", args->brokers, "consume the events topic from these Kafka brokers");
  cmd->add_flag("--embedded-kafka", args->embedded_kafka,
                "run an in-process mock Kafka cluster and consume from it (demos)");
  cmd->add_option("--topic", args->topic, "the events topic");
  cmd->add_option("--group", args->group, "the consumer group");
  cmd->add_option("--kafka-config", args->kafka_config,
                  "a librdkafka property KEY=VALUE (TLS, SASL, ...); repeatable");
  cmd->add_option("--http", args->http, "HTTP listen address ADDR:PORT (port 0: any)");
  cmd->add_option("--grpc", args->grpc, "gRPC listen address ADDR:PORT (port 0: any)");
  cmd->add_option("--program", args->program_file,
                  "the program settings (JSON, docs/program.md); default: rules.md's");
  cmd->add_option("--auth-token-file", args->auth_token_file,
                  "require 'Authorization: Bearer <token>' on /v1/* and gRPC");
  cmd->add_option("--sweep-interval", args->sweep_interval_s,
                  "seconds between sweeps for signals that time alone causes (tiers lapsing, "
                  "churn risk rising, points nearing expiry); default 60")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--ingest-nice", args->ingest_nice,
                  "nice value (0-19) of ingestion's threads; above 0 RocksDB's flushes and "
                  "compactions run at 19, so that queries are answered first when both "
                  "compete for the CPU (docs/operations.md); default 0")
      ->check(CLI::Range(0, 19));
  cmd->add_option("--query-slice-us", args->query_slice_us,
                  "the time slice (microseconds) the HTTP server's threads ask the scheduler "
                  "for: a query woken while ingestion runs preempts it at once (Linux 6.12 "
                  "or later; docs/operations.md); 0: the kernel's default; default 100")
      ->check(CLI::Range(0, 100'000));
  cmd->callback([args, exit_code] { *exit_code = RunServe(*args); });
}

}  // namespace loyalty
