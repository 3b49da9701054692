// The projector's memory: what it keeps between batches never differs from the
// store, whatever its cache holds or drops.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "projections/program.h"
#include "engine/event_codec.h"
#include "projections/decider.h"
#include "projections/ledger.h"
#include "projections/ledger_reader.h"
#include "projections/projector.h"
#include "projections/replay.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/ledger_harness.h"
#include "tests/testing/raw_db.h"

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
  return testing::StateContents(log);
}

v1::CustomerState StoredState(const EventLog& log, const std::string& customer) {
  auto bytes = ReadStateBytes(log, customer);
  REQUIRE(bytes.ok());
  REQUIRE(bytes->has_value());
  v1::CustomerState state;
  REQUIRE(state.ParseFromString(**bytes));
  return state;
}

// The log replayed from scratch gives the stored states and decision ids.
void CheckRebuildEqualsLive(const EventLog& log) {
  auto replay = ReplayLog(log, UINT64_MAX);
  REQUIRE(replay.ok());
  CHECK(replay->first_mismatch_seq == 0);
  std::map<std::string, std::string> states;
  for (const auto& [id, state] : replay->states) states[id] = SerializeDeterministic(*state);
  CHECK(states == States(log));
  CHECK(replay->decision_ids == testing::ProjectionContents(log, ProjectionCf::kDecisionIds));
}

TEST_CASE("projector: a bounded state cache gives the same states, byte for byte") {
  // 4000 purchases over 300 customers in batches of 100. With a cache far smaller
  // than the states, most batches drop states and read them again from the store;
  // the stored states must equal those of a run whose cache keeps everything.
  testing::LedgerHarness big;
  testing::HarnessOptions small_cache;
  small_cache.state_cache_bytes = 8 << 10;
  small_cache.parsed_state_bytes = 0;
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

TEST_CASE("projector: states kept parsed between batches give the same states - byte for byte") {
  // Customers busy in every batch and others now and then, with a serialized
  // cache far smaller than the states: the states kept parsed (those used in two
  // batches in a row, within the budget) are stored as the ones read again from
  // the store each batch are, and as the log's replay derives them.
  testing::HarnessOptions none;
  none.state_cache_bytes = 1 << 10;
  none.parsed_state_bytes = 0;
  testing::HarnessOptions some = none;
  some.parsed_state_bytes = 160 << 10;  // room for all 4 busy states at first, 2 at the end
  testing::LedgerHarness a(none), b(some);
  size_t most_parsed = 0;
  bool dropped = false;  // a state kept parsed left when a batch did not use it
  for (int from = 1; from <= 6000; from += 200) {
    // 200 purchases: 120 of 4 busy customers, 80 over 300 others.
    std::vector<InputMessage> batch = Purchases(from, from + 79, 300);
    for (int i = from + 80; i < from + 200; ++i) {
      std::vector<InputMessage> one = Purchases(i, i, 4);
      // Customer 3 skips every third batch.
      if (one[0].raw.find(R"("c-3")") != std::string::npos && (from / 200) % 3 == 2) continue;
      batch.push_back(std::move(one[0]));
    }
    REQUIRE(a.Ingest(batch).ok());
    const size_t before = b.projector().parsed_states();
    REQUIRE(b.Ingest(batch).ok());
    if (b.projector().parsed_states() < before) dropped = true;
    most_parsed = std::max(most_parsed, b.projector().parsed_states());
    CHECK(b.projector().parsed_bytes() <= some.parsed_state_bytes);
    CHECK(a.projector().parsed_states() == 0);
  }
  CHECK(most_parsed > 0);
  CHECK(dropped);
  const auto want = States(a.log());
  CHECK(want.size() > 200);
  CHECK(States(b.log()) == want);
  CheckRebuildEqualsLive(b.log());
}

// `count` purchases of one customer, e-from on, 20 a day from day 0.
std::vector<InputMessage> BusyPurchases(int from, int count) {
  std::vector<InputMessage> batch;
  for (int i = from; i < from + count; ++i) {
    InputMessage m;
    m.raw = absl::StrCat(R"({"eventId":"e-)", i, R"(","customerId":"busy","occurredAt":")",
                         testing::Day(i / 20, 36000 + i % 20), R"(","purchase":{"orderId":"o-)",
                         i, R"(","amountMinor":)", 1000 + 37 * (i % 11),
                         R"(,"currency":"EUR"}})");
    m.source.mutable_file()->set_path("projector_test");
    m.source.mutable_file()->set_line(i);
    batch.push_back(std::move(m));
  }
  return batch;
}

