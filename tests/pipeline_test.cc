// Pipelined ingestion (Ingestor::set_pipelined): a batch is decided while the one
// before it is written. Whatever the batches hold, the log, the states and the
// decision ids must be those of ingestion one batch at a time, byte for byte.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "consumers/jsonl_reader.h"
#include "engine/event_codec.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "engine/validation.h"
#include "projections/projector.h"
#include "projections/replay.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/ledger_harness.h"
#include "tests/testing/temp_dir.h"
#include "tools/produce.h"

namespace loyalty {
namespace {

using ProjectionCf = LogBatch::ProjectionCf;

// The generated stream (the full event mix, malformed lines, duplicates) cut into
// batches of random sizes. Some batches begin again with messages of the batch
// before (same bytes, same positions: a redelivery of what is in flight), and
// some carry an event id of the batch before with other content (a conflict).
std::vector<std::vector<InputMessage>> Batches(uint64_t seed) {
  ProduceOptions gen;
  gen.customers = 150;
  gen.events = 6000;
  gen.seed = seed;
  gen.malformed_share = 0.05;
  gen.duplicate_share = 0.03;
  std::vector<InputMessage> all;
  GenerateStream(gen, [&](std::string_view key, std::string_view value) {
    InputMessage m;
    m.raw = std::string(value);
    m.key = std::string(key);
    m.source.mutable_file()->set_path("pipeline_test");
    m.source.mutable_file()->set_line(all.size() + 1);
    all.push_back(std::move(m));
    return true;
  });
  std::mt19937_64 rng(seed);
  std::vector<std::vector<InputMessage>> batches;
  size_t next = 0;
  while (next < all.size()) {
    std::vector<InputMessage> batch;
    if (!batches.empty() && rng() % 3 == 0) {
      const std::vector<InputMessage>& before = batches.back();
      const size_t from = rng() % before.size();
      batch.insert(batch.end(), before.begin() + from, before.end());
    }
    const size_t n = std::min<size_t>(1 + rng() % 400, all.size() - next);
    batch.insert(batch.end(), all.begin() + next, all.begin() + next + n);
    next += n;
    if (batches.size() > 0 && rng() % 2 == 0) {
      // An event id of the batch before, with other content.
      for (const InputMessage& m : batches.back()) {
        auto event = DecodeEvent(m.raw, v1::ENCODING_JSON);
        if (!event.ok() || event->event_id().empty()) continue;
        InputMessage conflict = batch.back();  // at the same input position
        conflict.raw = absl::StrCat(R"({"eventId":")", event->event_id(),
                                    R"(","customerId":"c-x","occurredAt":"2025-06-01T00:00:00Z",)",
                                    R"("purchase":{"orderId":"o-x","amountMinor":500,)",
                                    R"("currency":"EUR"}})");
        batch.push_back(std::move(conflict));
        break;
      }
    }
    batches.push_back(std::move(batch));
  }
  return batches;
}

