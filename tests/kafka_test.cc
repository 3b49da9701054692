// Kafka ingestion against librdkafka's mock cluster over TCP: kcat as the
// producer a user would run, the engine's KafkaSource as the consumer.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "consumers/jsonl_reader.h"
#include "consumers/kafka_producer.h"
#include "consumers/kafka_source.h"
#include "consumers/mock_cluster.h"
#include "engine/event_codec.h"
#include "projections/ledger_reader.h"
#include "projections/projector.h"
#include "tests/testing/ledger_harness.h"
#include "tools/produce.h"

namespace loyalty {
namespace {

using testing::LedgerHarness;

// Consumes until the stored offsets of `topic` sum to `messages` (or 60 s pass).
void ConsumeAll(KafkaSource& source, const EventLog& log, int64_t messages) {
  for (int i = 0; i < 3000; ++i) {
    auto taken = source.PollOnce();
    REQUIRE(taken.ok());
    auto positions = log.SourcePositions();
    REQUIRE(positions.ok());
    int64_t done = 0;
    for (const auto& p : *positions) {
      if (p.has_kafka()) done += p.kafka().offset() + 1;
    }
    if (done >= messages) return;
  }
  FAIL("the consumer did not catch up within 60 s");
}

KafkaSourceOptions Options(const std::string& brokers, const std::string& topic) {
  KafkaSourceOptions o;
  o.brokers = brokers;
  o.topic = topic;
  o.group = "test-" + topic;
  o.session_timeout_ms = 6000;
  o.batch_wait_ms = 20;
  o.batch_max_messages = 500;
  return o;
}

TEST_CASE("kafka: JSON produced with kcat gives the same answers as ingesting the file") {
  // Proves interfaces.md: producing JSON with kcat just works, and the engine's
  // state equals that of `loyalty ingest` of the same lines (one partition keeps
  // the same order).
  testing::TempDir dir;
  auto cluster = MockCluster::Start(1);
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->CreateTopic("events", 1).ok());
  ProduceOptions gen;
  gen.customers = 200;
  gen.events = 3000;
  gen.seed = 3;
  gen.start_unix_seconds = testing::T("2025-01-01T00:00:00Z");
  {
    std::ofstream f(dir.Sub("events.jsonl"));
    GenerateStream(gen, [&](std::string_view key, std::string_view value) {
      f << value << "\n";
      return true;
    });
  }
  const std::string cmd = absl::StrCat("kcat -P -q -b ", (*cluster)->bootstrap_servers(),
                                       " -t events -l ", dir.Sub("events.jsonl"));
  REQUIRE(std::system(cmd.c_str()) == 0);

  LedgerHarness from_kafka;
  auto source = KafkaSource::Create(Options((*cluster)->bootstrap_servers(), "events"),
                                    &from_kafka.log(), [&](const auto& batch) {
                                      return from_kafka.Ingest(batch).status();
                                    });
  REQUIRE(source.ok());
  ConsumeAll(**source, from_kafka.log(), 3000);

  LedgerHarness from_file;
  auto reader = JsonLinesReader::Open(dir.Sub("events.jsonl"));
  REQUIRE(reader.ok());
  std::vector<InputMessage> batch;
  while (*(*reader)->Read(1000, &batch)) {
    REQUIRE(from_file.Ingest(batch).ok());
    batch.clear();
  }
  if (!batch.empty()) REQUIRE(from_file.Ingest(batch).ok());

  std::map<std::string, std::string> a, b;
  auto collect = [](EventLog& log, std::map<std::string, std::string>* out) {
    REQUIRE(log.ScanProjection(LogBatch::ProjectionCf::kCustomerState,
                               [&](std::string_view k, std::string_view v) {
                                 (*out)[std::string(k)] = std::string(v);
                                 return absl::OkStatus();
                               })
                .ok());
  };
  collect(from_kafka.log(), &a);
  collect(from_file.log(), &b);
  CHECK(a.size() > 150);
  CHECK(a == b);
  CHECK(from_kafka.log().head().seq == from_file.log().head().seq);
}

TEST_CASE("kafka: a batch that fails to store is re-read by the next consumer, exactly once") {
  // Proves exactly-once across a failure: a sink error stores nothing of its
  // batch; a new consumer of the same group resumes from the offsets stored in
  // RocksDB (not Kafka's), so every message is applied once.
  auto cluster = MockCluster::Start(1);
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->CreateTopic("ev6", 6).ok());
  auto producer = KafkaProducer::Create((*cluster)->bootstrap_servers(), {});
  REQUIRE(producer.ok());
  ProduceOptions gen;
  gen.customers = 300;
  gen.events = 4000;
  gen.seed = 9;
  gen.format = ProduceFormat::kProtobuf;
  gen.start_unix_seconds = testing::T("2025-01-01T00:00:00Z");
  std::set<std::string> produced_ids;
  GenerateStream(gen, [&](std::string_view key, std::string_view value) {
    REQUIRE((*producer)->Send("ev6", key, value).ok());
    v1::Event e;
    if (e.ParseFromArray(value.data(), static_cast<int>(value.size())) && !e.event_id().empty()) {
      produced_ids.insert(e.event_id());
    }
    return true;
  });
  REQUIRE((*producer)->Flush(10000).ok());

  LedgerHarness h;
  int batches = 0;
  {
    auto first = KafkaSource::Create(Options((*cluster)->bootstrap_servers(), "ev6"), &h.log(),
                                     [&](const auto& batch) -> absl::Status {
                                       if (++batches == 4) {
                                         return absl::UnavailableError("injected store failure");
                                       }
                                       return h.Ingest(batch).status();
                                     });
    REQUIRE(first.ok());
    absl::Status failed;
    for (int i = 0; i < 2000 && failed.ok(); ++i) failed = (*first)->PollOnce().status();
    REQUIRE_FALSE(failed.ok());
  }  // the failed consumer leaves the group
  const uint64_t before = h.log().head().seq;
  auto second = KafkaSource::Create(Options((*cluster)->bootstrap_servers(), "ev6"), &h.log(),
                                    [&](const auto& batch) { return h.Ingest(batch).status(); });
  REQUIRE(second.ok());
  ConsumeAll(**second, h.log(), 4000);
  CHECK(h.log().head().seq > before);

  // Every applied event id exactly once; every record's Kafka position distinct.
  std::set<std::string> applied;
  std::set<std::tuple<int, int64_t>> positions;
  REQUIRE(h.log().Scan(1, UINT64_MAX, [&](uint64_t, std::string_view, std::string_view bytes,
                                         std::string_view) {
              v1::LogRecord r;
              REQUIRE(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
              if (r.has_program()) return absl::OkStatus();
              REQUIRE(positions.emplace(r.source().kafka().partition(), r.source().kafka().offset())
                          .second);
              if (r.has_applied()) {
                auto e = RecordEvent(r);
                REQUIRE(e.ok());
                REQUIRE(applied.insert(e->event_id()).second);
              }
              return absl::OkStatus();
            }).ok());
  // Every produced id that validates was applied (the rest are dead letters).
  CHECK(applied.size() > 3000);
  for (const std::string& id : applied) CHECK(produced_ids.count(id) == 1);
}

}  // namespace
}  // namespace loyalty