// The state_chunks keys the stored heads name.
std::set<std::string> NamedChunks(const EventLog& log) {
  std::set<std::string> named;
  for (const auto& [id, head] : testing::ProjectionContents(log, ProjectionCf::kCustomerState)) {
    auto keys = HeadChunkKeys(id, head);
    REQUIRE(keys.ok());
    named.insert(keys->begin(), keys->end());
  }
  return named;
}

TEST_CASE("projector: a large state is stored as chunks and a batch writes only those it changed") {
  // A busy customer's state grows past kStateInlineBytes. Each later batch of a
  // few purchases must store only some of its chunks, leave no chunk no head
  // names, and keep the state equal to the log's replay, also when the state is
  // read back from its chunks (a cache too small to keep it).
  testing::HarnessOptions options;
  auto cache = GENERATE(as<size_t>{}, kDefaultStateCacheBytes, size_t{1024});
  options.state_cache_bytes = cache;
  INFO("cache " << cache);
  testing::LedgerHarness h(options);
  REQUIRE(h.Ingest(BusyPurchases(1, 3000)).ok());
  auto head = h.log().GetProjection(ProjectionCf::kCustomerState, "busy");
  REQUIRE(head.ok());
  REQUIRE(EncodedState::IsChunkedHead(*head));
  const size_t chunks = HeadChunkKeys("busy", *head)->size();
  CHECK(chunks > 30);
  for (int from = 3001; from <= 3040; from += 5) {
    const auto before = testing::ProjectionContents(h.log(), ProjectionCf::kStateChunks);
    REQUIRE(h.Ingest(BusyPurchases(from, 5)).ok());
    const auto after = testing::ProjectionContents(h.log(), ProjectionCf::kStateChunks);
    size_t written = 0;
    for (const auto& [key, bytes] : after) written += before.count(key) == 0;
    INFO("batch from " << from);
    CHECK(written >= 1);
    CHECK(written * 2 < after.size());
    std::set<std::string> stored;
    for (const auto& [key, bytes] : after) stored.insert(key);
    CHECK(stored == NamedChunks(h.log()));
  }
  CHECK(StoredState(h.log(), "busy").ledger().order_id_size() == 3040);
  CheckRebuildEqualsLive(h.log());
}

TEST_CASE("projector: a batch whose states pass the bound is taken in several appends") {
  // Batches of 5000 purchases over 300 customers. With a bound below one batch's
  // state bytes, every batch after the first is taken in appends of
  // kMinSliceMessages; the log and the states are those of whole batches, and the
  // counts add up.
  auto pipelined = GENERATE(false, true);
  INFO("pipelined " << pipelined);
  testing::HarnessOptions whole_options, split_options;
  whole_options.pipelined = split_options.pipelined = pipelined;
  split_options.batch_state_bytes = 1;
  testing::LedgerHarness whole(whole_options), split(split_options);
  IngestCounts whole_counts, split_counts;
  for (int from = 1; from <= 15000; from += 5000) {
    const std::vector<InputMessage> batch = Purchases(from, from + 4999, 300);
    auto w = whole.Ingest(batch);
    auto s = split.Ingest(batch);
    REQUIRE(w.ok());
    REQUIRE(s.ok());
    CHECK(s->messages == 5000);
    CHECK(s->applied == w->applied);
    CHECK(s->accepted == w->accepted);
    CHECK(s->last_seq == w->last_seq);
    whole_counts.Add(*w);
    split_counts.Add(*s);
  }
  REQUIRE(whole.ingestor().Flush().ok());
  REQUIRE(split.ingestor().Flush().ok());
  CHECK(whole.ingestor().appends() == 3);
  // 5000, then 2048 + 2048 + 904 twice.
  CHECK(split.ingestor().appends() == 7);
  CHECK(split.ingestor().stored().applied == whole.ingestor().stored().applied);
  CHECK(split_counts.applied == 15000);
  CHECK(split.log().head().seq == whole.log().head().seq);
  CHECK(States(split.log()) == States(whole.log()));
  CheckRebuildEqualsLive(split.log());
}

TEST_CASE("projector: states serialized on two threads are those serialized on one") {
  // Batches of 400 purchases over 300 customers change more states than
  // kParallelSerializeFrom, so EndBatch shares their serialization with a second
  // thread; the stored states must be byte for byte those of a single thread, and
  // the rebuilt ones.
  testing::HarnessOptions one_thread;
  one_thread.serialize_threads = 1;
  testing::LedgerHarness one(one_thread);
  testing::HarnessOptions two_threads;
  two_threads.serialize_threads = 2;
  testing::LedgerHarness two(two_threads);
  for (int from = 1; from <= 4000; from += 400) {
    const std::vector<InputMessage> batch = Purchases(from, from + 399, 300);
    REQUIRE(one.Ingest(batch).ok());
    REQUIRE(two.Ingest(batch).ok());
  }
  const auto want = States(one.log());
  REQUIRE(want.size() == 300);
  CHECK(States(two.log()) == want);
  CheckRebuildEqualsLive(two.log());
}