TEST_CASE("pipeline: pipelined ingestion stores what one batch at a time stores - byte for byte") {
  for (uint64_t seed : {3u, 17u}) {
    const auto batches = Batches(seed);
    testing::HarnessOptions one_at_a_time;
    testing::HarnessOptions pipelined;
    pipelined.pipelined = true;
    // One at a time keeps no state parsed between batches; pipelined keeps the
    // states of customers in two batches in a row parsed, as far as a budget that
    // holds some of them (seed 3) or all (seed 17).
    one_at_a_time.parsed_state_bytes = 0;
    pipelined.parsed_state_bytes = seed == 3 ? 64 << 10 : kDefaultParsedStateBytes;
    // Each commit syncs the WAL, slowly: every batch is decided while the one
    // before it is still being written, so the checks against the batch in flight
    // are what finds its duplicates, dead letters and states.
    testing::FaultEnv slow(rocksdb::Env::Default());
    slow.SetSyncDelay(std::chrono::milliseconds(15));
    pipelined.env = &slow;
    pipelined.sync_writes = true;
    // A cache far smaller than the states: states are dropped between batches, so
    // the batch in flight's must be kept, and read from memory, not the store.
    for (auto* o : {&one_at_a_time, &pipelined}) o->state_cache_bytes = 4 << 10;
    testing::LedgerHarness a(one_at_a_time), b(pipelined);
    IngestCounts ca, cb;
    uint64_t b_before = 0;  // the last record of b's batch before
    size_t most_parsed = 0;  // states b kept parsed after a batch
    for (const auto& batch : batches) {
      auto x = a.Ingest(batch);
      REQUIRE(x.ok());
      ca.Add(*x);
      auto y = b.Ingest(batch);
      REQUIRE(y.ok());
      cb.Add(*y);
      most_parsed = std::max(most_parsed, b.projector().parsed_states());
      CHECK(b.projector().parsed_bytes() <= pipelined.parsed_state_bytes);
      // One at a time, the batch is stored on return; pipelined, the one before.
      CHECK(a.log().head().seq == x->last_seq);
      CHECK(b.log().head().seq >= b_before);
      b_before = y->last_seq;
    }
    REQUIRE(b.ingestor().Flush().ok());
    INFO("seed " << seed);
    CHECK(a.projector().parsed_states() == 0);
    CHECK(most_parsed > 0);
    CHECK(b.log().head().seq == a.log().head().seq);
    CHECK(b.log().head().hash == a.log().head().hash);
    CHECK(ca.applied == cb.applied);
    CHECK(ca.duplicates == cb.duplicates);
    CHECK(ca.repeated_dead_letters == cb.repeated_dead_letters);
    CHECK(ca.dead_letters_by_reason == cb.dead_letters_by_reason);
    // The stream exercises what the in-flight checks are for.
    CHECK(ca.duplicates > 100);
    CHECK(ca.repeated_dead_letters > 10);
    CHECK(ca.dead_letters_by_reason[v1::EVENT_ID_CONFLICT] > 5);
    CHECK(ca.accepted > 1000);
    CHECK(testing::StoreContents(b.log()) == testing::StoreContents(a.log()));
    // And the states are what a replay of the log derives.
    auto replay = ReplayLog(b.log(), UINT64_MAX);
    REQUIRE(replay.ok());
    CHECK(replay->first_mismatch_seq == 0);
  }
}

