// What the bench scenarios share: latencies, RSS, sampling, disk usage.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/options_util.h"
#include "consumers/kafka_producer.h"
#include "consumers/mock_cluster.h"
#include "engine/event_log.h"
#include "engine/status_macros.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "tools/bench.h"
#include "tools/produce.h"

namespace loyalty::bench {

void Latencies::Merge(const Latencies& other) {
  samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  sorted_ = false;
}

void Latencies::Sort() {
  if (!sorted_) std::sort(samples_.begin(), samples_.end());
  sorted_ = true;
}

double Latencies::Quantile(double q) {
  if (samples_.empty()) return 0;
  Sort();
  size_t i = static_cast<size_t>(q * static_cast<double>(samples_.size()));
  if (i >= samples_.size()) i = samples_.size() - 1;
  return samples_[i];
}

double Latencies::Max() {
  if (samples_.empty()) return 0;
  Sort();
  return samples_.back();
}

void Latencies::Report(const std::string& name, BenchResult* result) {
  result->figures[name + "_p50_ms"] = Quantile(0.50) * 1e3;
  result->figures[name + "_p99_ms"] = Quantile(0.99) * 1e3;
  result->figures[name + "_max_ms"] = Max() * 1e3;
}

std::vector<std::vector<double>> Latencies::Cdf(size_t points) {
  std::vector<std::vector<double>> rows;
  if (samples_.empty() || points == 0) return rows;
  Sort();
  for (size_t k = 0; k < points; ++k) {
    // Denser towards the tail: fractions 1 - 10^(-4 k / points).
    const double q = 1.0 - std::pow(10.0, -4.0 * static_cast<double>(k) / points);
    rows.push_back({Quantile(q) * 1e3, q});
  }
  rows.push_back({Max() * 1e3, 1.0});
  return rows;
}

namespace {
uint64_t StatusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0) return std::strtoull(line.c_str() + n, nullptr, 10);
  }
  return 0;
}
}  // namespace

void ResetPeakRss() {
  // "5" resets VmHWM to the current RSS (Linux >= 4.0). If it fails the peak is
  // the process's whole life, which is only ever larger: still an upper bound.
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}

uint64_t PeakRssBytes() { return StatusKb("VmHWM:") * 1024; }
uint64_t CurrentRssBytes() { return StatusKb("VmRSS:") * 1024; }

Sampler::Sampler(const std::atomic<uint64_t>* counter, std::chrono::milliseconds interval)
    : counter_(counter), interval_(interval) {
  thread_ = std::thread([this] {
    const auto start = std::chrono::steady_clock::now();
    uint64_t last = counter_->load();
    double last_t = 0;
    while (!stop_) {
      std::this_thread::sleep_for(interval_);
      const double t = Since(start);
      const uint64_t now = counter_->load();
      rows_.push_back({t, (now - last) / std::max(1e-9, t - last_t),
                       CurrentRssBytes() / 1048576.0});
      last = now;
      last_t = t;
    }
  });
}

Sampler::~Sampler() { Stop(); }

void Sampler::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<std::vector<double>> Sampler::Rows() const { return rows_; }

absl::Status ProduceBenchStream(KafkaProducer& producer, const std::string& topic,
                                const ProduceOptions& options, bool paced,
                                const std::atomic<uint64_t>& taken, const std::atomic<bool>& stop,
                                std::atomic<uint64_t>* produced) {
  absl::Status status;
  GenerateStream(options, [&](std::string_view key, std::string_view value) {
    // Mock: stay within its retention ahead of the consumer (bounded wait).
    while (paced && !stop && produced->load() - taken.load() > kMockWindowMessages) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (stop) return false;
    status = producer.Send(topic, key, value);
    if (!status.ok()) return false;
    ++*produced;
    return true;
  });
  if (status.ok()) status = producer.Flush(60'000);
  return status;
}

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

absl::Status CompactDataDir(const std::string& dir, std::map<std::string, uint64_t>* cf_bytes) {
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  rocksdb::ConfigOptions config;
  rocksdb::Status s = rocksdb::LoadLatestOptions(config, dir, &db_options, &cfs);
  if (!s.ok()) return absl::InternalError(absl::StrCat("loading options of ", dir, ": ", s.ToString()));
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::Open(db_options, dir, cfs, &handles, &raw);
  if (!s.ok()) return absl::InternalError(absl::StrCat("opening ", dir, ": ", s.ToString()));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    rocksdb::FlushOptions flush;
    if (s.ok()) s = db->Flush(flush, h);
    if (s.ok()) s = db->CompactRange(compact, h, nullptr, nullptr);
    uint64_t bytes = 0;
    if (s.ok() && cf_bytes != nullptr &&
        db->GetIntProperty(h, "rocksdb.total-sst-files-size", &bytes)) {
      (*cf_bytes)[h->GetName()] = bytes;
    }
  }
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    // Destroying a handle only releases it; the status is always OK here.
    db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  if (!s.ok()) return absl::InternalError(absl::StrCat("compacting ", dir, ": ", s.ToString()));
  s = db->Close();
  if (!s.ok()) return absl::InternalError(absl::StrCat("closing ", dir, ": ", s.ToString()));
  return absl::OkStatus();
}

absl::Status WriteJsonLines(const BenchArgs& args, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", path));
  ProduceOptions options;
  options.events = args.events;
  options.customers = args.customers;
  options.seed = args.seed;
  options.format = ProduceFormat::kJson;
  bool ok = true;
  GenerateStream(options, [&](std::string_view, std::string_view value) {
    ok = std::fwrite(value.data(), 1, value.size(), f) == value.size() && std::fputc('\n', f) != EOF;
    return ok;
  });
  if (std::fclose(f) != 0) ok = false;
  if (!ok) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<BenchEngine> OpenBenchEngine(const std::string& data_dir) {
  LogOptions options;
  options.data_dir = data_dir;
  options.sync_writes = true;
  BenchEngine engine;
  LOYALTY_ASSIGN_OR_RETURN(engine.log, EventLog::Open(options));
  LOYALTY_ASSIGN_OR_RETURN(v1::Program program, LoadProgram(""));
  LOYALTY_ASSIGN_OR_RETURN(engine.projector, Projector::Open(engine.log.get(), program));
  return engine;
}

absl::Status EnsureIngested(const BenchArgs& args, const std::string& data_dir) {
  if (std::filesystem::exists(std::filesystem::path(data_dir) / "CURRENT")) {
    return absl::OkStatus();
  }
  return RunIngestFile(args, data_dir).status();
}

absl::StatusOr<std::string> BenchBrokers(const std::string& brokers_arg, const std::string& topic,
                                         std::unique_ptr<MockCluster>* cluster) {
  if (!brokers_arg.empty()) return brokers_arg;
  LOYALTY_ASSIGN_OR_RETURN(*cluster, MockCluster::Start(1));
  LOYALTY_RETURN_IF_ERROR((*cluster)->CreateTopic(topic, kMockPartitions));
  return (*cluster)->bootstrap_servers();
}

}  // namespace loyalty::bench
