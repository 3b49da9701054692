// Storage faults (docs/reliability.md), with the fault-injecting rocksdb::Env of
// tests/testing/fault_env.h. A batch or sweep the store refuses is refused whole:
// nothing of it is stored and no input position moves. From a full disk the same
// process resumes once the disk has room (EventLog::ResumeWrites), and the store
// then equals, byte for byte, one the fault never touched; from a failing device
// (a plain I/O error) RocksDB cannot recover in-process, and a restart takes the
// same input once.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "engine/log_verify.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/ledger_harness.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

using Fault = testing::FaultEnv::Fault;

// Purchases of three customers; every batch touches all three, so a projector that
// kept in memory the states of a batch that failed would count it twice.
std::vector<InputMessage> Lines(int from, int to) {
  std::vector<InputMessage> batch;
  for (int i = from; i <= to; ++i) {
    InputMessage m;
    m.raw = absl::StrCat(R"({"eventId":"e-)", i, R"(","customerId":"c-)", i % 3,
                         R"(","occurredAt":"2026-01-0)", 1 + i % 9,
                         R"(T10:00:00Z","purchase":{"orderId":"o-)", i,
                         R"(","amountMinor":10000,"currency":"EUR"}})");
    m.source.mutable_kafka()->set_topic("loyalty.events");
    m.source.mutable_kafka()->set_partition(0);
    m.source.mutable_kafka()->set_offset(i - 1);
    batch.push_back(std::move(m));
  }
  return batch;
}

int64_t NextOffset(const EventLog& log) {
  auto positions = log.SourcePositions();
  REQUIRE(positions.ok());
  REQUIRE(positions->size() == 1);
  return (*positions)[0].kafka().offset() + 1;
}

// Calls ResumeWrites until it stops answering "not yet" (RocksDB's SstFileManager
// looks at free space every 5 s).
absl::Status WaitWritable(EventLog* log) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status s = log->ResumeWrites();
  while (absl::IsUnavailable(s) && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = log->ResumeWrites();
  }
  return s;
}

// A store in `data_dir` as the engine opens it (WAL synced per batch), on `env`.
// The harness's clock is at 2100: nothing is ahead of it.
testing::HarnessOptions Store(const std::string& data_dir, rocksdb::Env* env = nullptr) {
  testing::HarnessOptions o;
  o.data_dir = data_dir;
  o.env = env;
  o.sync_writes = true;
  return o;
}

// The store of a run the fault never touched: batches 1-30 and 31-60, then a sweep.
std::map<std::string, std::string> Reference(const testing::TempDir& dir) {
  testing::LedgerHarness h(Store(dir.Sub("reference")));
  REQUIRE(h.Ingest(Lines(1, 30)).ok());
  REQUIRE(h.Ingest(Lines(31, 60)).ok());
  auto swept = h.ingestor().Sweep();
  REQUIRE(swept.ok());
  REQUIRE(*swept > 0);
  return testing::StoreContents(h.log());
}

TEST_CASE("storage: a full disk refuses a batch and a sweep whole, and the same process "
          "resumes once it has room, equal to a fault-free run byte for byte") {
  testing::TempDir dir;
  testing::FaultEnv env(rocksdb::Env::Default());
  testing::LedgerHarness h(Store(dir.Sub("data"), &env));
  EventLog* log = &h.log();
  Ingestor& ingestor = h.ingestor();
  REQUIRE(ingestor.IngestBatch(Lines(1, 30)).ok());
  const LogHead before = log->head();
  REQUIRE(NextOffset(*log) == 30);

  // The disk fills: the batch is refused whole, nothing of it is stored, and the
  // input position does not move.
  env.Set(Fault::kNoSpace);
  REQUIRE_FALSE(ingestor.IngestBatch(Lines(31, 60)).ok());
  CHECK(env.refused() > 0);
  CHECK(log->head().seq == before.seq);
  CHECK(log->head().hash == before.hash);
  CHECK(NextOffset(*log) == 30);
  CHECK_FALSE(log->Read(before.seq + 1).ok());
  // The log now refuses writes itself, and says it is waiting for room.
  const absl::Status fault = log->write_fault();
  CHECK(absl::IsUnavailable(fault));
  CHECK_THAT(std::string(fault.message()), Catch::Contains("No space left on device"));
  CHECK(absl::IsUnavailable(log->PutMeta("outbox_cursor", "1")));
  CHECK(absl::IsUnavailable(log->ResumeWrites()));

  // Room again: RocksDB recovers, the log takes writes, the same batch goes in once.
  env.Set(Fault::kNone);
  REQUIRE(WaitWritable(log).ok());
  CHECK(log->write_fault().ok());
  auto retried = ingestor.IngestBatch(Lines(31, 60));
  REQUIRE(retried.ok());
  CHECK(retried->applied == 30);
  CHECK(retried->duplicates == 0);
  CHECK(NextOffset(*log) == 60);
  CHECK(log->head().seq == before.seq + 30);

  // A sweep on a full disk is refused whole too, and taken again once it has room.
  const LogHead before_sweep = log->head();
  env.Set(Fault::kNoSpace);
  REQUIRE_FALSE(ingestor.Sweep().ok());
  CHECK(log->head().seq == before_sweep.seq);
  env.Set(Fault::kNone);
  REQUIRE(WaitWritable(log).ok());
  auto swept = ingestor.Sweep();
  REQUIRE(swept.ok());
  CHECK(*swept > 0);

  CHECK(testing::StoreContents(*log) == Reference(dir));
  auto verified = VerifyLog(*log);
  REQUIRE(verified.ok());
  CHECK(verified->ok);
}