TEST_CASE("pipeline: batches decoded ahead store what batches decoded in place store") {
  // `loyalty ingest` decodes each batch on a reading thread (DecodeBatch) and the
  // Ingestor then only finishes the checks that need its clock (IngestDecoded).
  // The generated stream, with some events as protobuf, some dated past the clock's
  // 24 h of skew, and an input over the size limit: byte for byte the same store.
  auto batches = Batches(29);
  int future = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    for (size_t i = 0; i < batches[b].size(); ++i) {
      InputMessage& m = batches[b][i];
      auto event = DecodeEvent(m.raw, v1::ENCODING_JSON);
      if (!event.ok()) continue;
      if (i % 7 == 0) m.raw = CanonicalEncoding(*event);  // protobuf
      if (i % 53 == 0) {
        // The harness clock reads 2100-01-01: two days later is past the skew.
        event->mutable_occurred_at()->set_seconds(4102444800 + 2 * 86400);
        m.raw = CanonicalEncoding(*event);
        ++future;
      }
    }
    if (b == 1) {
      InputMessage large = batches[b].back();
      large.full_size = kMaxMessageBytes + 1;
      large.full_sha256 = std::string(32, 'x');
      batches[b].push_back(std::move(large));
    }
  }
  REQUIRE(future > 10);

  // The two steps give CheckInputs' verdicts.
  std::vector<InputToCheck> inputs;
  const absl::Time now = absl::FromUnixSeconds(4102444800);
  for (const InputMessage& m : batches[1]) {
    inputs.push_back({m.raw, DetectEncoding(m.raw, m.json_content_type), m.full_size, now});
  }
  const std::vector<InputVerdict> checked = CheckInputs(inputs);
  std::vector<InputVerdict> decoded = DecodeInputs(inputs);
  REQUIRE(decoded.size() == checked.size());
  for (size_t i = 0; i < decoded.size(); ++i) {
    FinishCheck(now, &decoded[i]);
    INFO("input " << i);
    CHECK(decoded[i].ok == checked[i].ok);
    CHECK(decoded[i].rejection.reason == checked[i].rejection.reason);
    CHECK(decoded[i].rejection.detail == checked[i].rejection.detail);
    CHECK(SameMessage(decoded[i].event, checked[i].event));
    CHECK(decoded[i].canonical == checked[i].canonical);
    CHECK(decoded[i].digest == checked[i].digest);
  }

  for (bool pipelined : {false, true}) {
    testing::HarnessOptions o;
    o.pipelined = pipelined;
    o.state_cache_bytes = 4 << 10;
    testing::LedgerHarness a(o), b(o);
    IngestCounts ca, cb;
    for (const auto& batch : batches) {
      auto x = a.Ingest(batch);
      REQUIRE(x.ok());
      ca.Add(*x);
      DecodedBatch ahead = DecodeBatch(batch);
      auto y = b.ingestor().IngestDecoded(&ahead);
      REQUIRE(y.ok());
      cb.Add(*y);
    }
    REQUIRE(a.ingestor().Flush().ok());
    REQUIRE(b.ingestor().Flush().ok());
    INFO("pipelined " << pipelined);
    CHECK(ca.dead_letters_by_reason[v1::OCCURRED_IN_FUTURE] > 10);
    CHECK(ca.dead_letters_by_reason[v1::MESSAGE_TOO_LARGE] == 1);
    CHECK(ca.dead_letters_by_reason[v1::UNDECODABLE] > 10);
    CHECK(cb.dead_letters_by_reason == ca.dead_letters_by_reason);
    CHECK(cb.applied == ca.applied);
    CHECK(cb.duplicates == ca.duplicates);
    CHECK(testing::StoreContents(b.log()) == testing::StoreContents(a.log()));
  }
  // A batch whose verdicts do not match its messages is refused.
  testing::LedgerHarness h;
  DecodedBatch odd = DecodeBatch(batches[0]);
  odd.verdicts.pop_back();
  CHECK(absl::IsInvalidArgument(h.ingestor().IngestDecoded(&odd).status()));
}

TEST_CASE("pipeline: a file read ahead gives the reader's batches and its counts") {
  testing::TempDir dir;
  const std::string path = dir.Sub("in.jsonl");
  {
    std::ofstream out(path);
    for (int i = 1; i <= 2500; ++i) {
      out << R"({"eventId":"e-)" << i << R"(","customerId":"c-1"})" << "\n";
      if (i % 100 == 0) out << "  \n";  // blank: skipped and counted
    }
  }
  auto direct = JsonLinesReader::Open(path);
  REQUIRE(direct.ok());
  auto reader = JsonLinesReader::Open(path);
  REQUIRE(reader.ok());
  JsonLinesReadAhead ahead(*std::move(reader), 1000);
  JsonLinesReadAhead::Batch batch;
  std::vector<size_t> sizes;
  for (;;) {
    auto more = ahead.Next(&batch);
    REQUIRE(more.ok());
    if (!*more) break;
    std::vector<InputMessage> want;
    REQUIRE((*direct)->Read(1000, &want).ok());
    REQUIRE(batch.decoded.messages.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      CHECK(batch.decoded.messages[i].raw == want[i].raw);
      CHECK(batch.decoded.messages[i].source.file().line() == want[i].source.file().line());
      // Decoded (the checks that need the clock are left to the Ingestor).
      CHECK(batch.decoded.verdicts[i].ok);
      CHECK(batch.decoded.verdicts[i].event.event_id() ==
            DecodeEvent(want[i].raw, v1::ENCODING_JSON)->event_id());
    }
    CHECK(batch.counts.lines_read == (*direct)->lines_read());
    sizes.push_back(want.size());
  }
  CHECK(sizes == std::vector<size_t>{1000, 1000, 500});
  CHECK(batch.decoded.messages.empty());
  CHECK(batch.counts.lines_read == 2525);
  CHECK(batch.counts.blank_lines == 25);
  CHECK(batch.counts.bytes_read == batch.counts.total_bytes);

  // A read that fails is reported (a directory opens, and then fails to read).
  auto bad = JsonLinesReader::Open(dir.path());
  REQUIRE(bad.ok());
  JsonLinesReadAhead failing(*std::move(bad), 10);
  CHECK(absl::IsDataLoss(failing.Next(&batch).status()));
}