TEST_CASE("projector: states read ahead on a second thread are those read when asked") {
  // Batches of 400 purchases over 300 customers with a cache far smaller than the
  // states: each batch asks for more stored states than kPrefetchFrom, which a
  // second thread reads and parses ahead (Projector::Prefetch). The stored states
  // and the log must be byte for byte those of a run that reads each state when
  // the decider asks for it, and the states those the log's replay gives.
  testing::HarnessOptions asked;
  asked.state_cache_bytes = 8 << 10;
  asked.parsed_state_bytes = 0;
  asked.prefetch = false;
  testing::HarnessOptions ahead = asked;
  ahead.prefetch = true;
  testing::LedgerHarness a(asked), b(ahead);
  for (int from = 1; from <= 4000; from += 400) {
    const std::vector<InputMessage> batch = Purchases(from, from + 399, 300);
    REQUIRE(a.Ingest(batch).ok());
    REQUIRE(b.Ingest(batch).ok());
  }
  CHECK(a.projector().states_read_ahead() == 0);
  // Each batch after the first asks for about 300 states the small cache dropped.
  CHECK(b.projector().states_read_ahead() > 1000);
  REQUIRE(States(a.log()).size() == 300);
  CHECK(testing::StoreContents(b.log()) == testing::StoreContents(a.log()));
  CheckRebuildEqualsLive(b.log());
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

TEST_CASE("projector: the order id index gives the decisions a search of the orders gives") {
  // 6 customers, 2400 purchases over three years (orders leave the two-year
  // horizon), every 7th reusing an earlier id of the same customer (some still in
  // the ledger, some past the horizon), every 11th a refund of an earlier id. With
  // the index from the first order, and with none, the logs are the same record for
  // record: their chain heads are equal.
  auto batch = [](int from, int to) {
    std::vector<InputMessage> out;
    for (int i = from; i <= to; ++i) {
      const int customer = i % 6;
      const int day = i * 3 * 365 / 2400;
      std::string payload;
      if (i % 7 == 0 && i > 60) {
        payload = absl::StrCat(R"("purchase":{"orderId":"o-)", i - 6 * (1 + i % 50),
                               R"(","amountMinor":1000,"currency":"EUR"})");
      } else if (i % 11 == 0 && i > 60) {
        payload = absl::StrCat(R"("refund":{"orderId":"o-)", i - 6 * (1 + i % 40),
                               R"(","amountMinor":10})");
      } else {
        payload = absl::StrCat(R"("purchase":{"orderId":"o-)", i,
                               R"(","amountMinor":)", 1000 + i % 13, R"(,"currency":"EUR"})");
      }
      InputMessage m;
      m.raw = absl::StrCat(R"({"eventId":"e-)", i, R"(","customerId":"c-)", customer,
                           R"(","occurredAt":")", testing::Day(day, 3600 + i), R"(",)", payload,
                           "}");
      m.source.mutable_file()->set_path("index_test");
      m.source.mutable_file()->set_line(i);
      out.push_back(std::move(m));
    }
    return out;
  };
  testing::HarnessOptions indexed, searched;
  indexed.order_index_from = 0;
  searched.order_index_from = SIZE_MAX;
  testing::LedgerHarness a(indexed), b(searched);
  uint64_t duplicates = 0;
  for (int from = 1; from <= 2400; from += 200) {
    auto counts = a.Ingest(batch(from, from + 199));
    REQUIRE(counts.ok());
    REQUIRE(b.Ingest(batch(from, from + 199)).ok());
    REQUIRE(counts->applied == 200);
    duplicates += counts->rejected;
  }
  CHECK(duplicates > 200);  // DUPLICATE_ORDER, UNKNOWN_ORDER, REFUND_WINDOW_CLOSED (274)
  CHECK(a.log().head().hash == b.log().head().hash);
  CHECK(States(a.log()) == States(b.log()));
  CHECK(StoredState(a.log(), "c-1").archived_orders() > 0);
  CheckRebuildEqualsLive(a.log());
}