TEST_CASE("storage: pipelined - a full disk fails the batch in flight at the next call which "
          "stores nothing either - and the same process resumes equal to a fault-free run") {
  testing::TempDir dir;
  testing::FaultEnv env(rocksdb::Env::Default());
  testing::HarnessOptions o = Store(dir.Sub("data"), &env);
  o.pipelined = true;
  testing::LedgerHarness h(o);
  EventLog* log = &h.log();
  Ingestor& ingestor = h.ingestor();
  REQUIRE(ingestor.IngestBatch(Lines(1, 30)).ok());
  REQUIRE(ingestor.Flush().ok());
  const LogHead before = log->head();
  REQUIRE(before.seq == 31);  // the program, then 30 purchases

  env.Set(Fault::kNoSpace);
  // Taken, and handed to the commit thread, which the store refuses.
  REQUIRE(ingestor.IngestBatch(Lines(31, 60)).ok());
  // The same messages again (a redelivery): decided against the batch in flight
  // (all duplicates), then refused because that batch failed.
  auto next = ingestor.IngestBatch(Lines(31, 60));
  REQUIRE_FALSE(next.ok());
  CHECK_THAT(std::string(next.status().message()),
             Catch::Contains("the batch before this one failed to commit"));
  CHECK(ingestor.Flush().ok());  // nothing in flight now
  CHECK(log->head().seq == before.seq);
  CHECK(log->head().hash == before.hash);
  CHECK(NextOffset(*log) == 30);

  // Room again: the two batches' states were forgotten, so taking 31-60 again
  // stores what a run without the fault stored.
  env.Set(Fault::kNone);
  REQUIRE(WaitWritable(log).ok());
  auto retried = ingestor.IngestBatch(Lines(31, 60));
  REQUIRE(retried.ok());
  CHECK(retried->applied == 30);
  CHECK(retried->duplicates == 0);
  auto swept = ingestor.Sweep();  // stores the batch in flight first
  REQUIRE(swept.ok());
  CHECK(*swept > 0);
  CHECK(NextOffset(*log) == 60);
  CHECK(testing::StoreContents(*log) == Reference(dir));
}

TEST_CASE("storage: a full disk at the first write after opening is recovered from in-process "
          "too") {
  // Right after opening every memtable is empty, where RocksDB 7.8 would resume on
  // the WAL writer that failed (EventLog::GuardMemtable).
  testing::TempDir dir;
  testing::FaultEnv env(rocksdb::Env::Default());
  {
    testing::LedgerHarness first(Store(dir.Sub("data"), &env));
    REQUIRE(first.Ingest(Lines(1, 30)).ok());
  }
  testing::LedgerHarness h(Store(dir.Sub("data"), &env));
  EventLog* log = &h.log();
  Ingestor& ingestor = h.ingestor();
  env.Set(Fault::kNoSpace);
  REQUIRE_FALSE(ingestor.IngestBatch(Lines(31, 60)).ok());
  env.Set(Fault::kNone);
  REQUIRE(WaitWritable(log).ok());
  REQUIRE(ingestor.IngestBatch(Lines(31, 60)).ok());
  auto swept = ingestor.Sweep();
  REQUIRE(swept.ok());
  CHECK(testing::StoreContents(*log) == Reference(dir));
}

TEST_CASE("storage: a failing device stops writes for good in-process, and a restart takes "
          "the same input once") {
  testing::TempDir dir;
  testing::FaultEnv env(rocksdb::Env::Default());
  LogHead before;
  {
    testing::LedgerHarness first(Store(dir.Sub("data"), &env));
    EventLog* log = &first.log();
    Ingestor& ingestor = first.ingestor();
    REQUIRE(ingestor.IngestBatch(Lines(1, 30)).ok());
    before = log->head();

    env.Set(Fault::kIOError);
    REQUIRE_FALSE(ingestor.IngestBatch(Lines(31, 60)).ok());
    CHECK(env.refused() > 0);
    CHECK(log->head().seq == before.seq);
    CHECK(NextOffset(*log) == 30);
    // RocksDB takes a plain I/O error of a WAL write as fatal: even once the device
    // is back, it takes no write on this instance, and the log says to restart.
    env.Set(Fault::kNone);
    const absl::Status resumed = log->ResumeWrites();
    CHECK(absl::IsFailedPrecondition(resumed));
    CHECK_THAT(std::string(resumed.message()), Catch::Contains("restart the engine"));
    CHECK(absl::IsFailedPrecondition(log->ResumeWrites()));
    CHECK_FALSE(ingestor.IngestBatch(Lines(31, 60)).ok());
    CHECK(log->head().seq == before.seq);
  }

  // The restart resumes exactly before the failed batch, and the same input is
  // taken once.
  testing::LedgerHarness h(Store(dir.Sub("data"), &env));
  EventLog* log = &h.log();
  Ingestor& ingestor = h.ingestor();
  CHECK(log->head().seq == before.seq);
  CHECK(log->head().hash == before.hash);
  CHECK(NextOffset(*log) == 30);
  auto retried = ingestor.IngestBatch(Lines(31, 60));
  REQUIRE(retried.ok());
  CHECK(retried->applied == 30);
  CHECK(retried->duplicates == 0);
  auto again = ingestor.IngestBatch(Lines(31, 60));  // a redelivery is a duplicate
  REQUIRE(again.ok());
  CHECK(again->duplicates == 30);
  auto swept = ingestor.Sweep();
  REQUIRE(swept.ok());
  CHECK(testing::StoreContents(*log) == Reference(dir));
  auto verified = VerifyLog(*log);
  REQUIRE(verified.ok());
  CHECK(verified->ok);
}

}  // namespace
}  // namespace loyalty
