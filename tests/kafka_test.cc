// Kafka ingestion against librdkafka's mock cluster over TCP: kcat as the
// producer a user would run, the engine's KafkaSource as the consumer.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "consumers/jsonl_reader.h"
#include "consumers/kafka_config.h"
#include "absl/strings/match.h"
#include "consumers/kafka_producer.h"
#include "consumers/kafka_source.h"
#include "consumers/mock_cluster.h"
#include "consumers/outbox.h"
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <librdkafka/rdkafkacpp.h>
#include <functional>
#include <thread>
#include "google/protobuf/util/json_util.h"
#include "engine/event_codec.h"
#include "projections/ledger_reader.h"
#include "projections/projector.h"
#include "projections/state_store.h"
#include "tests/testing/ledger_harness.h"
#include "tests/testing/stderr_capture.h"
#include "tools/produce.h"

namespace loyalty {
namespace {

using testing::LedgerHarness;

// Produces the stream `gen` describes into `topic` and waits for its delivery;
// returns the messages sent. `each`, if given, sees every value.
int64_t ProduceGenerated(const std::string& brokers, const std::string& topic,
                         const ProduceOptions& gen,
                         const std::function<void(std::string_view)>& each = {}) {
  auto producer = KafkaProducer::Create(brokers, {});
  REQUIRE(producer.ok());
  int64_t sent = 0;
  GenerateStream(gen, [&](std::string_view key, std::string_view value) {
    REQUIRE((*producer)->Send(topic, key, value).ok());
    if (each) each(value);
    ++sent;
    return true;
  });
  REQUIRE((*producer)->Flush(10000).ok());
  return sent;
}

// Collects every input's Kafka position and every applied event id of the log,
// requiring each to appear once: nothing taken twice.
void CollectOnce(const EventLog& log, std::set<std::tuple<int, int64_t>>* positions,
                 std::set<std::string>* applied) {
  REQUIRE(log.Scan(1, UINT64_MAX, [&](uint64_t, std::string_view, std::string_view bytes,
                                      std::string_view) {
               v1::LogRecord r;
               REQUIRE(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
               if (!r.has_applied() && !r.has_dead_letter()) return absl::OkStatus();
               REQUIRE(positions->emplace(r.source().kafka().partition(), r.source().kafka().offset())
                           .second);
               if (r.has_applied()) {
                 auto e = RecordEvent(r);
                 REQUIRE(e.ok());
                 REQUIRE(applied->insert(e->event_id()).second);
               }
               return absl::OkStatus();
             }).ok());
}

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

// A harness whose ingestor is pipelined when asked (as `serve` runs it), and the
// KafkaSource over it, with the drain such an ingestor needs.
testing::HarnessOptions Pipelined(bool pipelined) {
  testing::HarnessOptions o;
  o.pipelined = pipelined;
  return o;
}
absl::StatusOr<std::unique_ptr<KafkaSource>> SourceOver(const KafkaSourceOptions& options,
                                                        LedgerHarness& h, BatchSink sink) {
  BatchDrain drain;
  if (h.ingestor().pipelined()) drain = [&h] { return h.ingestor().Flush(); };
  return KafkaSource::Create(options, &h.log(), std::move(sink), std::move(drain));
}

// Proves interfaces.md: producing JSON with kcat just works, and the engine's
// state equals that of `loyalty ingest` of the same lines (one partition keeps
// the same order), with a pipelined ingestor too.
void KcatEqualsFile(bool pipelined) {
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

  LedgerHarness from_kafka(Pipelined(pipelined));
  auto source = SourceOver(Options((*cluster)->bootstrap_servers(), "events"), from_kafka,
                           [&](const auto& batch) { return from_kafka.Ingest(batch).status(); });
  REQUIRE(source.ok());
  ConsumeAll(**source, from_kafka.log(), 3000);
  REQUIRE(from_kafka.ingestor().Flush().ok());

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
    REQUIRE(ScanStateBytes(log,
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

TEST_CASE("kafka: JSON produced with kcat gives the same answers as ingesting the file") {
  KcatEqualsFile(false);
}

TEST_CASE("kafka: pipelined - JSON produced with kcat gives the same answers as the file") {
  KcatEqualsFile(true);
}

// Proves exactly-once across a failure: a sink error stores nothing of its
// batch; a new consumer of the same group resumes from the offsets stored in
// RocksDB (not Kafka's), so every message is applied once. Pipelined, the batch
// before the failed one is still in flight when the next consumer is assigned.
void FailedBatchReadOnce(bool pipelined) {
  auto cluster = MockCluster::Start(1);
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->CreateTopic("ev6", 6).ok());
  ProduceOptions gen;
  gen.customers = 300;
  gen.events = 4000;
  gen.seed = 9;
  gen.format = ProduceFormat::kProtobuf;
  gen.start_unix_seconds = testing::T("2025-01-01T00:00:00Z");
  std::set<std::string> produced_ids;
  ProduceGenerated((*cluster)->bootstrap_servers(), "ev6", gen, [&](std::string_view value) {
    v1::Event e;
    if (e.ParseFromArray(value.data(), static_cast<int>(value.size())) && !e.event_id().empty()) {
      produced_ids.insert(e.event_id());
    }
  });

  LedgerHarness h(Pipelined(pipelined));
  int batches = 0;
  {
    auto first = SourceOver(Options((*cluster)->bootstrap_servers(), "ev6"), h,
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
  auto second = SourceOver(Options((*cluster)->bootstrap_servers(), "ev6"), h,
                           [&](const auto& batch) { return h.Ingest(batch).status(); });
  REQUIRE(second.ok());
  ConsumeAll(**second, h.log(), 4000);
  REQUIRE(h.ingestor().Flush().ok());
  CHECK(h.log().head().seq > before);

  // Every applied event id exactly once; every record's Kafka position distinct.
  std::set<std::string> applied;
  std::set<std::tuple<int, int64_t>> positions;
  CollectOnce(h.log(), &positions, &applied);
  // Every produced id that validates was applied (the rest are dead letters).
  CHECK(applied.size() > 3000);
  for (const std::string& id : applied) CHECK(produced_ids.count(id) == 1);
}

TEST_CASE("kafka: a batch that fails to store is re-read by the next consumer, exactly once") {
  FailedBatchReadOnce(false);
}

TEST_CASE("kafka: pipelined - a batch that fails to store is re-read by the next consumer once") {
  FailedBatchReadOnce(true);
}

TEST_CASE("kafka: request errors, leader changes and a broker outage lose nothing, double nothing") {
  // Proves the consumer side against the mock cluster's fault injection: Fetch and
  // OffsetCommit requests fail (retriable errors and dropped connections), the
  // partitions' leaders move, and a broker goes down and comes back while the
  // engine consumes; every message is taken exactly once.
  auto cluster = MockCluster::Start(3);
  REQUIRE(cluster.ok());
  rd_kafka_mock_cluster_t* mock = (*cluster)->raw();
  REQUIRE((*cluster)->CreateTopic("faults", 4).ok());
  ProduceOptions gen;
  gen.customers = 200;
  gen.events = 3000;
  gen.seed = 31;
  gen.format = ProduceFormat::kProtobuf;
  gen.start_unix_seconds = testing::T("2025-01-01T00:00:00Z");
  const int64_t produced = ProduceGenerated((*cluster)->bootstrap_servers(), "faults", gen);

  LedgerHarness h;
  auto source = KafkaSource::Create(Options((*cluster)->bootstrap_servers(), "faults"), &h.log(),
                                    [&](const auto& batch) { return h.Ingest(batch).status(); });
  REQUIRE(source.ok());
  constexpr int16_t kFetch = 1, kOffsetCommit = 8;
  rd_kafka_mock_push_request_errors(mock, kFetch, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR__TRANSPORT,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR__TRANSPORT,
                                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  rd_kafka_mock_push_request_errors(mock, kOffsetCommit, 3, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR__TRANSPORT,
                                    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE);
  int64_t taken = 0;
  for (int i = 0; i < 3000 && taken < produced; ++i) {
    auto n = (*source)->PollOnce();
    REQUIRE(n.ok());
    taken += static_cast<int64_t>(*n);
    if (i == 20) {
      for (int p = 0; p < 4; ++p) rd_kafka_mock_partition_set_leader(mock, "faults", p, 1 + (p + 1) % 3);
    }
    if (i == 40) rd_kafka_mock_broker_set_down(mock, 2);
    if (i == 90) rd_kafka_mock_broker_set_up(mock, 2);
  }
  REQUIRE(taken == produced);

  // Every input position once, every applied event id once, nothing missing.
  std::set<std::tuple<int, int64_t>> positions;
  std::set<std::string> applied;
  CollectOnce(h.log(), &positions, &applied);
  // The rest of the messages were duplicate deliveries the generator made.
  auto positions_taken = h.log().SourcePositions();
  REQUIRE(positions_taken.ok());
  int64_t next = 0;
  for (const auto& p : *positions_taken) next += p.kafka().offset() + 1;
  CHECK(next == produced);
  CHECK(static_cast<int64_t>(positions.size()) <= produced);
  CHECK(positions.size() > 2900);
}

TEST_CASE("kafka: a stored offset the partition does not hold stops the engine, clearly") {
  // Proves: a data directory that remembers offsets of another cluster (the
  // embedded mock starts empty every run, a topic was recreated) is neither
  // re-read from the start nor skipped ahead: ingestion stops and says why.
  ProduceOptions gen;
  gen.customers = 20;
  gen.seed = 4;
  gen.malformed_share = 0;
  gen.duplicate_share = 0;
  gen.format = ProduceFormat::kProtobuf;
  gen.start_unix_seconds = testing::T("2025-01-01T00:00:00Z");
  auto fill = [&](MockCluster& cluster, int events) {
    REQUIRE(cluster.CreateTopic("t", 1).ok());
    gen.events = events;
    ProduceGenerated(cluster.bootstrap_servers(), "t", gen);
  };
  LedgerHarness h;
  auto sink = [&](const auto& batch) { return h.Ingest(batch).status(); };
  {
    auto first = MockCluster::Start(1);
    REQUIRE(first.ok());
    fill(**first, 200);
    auto source = KafkaSource::Create(Options((*first)->bootstrap_servers(), "t"), &h.log(), sink);
    REQUIRE(source.ok());
    ConsumeAll(**source, h.log(), 200);
  }
  const uint64_t head = h.log().head().seq;
  auto second = MockCluster::Start(1);
  REQUIRE(second.ok());
  fill(**second, 50);  // the same topic, now ending at offset 50
  auto source = KafkaSource::Create(Options((*second)->bootstrap_servers(), "t"), &h.log(), sink);
  REQUIRE(source.ok());
  absl::Status stopped;
  for (int i = 0; i < 1500 && stopped.ok(); ++i) stopped = (*source)->PollOnce().status();
  INFO(stopped.ToString());
  CHECK(absl::IsFailedPrecondition(stopped));
  CHECK(absl::StrContains(stopped.message(), "the stored offset of t[0] is 200"));
  CHECK(absl::StrContains(stopped.message(), "new cluster or a recreated topic"));
  CHECK(h.log().head().seq == head);  // nothing re-read, nothing skipped
}

// One message read back from a topic, copied out of librdkafka (a consumer cannot
// be destroyed while any of its messages is alive).
struct ReadMessage {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;  // the first value of each name
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// Reads every message of `topic` from the beginning (all partitions) until
// `expected` have arrived or 30 s pass.
std::vector<ReadMessage> ReadTopic(const std::string& brokers, const std::string& topic,
                                   int partitions, size_t expected) {
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  conf->set("bootstrap.servers", brokers, err);
  conf->set("group.id", "reader-" + topic, err);
  conf->set("enable.auto.commit", "false", err);
  std::unique_ptr<RdKafka::KafkaConsumer> c(RdKafka::KafkaConsumer::create(conf.get(), err));
  REQUIRE(c != nullptr);
  std::vector<RdKafka::TopicPartition*> tps;
  for (int p = 0; p < partitions; ++p) {
    tps.push_back(RdKafka::TopicPartition::create(topic, p, RdKafka::Topic::OFFSET_BEGINNING));
  }
  REQUIRE(c->assign(tps) == RdKafka::ERR_NO_ERROR);
  RdKafka::TopicPartition::destroy(tps);
  std::vector<ReadMessage> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
    std::unique_ptr<RdKafka::Message> m(c->consume(200));
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    ReadMessage r;
    if (m->key() != nullptr) r.key = *m->key();
    r.value.assign(static_cast<const char*>(m->payload()), m->len());
    if (m->headers() != nullptr) {
      for (const RdKafka::Headers::Header& h : m->headers()->get_all()) {
        r.headers.emplace(h.key(), std::string(static_cast<const char*>(h.value()), h.value_size()));
      }
    }
    out.push_back(std::move(r));
  }
  c->close();
  return out;
}

TEST_CASE("kafka: each client takes the properties librdkafka gives its kind") {
  // `serve --kafka-config` gives one list to the consumer and to the outbox's
  // producer.
  const KafkaConfig given = {{"session.timeout.ms", "6000"},   // consumer only
                             {"linger.ms", "1"},               // producer only
                             {"security.protocol", "plaintext"},
                             {"auto.offset.reset", "earliest"},  // consumer only
                             {"acks", "all"},                  // producer only (an alias)
                             {"no.such.property", "1"}};
  CHECK(ConfigFor(KafkaClient::kConsumer, given) ==
        KafkaConfig{{"session.timeout.ms", "6000"},
                    {"security.protocol", "plaintext"},
                    {"auto.offset.reset", "earliest"},
                    {"no.such.property", "1"}});
  CHECK(ConfigFor(KafkaClient::kProducer, given) ==
        KafkaConfig{{"linger.ms", "1"},
                    {"security.protocol", "plaintext"},
                    {"acks", "all"},
                    {"no.such.property", "1"}});

  // So a producer given a consumer's property prints nothing (librdkafka warned
  // with a CONFWARN line), and an unknown property is still refused.
  auto cluster = MockCluster::Start(1);
  REQUIRE(cluster.ok());
  const std::string printed = testing::CaptureStderr([&] {
    auto producer = KafkaProducer::Create((*cluster)->bootstrap_servers(),
                                          {{"session.timeout.ms", "6000"}});
    REQUIRE(producer.ok());
  });
  CHECK(printed == "");
  auto refused =
      KafkaProducer::Create((*cluster)->bootstrap_servers(), {{"no.such.property", "1"}});
  REQUIRE_FALSE(refused.ok());
  CHECK(absl::StrContains(refused.status().message(), "no.such.property"));
}

TEST_CASE("kafka: a failed delivery fails one flush and not the ones after it") {
  // The outbox publishes a chunk, then Flush says whether all of it was delivered.
  // A failure once (here: the broker down past message.timeout.ms) used to fail
  // every later Flush too, and the outbox then published its chunk again forever.
  auto cluster = MockCluster::Start(1);
  REQUIRE(cluster.ok());
  const std::string brokers = (*cluster)->bootstrap_servers();
  REQUIRE((*cluster)->CreateTopic("out", 1).ok());
  auto producer = KafkaProducer::Create(
      brokers, {{"message.timeout.ms", "3000"}, {"reconnect.backoff.max.ms", "100"}});
  REQUIRE(producer.ok());
  REQUIRE((*producer)->Send("out", "k", "first").ok());
  REQUIRE((*producer)->Flush(10000).ok());

  rd_kafka_mock_broker_set_down((*cluster)->raw(), 1);
  REQUIRE((*producer)->Send("out", "k", "lost").ok());
  const absl::Status failed = (*producer)->Flush(10000);
  CHECK(absl::IsUnavailable(failed));
  CHECK(absl::StrContains(failed.message(), "1 messages failed"));

  rd_kafka_mock_broker_set_up((*cluster)->raw(), 1);
  REQUIRE((*producer)->Send("out", "k", "second").ok());
  const absl::Status after = (*producer)->Flush(10000);
  CHECK(after.ToString() == "OK");
  auto read = ReadTopic(brokers, "out", 1, 2);
  REQUIRE(read.size() == 2);
  CHECK(read[0].value == "first");
  CHECK(read[1].value == "second");
}

TEST_CASE("kafka: the outbox publishes dead letters and outcomes, each with its seq") {
  // Proves interfaces.md output topics: malformed messages arrive on the DLQ with
  // their original key and value and their reason and source position; one
  // outcome per applied event, keyed by customer; every message has loyalty-seq.
  auto cluster = MockCluster::Start(1);
  REQUIRE(cluster.ok());
  const std::string brokers = (*cluster)->bootstrap_servers();
  REQUIRE((*cluster)->CreateTopic("in", 3).ok());
  REQUIRE((*cluster)->CreateTopic(kDeadLetterTopic, 1).ok());
  REQUIRE((*cluster)->CreateTopic(kOutcomesTopic, 3).ok());
  REQUIRE((*cluster)->CreateTopic(kSignalsTopic, 3).ok());
  ProduceOptions gen;
  gen.customers = 100;
  gen.events = 1500;
  gen.seed = 21;
  gen.malformed_share = 0.05;
  gen.start_unix_seconds = testing::T("2025-01-01T00:00:00Z");
  ProduceGenerated(brokers, "in", gen);

  LedgerHarness h;
  auto source = KafkaSource::Create(Options(brokers, "in"), &h.log(),
                                    [&](const auto& batch) { return h.Ingest(batch).status(); });
  REQUIRE(source.ok());
  ConsumeAll(**source, h.log(), 1500);
  // Time passes: a sweep a year on finds lapsed tiers, churned customers, lots
  // near expiry.
  h.clock().Set(absl::FromUnixSeconds(gen.start_unix_seconds + 400 * 86400));
  REQUIRE(h.Sweep() == 1);
  size_t dead = 0, applied = 0, signals = 0, sweep_signals = 0;
  REQUIRE(h.log().Scan(1, UINT64_MAX, [&](uint64_t, std::string_view, std::string_view bytes,
                                         std::string_view) {
              v1::LogRecord r;
              REQUIRE(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
              dead += r.has_dead_letter();
              applied += r.has_applied();
              signals += r.applied().signals_size() + r.sweep().signals_size();
              sweep_signals += r.sweep().signals_size();
              return absl::OkStatus();
            }).ok());
  REQUIRE(dead > 30);
  REQUIRE(sweep_signals > 0);

  OutboxOptions options;
  options.brokers = brokers;
  auto outbox = Outbox::Start(options, &h.log());
  REQUIRE(outbox.ok());
  for (int i = 0; i < 300 && (*outbox)->cursor() < h.log().head().seq; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE((*outbox)->cursor() == h.log().head().seq);
  (*outbox)->Stop();

  auto dlq = ReadTopic(brokers, kDeadLetterTopic, 1, dead);
  REQUIRE(dlq.size() == dead);
  std::set<std::string> seqs;
  for (const ReadMessage& m : dlq) {
    CHECK_FALSE(m.Header("loyalty-reason").empty());
    CHECK(m.Header("loyalty-source-topic") == "in");
    CHECK_FALSE(m.Header("loyalty-source-offset").empty());
    auto record = h.log().Read(std::stoull(m.Header("loyalty-seq")));
    REQUIRE(record.ok());
    REQUIRE(record->has_dead_letter());
    CHECK(m.value == record->raw());
    CHECK(m.Header("loyalty-reason") == v1::DeadLetterReason_Name(record->dead_letter().reason()));
    CHECK(seqs.insert(m.Header("loyalty-seq")).second);
  }
  auto outcomes = ReadTopic(brokers, kOutcomesTopic, 3, applied);
  REQUIRE(outcomes.size() == applied);
  for (const ReadMessage& m : outcomes) {
    v1::OutcomeMessage o;
    REQUIRE(google::protobuf::util::JsonStringToMessage(m.value, &o).ok());
    CHECK(m.key == o.customer_id());
    CHECK(std::to_string(o.seq()) == m.Header("loyalty-seq"));
    CHECK(seqs.insert(m.Header("loyalty-seq")).second);
  }
  // Signals: as many as the log records, and once per change: per customer, each
  // tier or risk signal starts from the level the one before it ended at.
  auto published = ReadTopic(brokers, kSignalsTopic, 3, signals);
  REQUIRE(published.size() == signals);
  std::map<std::string, std::vector<v1::Signal>> by_customer;
  for (const ReadMessage& m : published) {
    v1::Signal s;
    REQUIRE(google::protobuf::util::JsonStringToMessage(m.value, &s).ok());
    CHECK(m.key == s.customer_id());
    CHECK(std::to_string(s.seq()) == m.Header("loyalty-seq"));
    by_customer[s.customer_id()].push_back(s);
  }
  for (auto& [customer, list] : by_customer) {
    // One partition per customer keeps them in log order.
    std::string tier = "BRONZE", risk = "NEW";
    for (const v1::Signal& s : list) {
      if (s.kind() == v1::TIER_CHANGED) {
        REQUIRE(s.has_tier_changed());
        CHECK(s.tier_changed().previous_tier() == tier);
        CHECK(s.tier_changed().tier() != tier);
        tier = s.tier_changed().tier();
      } else if (s.kind() == v1::CHURN_RISK_CHANGED) {
        REQUIRE(s.has_risk_changed());
        CHECK(s.risk_changed().previous_risk_level() == risk);
        CHECK(s.risk_changed().risk_level() != risk);
        risk = s.risk_changed().risk_level();
      } else {
        REQUIRE(s.kind() == v1::POINTS_EXPIRING);
        CHECK(s.points_expiring().points() > 0);
      }
    }
  }
}

}  // namespace
}  // namespace loyalty