TEST_CASE("projector: the order id index forgets an id only when every copy left") {
  // Entries are counted by hash, so two ids that share one (here, the same id
  // twice) stay known until both were erased.
  OrderIdIndex index;
  CHECK_FALSE(index.MayContain("o-1"));
  index.Insert("o-1");
  index.Insert("o-1");
  index.Insert("o-2");
  CHECK(index.size() == 2);
  index.Erase("o-1");
  CHECK(index.MayContain("o-1"));
  index.Erase("o-1");
  CHECK_FALSE(index.MayContain("o-1"));
  CHECK(index.MayContain("o-2"));
  index.Erase("o-3");  // not there: nothing changes
  CHECK(index.size() == 1);
}

TEST_CASE("projector: old orders and redemptions leave the state, and their ids still decide") {
  // Default program: the order horizon is 730 days (tier status 365 + spend window
  // 365), the cancel window 90 days. The state keeps only what the rules can still
  // touch; the ids that reject for ever move to decision_ids.
  using testing::Day;
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  {
    testing::LedgerHarness h(DefaultProgram(), data);
    h.Purchase("c", Day(0), "o1", 10000);               // 100 points, available day 14
    REQUIRE(h.Redeem("c", Day(14), "r1", 30).status() == v1::ACCEPTED);
    CHECK(h.Redeem("c", Day(14), "r0", 1000).reason() == v1::INSUFFICIENT_POINTS);
    REQUIRE(h.Redeem("c", Day(20), "r2", 20).status() == v1::ACCEPTED);
    CHECK(StoredState(h.log(), "c").redemptions_size() == 3);
    // Day 104 = 14 + 90: r1 and r0 leave (t >= at + 90 days), r2 (day 20) stays.
    h.Adjust("c", Day(104), 1);
    v1::CustomerState s = StoredState(h.log(), "c");
    REQUIRE(s.redemptions_size() == 1);
    CHECK(s.redemptions(0).redemption_id() == "r2");
    CHECK(s.archived_redemptions() == 2);
    CHECK(h.Redeem("c", Day(105), "r1", 1).reason() == v1::DUPLICATE_REDEMPTION);
    CHECK(h.Redeem("c", Day(105), "r0", 1).reason() == v1::DUPLICATE_REDEMPTION);
    CHECK(h.Cancel("c", Day(105), "r1").reason() == v1::CANCEL_WINDOW_CLOSED);
    CHECK(h.Cancel("c", Day(105), "r0").reason() == v1::UNKNOWN_REDEMPTION);  // rejected once
    CHECK(h.Cancel("c", Day(105), "r2").status() == v1::ACCEPTED);             // day 20 + 90 > 105
    // Day 731: o1 (day 0) is past the horizon and leaves with the purchase of o2.
    h.Purchase("c", Day(731), "o2", 5000);
    s = StoredState(h.log(), "c");
    REQUIRE(s.ledger().order_id_size() == 1);
    CHECK(s.ledger().order_id(0) == "o2");
    CHECK(ColumnsAgree(s.ledger()));
    CHECK(s.archived_orders() == 1);
    CHECK(s.redemptions_size() == 0);  // r2 (day 20) left too
    CHECK(s.archived_redemptions() == 3);
    CHECK(h.Purchase("c", Day(732), "o1", 5000).reason() == v1::DUPLICATE_ORDER);
    CHECK(h.Refund("c", Day(732), "o1", 100).reason() == v1::REFUND_WINDOW_CLOSED);
    CHECK(h.Refund("c", Day(732), "o3", 100).reason() == v1::UNKNOWN_ORDER);
    CHECK(h.Refund("c", Day(732), "o2", 100).status() == v1::ACCEPTED);
    const auto ids = testing::ProjectionContents(h.log(), ProjectionCf::kDecisionIds);
    CHECK(ids.size() == 4);
    CHECK(ids.count(DecisionIdKey("c", IdKind::kOrder, "o1")) == 1);
    for (const char* r : {"r0", "r1", "r2"}) {
      CHECK(ids.count(DecisionIdKey("c", IdKind::kRedemption, r)) == 1);
    }
    CHECK(h.Cancel("c", Day(732), "r2").reason() == v1::UNKNOWN_REDEMPTION);  // cancelled

    // d: a redemption of 40 from two lots leaves the state at day 104.
    h.Adjust("d", Day(0), 25);
    h.Adjust("d", Day(1), 25);
    REQUIRE(h.Redeem("d", Day(14), "s1", 40).status() == v1::ACCEPTED);  // 25 + 15
    h.Adjust("d", Day(104), 1);
    CHECK(StoredState(h.log(), "d").redemptions_size() == 0);
    CheckRebuildEqualsLive(h.log());
  }
  // A later program widens the cancel window to 200 days: s1 (day 14) is
  // cancellable again at day 110, and both portions go back to their lots.
  testing::HarnessOptions wide;
  wide.program.set_cancel_window_days(200);
  wide.data_dir = data;
  wide.event_id_prefix = "later-";
  testing::LedgerHarness h(wide);
  v1::Outcome o = h.Cancel("d", Day(110), "s1");
  REQUIRE(o.status() == v1::ACCEPTED);
  CHECK(o.entries(0).points() == 40);
  CHECK(o.entries(0).draws_size() == 2);
  CHECK(h.Balance("d", Day(110)).available == 51);
  CHECK(h.Cancel("d", Day(111), "s1").reason() == v1::UNKNOWN_REDEMPTION);
  CHECK(h.Redeem("d", Day(111), "s1", 1).reason() == v1::DUPLICATE_REDEMPTION);
  CheckRebuildEqualsLive(h.log());
}

