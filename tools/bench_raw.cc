// The raw limits the engine is compared with, measured in the same run on the same
// messages: librdkafka consuming and doing nothing else, and RocksDB appending the
// same bytes in the same batch sizes with a WAL sync per batch.
//
// This file talks to librdkafka and RocksDB directly, on purpose: it measures
// them without the engine (everything else reaches them only through consumers/
// and engine/).
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "consumers/kafka_producer.h"
#include "consumers/mock_cluster.h"
#include "engine/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "tools/bench.h"
#include "tools/produce.h"

namespace loyalty::bench {
namespace {


std::string BigEndian(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

absl::StatusOr<double> AppendAll(const std::vector<std::string>& values, size_t batch_messages,
                                 const std::string& dir, bool with_id_index,
                                 Latencies* latencies) {
  std::filesystem::remove_all(dir);
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  options.bytes_per_sync = 1 << 20;
  // As the engine's log column family: 64 MiB memtable, LZ4, 16 KiB blocks.
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = 64 << 20;
  cf.compression = rocksdb::kLZ4Compression;
  rocksdb::BlockBasedTableOptions table;
  table.block_size = 16 * 1024;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, cf},
                                                      {"ids", cf}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(options), dir, cfs, &handles, &raw);
  if (!s.ok()) return absl::InternalError(s.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  const auto start = std::chrono::steady_clock::now();
  uint64_t seq = 0;
  std::vector<std::string> ids;
  for (size_t i = 0; i < values.size() && s.ok(); i += batch_messages) {
    const auto t0 = std::chrono::steady_clock::now();
    rocksdb::WriteBatch batch;
    const size_t end = std::min(values.size(), i + batch_messages);
    ids.clear();
    for (size_t j = i; j < end; ++j) {
      ++seq;
      s = batch.Put(handles[0], BigEndian(seq), values[j]);
      if (with_id_index) {
        // A 16-byte key that is random in key order, like an event id.
        uint64_t h = seq * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
        ids.push_back(BigEndian(h) + BigEndian(h * 0xBF58476D1CE4E5B9ull));
      }
    }
    std::sort(ids.begin(), ids.end());
    for (const std::string& id : ids) s = batch.Put(handles[1], id, BigEndian(seq));
    if (s.ok()) s = db->Write(wo, &batch);
    latencies->Add(Since(t0));
  }
  const double seconds = Since(start);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    db->DestroyColumnFamilyHandle(h).PermitUncheckedError();  // releasing only
  }
  rocksdb::Status closed = db->Close();
  if (!s.ok()) return absl::InternalError(s.ToString());
  if (!closed.ok()) return absl::InternalError(closed.ToString());
  std::filesystem::remove_all(dir);
  return values.size() / seconds;
}

}  // namespace

absl::StatusOr<BenchResult> RunRawRocksDb(const BenchArgs& args, size_t batch_messages) {
  BenchResult result;
  if (batch_messages == 0) batch_messages = 5000;
  // The same protobuf messages as ingest-kafka, generated before timing.
  std::vector<std::string> values;
  values.reserve(args.events);
  ProduceOptions produce;
  produce.events = args.events;
  produce.customers = args.customers;
  produce.seed = args.seed;
  produce.format = ProduceFormat::kProtobuf;
  uint64_t bytes = 0;
  GenerateStream(produce, [&](std::string_view, std::string_view value) {
    values.emplace_back(value);
    bytes += value.size();
    return true;
  });
  result.figures["messages"] = static_cast<double>(values.size());
  result.figures["value_bytes_avg"] = values.empty() ? 0 : static_cast<double>(bytes) / values.size();
  result.figures["batch_messages"] = static_cast<double>(batch_messages);
  Latencies seq_latency;
  LOYALTY_ASSIGN_OR_RETURN(double rate, AppendAll(values, batch_messages,
                                                  args.work_dir + "/raw-rocksdb", false,
                                                  &seq_latency));
  result.figures["append_per_s"] = rate;
  seq_latency.Report("batch_latency", &result);
  Latencies idx_latency;
  LOYALTY_ASSIGN_OR_RETURN(double rate_idx, AppendAll(values, batch_messages,
                                                      args.work_dir + "/raw-rocksdb-idx", true,
                                                      &idx_latency));
  result.figures["append_with_random_key_index_per_s"] = rate_idx;
  idx_latency.Report("batch_latency_with_index", &result);
  return result;
}

