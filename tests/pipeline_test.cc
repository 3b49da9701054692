// Pipelined ingestion (Ingestor::set_pipelined): a batch is decided while the one
// before it is written. Whatever the batches hold, the log, the states and the
// decision ids must be those of ingestion one batch at a time, byte for byte.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "projections/projector.h"
#include "projections/replay.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/ledger_harness.h"
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