TEST_CASE("projector: a store from before decision_ids is rebuilt into one with them") {
  // A projection version 2 store has no decision_ids column family. A reader says
  // the projections are outdated; a writer creates the column family, the projector
  // refuses the old version, and the rebuild gives what a new store holds.
  using testing::Day;
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  std::map<std::string, std::string> states, ids;
  {
    testing::LedgerHarness h(DefaultProgram(), data);
    h.Purchase("c", Day(0), "o1", 10000);
    REQUIRE(h.Redeem("c", Day(14), "r1", 30).status() == v1::ACCEPTED);
    h.Adjust("c", Day(104), 1);
    states = States(h.log());
    ids = testing::ProjectionContents(h.log(), ProjectionCf::kDecisionIds);
    REQUIRE(ids.size() == 1);
  }
  testing::EditRaw(data, [](rocksdb::DB* db, testing::RawCfs& cfs) {
    REQUIRE(db->DropColumnFamily(cfs.at("decision_ids")).ok());
    REQUIRE(db->Put(rocksdb::WriteOptions(), cfs.at("projection_meta"), kMetaProjectionVersion, "2")
                .ok());
  });
  {
    LogOptions options;
    options.data_dir = data;
    options.read_only = true;
    auto reader = EventLog::Open(options);
    REQUIRE(reader.ok());
    auto read = (*reader)->GetProjection(ProjectionCf::kDecisionIds, ids.begin()->first);
    CHECK(absl::IsFailedPrecondition(read.status()));
  }
  LogOptions options;
  options.data_dir = data;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  CHECK(absl::IsFailedPrecondition(Projector::Open(log->get(), DefaultProgram()).status()));
  REQUIRE(RebuildProjections(log->get()).ok());
  REQUIRE(Projector::Open(log->get(), DefaultProgram()).ok());
  CHECK(States(**log) == states);
  CHECK(testing::ProjectionContents(**log, ProjectionCf::kDecisionIds) == ids);
}

}  // namespace
TEST_CASE("projector: a stored state whose columns differ in length is refused as data loss") {
  // Lots and orders are stored by column; a state where one column is shorter than
  // the others would send a reader past its end. Every parse of a stored state
  // refuses it instead.
  using testing::Day;
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  std::string good;
  {
    testing::LedgerHarness h(DefaultProgram(), data);
    h.Purchase("c", Day(0), "o1", 10000);
    h.Purchase("c", Day(1), "o2", 20000);
    good = States(h.log()).at("c");
  }
  v1::CustomerState state;
  REQUIRE(ParseCustomerState(good, &state));
  REQUIRE(state.ledger().lot_id_size() == 2);
  REQUIRE(state.ledger().order_id_size() == 2);
  SECTION("a lot column is short") { state.mutable_ledger()->mutable_lot_expires_at()->RemoveLast(); }
  SECTION("an order column is short") { state.mutable_ledger()->mutable_order_reversed()->RemoveLast(); }
  SECTION("an order column is long") { state.mutable_ledger()->add_order_at(172800); }
  const std::string bad = state.SerializeAsString();
  v1::CustomerState parsed;
  CHECK_FALSE(ParseCustomerState(bad, &parsed));
  v1::LedgerState ledger;
  CHECK_FALSE(ParseLedgerOnly(bad, &ledger));
  CHECK(ParseLedgerOnly(good, &ledger));
  testing::EditRaw(data, [&](rocksdb::DB* db, testing::RawCfs& cfs) {
    REQUIRE(db->Put(rocksdb::WriteOptions(), cfs.at("customer_state"), "c",
                    EncodeState("c", bad).head)
                .ok());
  });
  LogOptions options;
  options.data_dir = data;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  auto projector = Projector::Open(log->get(), DefaultProgram());
  REQUIRE(projector.ok());
  CHECK(absl::IsDataLoss((*projector)->Mutable("c").status()));
}

}  // namespace loyalty