absl::StatusOr<BenchResult> RunRawKafka(const BenchArgs& args, const std::string& brokers_arg) {
  BenchResult result;
  const bool mock = brokers_arg.empty();
  const std::string topic =
      absl::StrCat("bench.raw.", getpid(), ".", absl::ToUnixMicros(absl::Now()));
  std::unique_ptr<MockCluster> cluster;
  LOYALTY_ASSIGN_OR_RETURN(const std::string brokers, BenchBrokers(brokers_arg, topic, &cluster));
  result.notes["transport"] = mock ? "embedded mock cluster" : absl::StrCat("broker ", brokers);
  LOYALTY_ASSIGN_OR_RETURN(std::unique_ptr<KafkaProducer> producer,
                           KafkaProducer::Create(brokers, {{"linger.ms", "5"}}));
  ProduceOptions produce;
  produce.events = args.events;
  produce.customers = args.customers;
  produce.seed = args.seed;
  produce.format = ProduceFormat::kProtobuf;
  std::atomic<uint64_t> produced{0};
  std::atomic<uint64_t> consumed{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> producer_done{false};
  absl::Status produce_status;
  auto produce_all = [&] {
    produce_status = ProduceBenchStream(*producer, topic, produce, mock, consumed, stop, &produced);
    producer_done = true;
  };
  if (!mock) {
    produce_all();
    LOYALTY_RETURN_IF_ERROR(produce_status);
  }

  // The consumer: the same group settings as the engine's KafkaSource.
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", brokers},
      {"group.id", absl::StrCat("bench-raw-", getpid(), "-", absl::ToUnixMicros(absl::Now()))},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"session.timeout.ms", "6000"}};
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(err);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(err);
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t sub = rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  std::thread producer_thread;
  if (mock && sub == RD_KAFKA_RESP_ERR_NO_ERROR) producer_thread = std::thread(produce_all);
  Sampler sampler(&consumed, std::chrono::milliseconds(500));
  const auto start = std::chrono::steady_clock::now();
  const double deadline_s = 60.0 + static_cast<double>(args.events) / 2000.0;
  std::chrono::steady_clock::time_point first;
  uint64_t bytes = 0;
  while (sub == RD_KAFKA_RESP_ERR_NO_ERROR && consumed.load() < args.events &&
         Since(start) < deadline_s) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) {
      if (mock && producer_done && consumed.load() >= produced.load()) break;
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (consumed.load() == 0) first = std::chrono::steady_clock::now();
      bytes += m->len;
      ++consumed;
    }
    rd_kafka_message_destroy(m);
  }
  const auto end = std::chrono::steady_clock::now();
  sampler.Stop();
  stop = true;
  if (producer_thread.joinable()) producer_thread.join();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (sub != RD_KAFKA_RESP_ERR_NO_ERROR) return absl::InternalError(rd_kafka_err2str(sub));
  LOYALTY_RETURN_IF_ERROR(produce_status);
  if (consumed.load() < args.events) {
    return absl::DeadlineExceededError(
        absl::StrCat("raw consumer took only ", consumed.load(), " of ", args.events));
  }
  const double seconds = std::chrono::duration<double>(end - first).count();
  result.figures["messages"] = static_cast<double>(consumed.load());
  result.figures["seconds"] = seconds;
  result.figures["consume_per_s"] = consumed.load() / seconds;
  result.figures["value_bytes_avg"] = static_cast<double>(bytes) / consumed.load();
  result.series["throughput"] = sampler.Rows();
  return result;
}

}  // namespace loyalty::bench