TEST_CASE("pipeline: reading ahead stops without waiting for an input that stays silent") {
  // `tail -f events.jsonl | loyalty ingest -` stopped by an error: the reading
  // thread waits for lines that may never come, and stopping must not wait for it.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  REQUIRE(::write(fds[1], "{}\n", 3) == 3);
  auto reader = JsonLinesReader::Open(absl::StrCat("/proc/self/fd/", fds[0]));
  REQUIRE(reader.ok());
  {
    JsonLinesReadAhead ahead(*std::move(reader), 10);  // waits for 9 more lines
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }  // returns: this test would hang otherwise
  CHECK(::close(fds[1]) == 0);  // the read ends, and the thread with it
  CHECK(::close(fds[0]) == 0);
}

// One JSON line of customer c-1 at day `day`, with the payload member given.
InputMessage Line(int line, int day, const std::string& payload) {
  InputMessage m;
  m.raw = absl::StrCat(R"({"eventId":"e-)", line, R"(","customerId":"c-1","occurredAt":")",
                       testing::Day(day, 36000), R"(",)", payload, "}");
  m.source.mutable_file()->set_path("pipeline_test");
  m.source.mutable_file()->set_line(line);
  return m;
}

TEST_CASE("pipeline: a decision id the batch in flight moved out of a state is found") {
  // Batch 2 moves redemption r-1 out of c-1's state (past its cancel window) into
  // the decision ids it writes. Batch 3, decided while batch 2 is being written,
  // cancels r-1 and redeems under its id again: the rules must find r-1 (in the
  // projector's memory, not yet in the store) and reject both with the reasons a
  // run one batch at a time gives.
  const std::vector<std::vector<InputMessage>> batches = {
      {Line(1, 0, R"("purchase":{"orderId":"o-1","amountMinor":100000,"currency":"EUR"})"),
       Line(2, 40, R"("redemption":{"redemptionId":"r-1","points":100,"rewardId":"w"})")},
      {Line(3, 200, R"("purchase":{"orderId":"o-2","amountMinor":1000,"currency":"EUR"})")},
      {Line(4, 201, R"("redemptionCancel":{"redemptionId":"r-1"})"),
       Line(5, 202, R"("redemption":{"redemptionId":"r-1","points":100,"rewardId":"w"})")},
  };
  testing::HarnessOptions one_at_a_time;
  testing::HarnessOptions pipelined;
  pipelined.pipelined = true;
  testing::FaultEnv slow(rocksdb::Env::Default());
  slow.SetSyncDelay(std::chrono::milliseconds(200));  // batch 3 is decided meanwhile
  pipelined.env = &slow;
  pipelined.sync_writes = true;
  testing::LedgerHarness a(one_at_a_time), b(pipelined);
  for (const auto& batch : batches) {
    REQUIRE(a.Ingest(batch).ok());
    REQUIRE(b.Ingest(batch).ok());
  }
  REQUIRE(b.ingestor().Flush().ok());
  for (testing::LedgerHarness* h : {&a, &b}) {
    const uint64_t head = h->log().head().seq;
    REQUIRE(head == 6);  // the program, then five events
    auto cancel = h->log().Read(5);
    auto again = h->log().Read(6);
    REQUIRE(cancel.ok());
    REQUIRE(again.ok());
    CHECK(cancel->applied().outcome().reason() == v1::CANCEL_WINDOW_CLOSED);
    CHECK(again->applied().outcome().reason() == v1::DUPLICATE_REDEMPTION);
  }
  CHECK(testing::ProjectionContents(b.log(), ProjectionCf::kDecisionIds).size() == 1);
  CHECK(testing::StoreContents(b.log()) == testing::StoreContents(a.log()));
}

}  // namespace
}  // namespace loyalty
