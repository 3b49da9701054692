// The projector's memory: what it keeps between batches never differs from the
// store, whatever its cache holds or drops.
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/ledger_harness.h"

namespace loyalty {
namespace {

using ProjectionCf = LogBatch::ProjectionCf;

// Purchases e-from..e-to over `customers` customers, a day apart per customer.
std::vector<InputMessage> Purchases(int from, int to, int customers) {
  std::vector<InputMessage> batch;
  for (int i = from; i <= to; ++i) {
    InputMessage m;
    m.raw = absl::StrCat(R"({"eventId":"e-)", i, R"(","customerId":"c-)", i % customers,
                         R"(","occurredAt":")", testing::Day(i / customers, 36000),
                         R"(","purchase":{"orderId":"o-)", i, R"(","amountMinor":)",
                         1000 + 37 * (i % 11), R"(,"currency":"EUR"}})");
    m.source.mutable_file()->set_path("projector_test");
    m.source.mutable_file()->set_line(i);
    batch.push_back(std::move(m));
  }
  return batch;
}

std::map<std::string, std::string> States(const EventLog& log) {
  std::map<std::string, std::string> out;
  REQUIRE(log.ScanProjection(ProjectionCf::kCustomerState,
                             [&](std::string_view key, std::string_view value) {
                               out.emplace(std::string(key), std::string(value));
                               return absl::OkStatus();
                             })
              .ok());
  return out;
}

TEST_CASE("projector: a bounded state cache gives the same states, byte for byte") {
  // 4000 purchases over 300 customers in batches of 100. With a cache far smaller
  // than the states, most batches drop states and read them again from the store;
  // the stored states must equal those of a run whose cache keeps everything.
  testing::LedgerHarness big;
  testing::HarnessOptions small_cache;
  small_cache.state_cache_bytes = 8 << 10;
  testing::LedgerHarness small(small_cache);
  size_t most_cached = 0;
  for (int from = 1; from <= 4000; from += 100) {
    const std::vector<InputMessage> batch = Purchases(from, from + 99, 300);
    REQUIRE(big.Ingest(batch).ok());
    REQUIRE(small.Ingest(batch).ok());
    most_cached = std::max(most_cached, small.projector().cached_states());
  }
  CHECK(big.projector().cached_states() == 300);
  // Dropped down to 90% of 8 KiB at each batch start, then one batch's customers.
  CHECK(most_cached < 300);
  CHECK(small.projector().cached_bytes() < big.projector().cached_bytes());
  const auto want = States(big.log());
  CHECK(want.size() == 300);
  CHECK(States(small.log()) == want);
}

TEST_CASE("projector: a batch whose commit fails leaves nothing of it in memory") {
  // The batch is decided and its states serialized (EndBatch), then the commit
  // fails. The projector must forget those states: the next read of each is the
  // stored one, not the one the failed batch built.
  testing::FaultEnv env(rocksdb::Env::Default());
  testing::HarnessOptions faulty;
  faulty.env = &env;
  testing::LedgerHarness h(faulty);
  REQUIRE(h.Ingest(Purchases(1, 30, 3)).ok());
  const auto stored = States(h.log());
  REQUIRE(stored.size() == 3);
  env.Set(testing::FaultEnv::Fault::kIOError);
  REQUIRE_FALSE(h.Ingest(Purchases(31, 60, 3)).ok());
  env.Set(testing::FaultEnv::Fault::kNone);
  for (const auto& [id, bytes] : stored) {
    auto state = h.projector().Mutable(id);
    REQUIRE(state.ok());
    v1::CustomerState want;
    REQUIRE(want.ParseFromString(bytes));
    CHECK((*state)->ledger().entries() == want.ledger().entries());
    CHECK((*state)->SerializeAsString() == want.SerializeAsString());
  }
  h.projector().AbortBatch();  // the reads above were outside a batch
}

}  // namespace
}  // namespace loyalty
