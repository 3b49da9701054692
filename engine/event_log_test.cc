// Tests of the event log's storage contract: append, read back, gapless sequence
// across reopen, indexes, source positions, single writer.
#include "engine/event_log.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"

#include "rocksdb/db.h"
#include "rocksdb/env.h"

#include "engine/event_codec.h"
#include "engine/internal/keys.h"
#include "engine/sha256.h"
#include "tests/testing/raw_db.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

v1::LogRecord DeadLetterRecord(const std::string& raw, uint64_t line) {
  v1::LogRecord r;
  r.set_raw(raw);
  r.set_encoding(v1::ENCODING_JSON);
  r.mutable_source()->mutable_file()->set_path("in.jsonl");
  r.mutable_source()->mutable_file()->set_line(line);
  r.mutable_dead_letter()->set_reason(v1::UNDECODABLE);
  return r;
}

std::unique_ptr<EventLog> OpenLog(const std::string& dir) {
  LogOptions options;
  options.data_dir = dir;
  options.sync_writes = false;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  return std::move(*log);
}

// A reader beside any writer (RocksDB secondary), as `loyalty replay` opens one.
absl::StatusOr<std::unique_ptr<EventLog>> OpenReader(const std::string& dir) {
  LogOptions options;
  options.data_dir = dir;
  options.read_only = true;
  return EventLog::Open(options);
}

TEST_CASE("appended records read back with gapless sequence and chained hashes") {
  // Proves: Append assigns 1..n, Commit makes them readable, and each record's
  // chain hash is SHA-256(previous || record bytes) from a zero genesis: stored with
  // the batch's last record (format 2), computed for the others by ChainHashAt.
  testing::TempDir dir;
  auto log = OpenLog(dir.path());
  REQUIRE(log->head().seq == 0);
  LogBatch batch = log->NewBatch();
  for (int i = 1; i <= 5; ++i) {
    v1::LogRecord r = DeadLetterRecord("bad " + std::to_string(i), i);
    REQUIRE(batch.Append(&r) == static_cast<uint64_t>(i));
  }
  REQUIRE(log->Commit(std::move(batch)).ok());
  REQUIRE(log->head().seq == 5);

  Sha256Digest prev{};
  uint64_t expected = 1;
  REQUIRE(log->Scan(1, UINT64_MAX, [&](uint64_t seq, std::string_view, std::string_view bytes,
                                       std::string_view hash) {
            REQUIRE(seq == expected++);
            Sha256Digest h = Sha256Of2(DigestView(prev), bytes);
            REQUIRE(hash == (seq == 5 ? DigestView(h) : std::string_view()));
            auto at = log->ChainHashAt(seq);
            REQUIRE(at.ok());
            REQUIRE(*at == h);
            if (seq > 1) {  // computed on from the record before, as given
              const LogHead before{seq - 1, prev};
              auto on = log->ChainHashAt(seq, nullptr, &before);
              REQUIRE(on.ok());
              REQUIRE(*on == h);
              if (hash.empty()) {  // not stored: the known hash is taken as is
                const LogHead wrong{seq - 1, h};
                REQUIRE(*log->ChainHashAt(seq, nullptr, &wrong) != h);
              }
            }
            prev = h;
            return absl::OkStatus();
          }).ok());
  REQUIRE(expected == 6);
  REQUIRE(prev == log->head().hash);
  auto r3 = log->Read(3);
  REQUIRE(r3.ok());
  REQUIRE(r3->raw() == "bad 3");
  REQUIRE(r3->seq() == 3);
  REQUIRE(absl::IsNotFound(log->Read(6).status()));
  REQUIRE(absl::IsNotFound(log->ChainHashAt(6).status()));
}

TEST_CASE("the sequence continues without a gap after reopening") {
  // Proves: the head (sequence and hash) is recovered from storage on open.
  testing::TempDir dir;
  LogHead before;
  {
    auto log = OpenLog(dir.path());
    LogBatch b = log->NewBatch();
    v1::LogRecord r = DeadLetterRecord("x", 1);
    b.Append(&r);
    REQUIRE(log->Commit(std::move(b)).ok());
    before = log->head();
  }
  auto log = OpenLog(dir.path());
  REQUIRE(log->head().seq == before.seq);
  REQUIRE(log->head().hash == before.hash);
  LogBatch b = log->NewBatch();
  v1::LogRecord r = DeadLetterRecord("y", 2);
  REQUIRE(b.Append(&r) == 2);
  REQUIRE(log->Commit(std::move(b)).ok());
  REQUIRE(log->head().seq == 2);
}

TEST_CASE("a store whose creation was cut short is finished by the next writer") {
  // A writer creates a new store's column families one by one and writes the format
  // key last. Killed in between, it leaves a store with some of them: readers say it
  // holds no initialized log, and the next writer creates the rest and goes on.
  const std::vector<std::vector<std::string>> cut_at = {
      {"log", "event_ids"},                                             // some fixed ones
      {"log", "event_ids", "customers", "sources", "dead_letters"},      // all fixed ones
      {"log", "event_ids", "customers", "sources", "dead_letters", "customer_state"},
      {"log", "event_ids", "customers", "sources", "dead_letters", "customer_state",
       "projection_meta", "decision_ids"}};                             // all, no format key
  for (const auto& created : cut_at) {
    CAPTURE(created.size());
    testing::TempDir dir;
    {
      rocksdb::Options o;
      o.create_if_missing = true;
      rocksdb::DB* db = nullptr;
      REQUIRE(rocksdb::DB::Open(o, dir.path(), &db).ok());
      for (const auto& name : created) {
        rocksdb::ColumnFamilyHandle* h = nullptr;
        REQUIRE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), name, &h).ok());
        REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
      }
      delete db;
    }
    {
      auto reader = OpenReader(dir.path());
      REQUIRE_FALSE(reader.ok());
      CHECK(absl::IsFailedPrecondition(reader.status()));
      CHECK(absl::StrContains(reader.status().message(), "holds no initialized event log"));
    }
    {
      auto log = OpenLog(dir.path());
      LogBatch b = log->NewBatch();
      v1::LogRecord r = DeadLetterRecord("x", 1);
      REQUIRE(b.Append(&r) == 1);
      b.Put(LogBatch::ProjectionCf::kCustomerState, "c", "state");
      REQUIRE(log->Commit(std::move(b)).ok());
    }
    auto reader = OpenReader(dir.path());
    REQUIRE(reader.ok());
    CHECK((*reader)->head().seq == 1);
    auto state = (*reader)->GetProjection(LogBatch::ProjectionCf::kCustomerState, "c");
    REQUIRE(state.ok());
    CHECK(*state == "state");
  }
}

TEST_CASE("a batch built on a stale head is refused") {
  // Proves: two batches from the same head cannot both commit (no fork of the chain).
  testing::TempDir dir;
  auto log = OpenLog(dir.path());
  LogBatch a = log->NewBatch();
  LogBatch b = log->NewBatch();
  v1::LogRecord r1 = DeadLetterRecord("a", 1), r2 = DeadLetterRecord("b", 2);
  a.Append(&r1);
  b.Append(&r2);
  REQUIRE(log->Commit(std::move(a)).ok());
  REQUIRE(absl::IsFailedPrecondition(log->Commit(std::move(b))));
  REQUIRE(log->head().seq == 1);
}

TEST_CASE("indexes: event ids, customers, dead-letter positions and source positions") {
  // Proves: what a batch indexes is found by the lookups after commit, and only then.
  testing::TempDir dir;
  auto log = OpenLog(dir.path());
  LogBatch b = log->NewBatch();
  v1::LogRecord r1 = DeadLetterRecord("one", 1), r2 = DeadLetterRecord("two", 2),
                r3 = DeadLetterRecord("three", 3);
  uint64_t s1 = b.Append(&r1), s2 = b.Append(&r2), s3 = b.Append(&r3);
  b.IndexEventId("e-1", s1);
  b.IndexCustomer("c-1", s1);
  b.IndexCustomer("c-2", s2);
  b.IndexCustomer("c-1", s3);
  b.IndexDeadLetter(r2.source(), s2, "sha");
  b.SetSourcePosition(r1.source());
  b.SetSourcePosition(r3.source());

  std::vector<std::optional<EventIdEntry>> ids;
  REQUIRE(log->LookupEventIds({"e-1"}, &ids).ok());
  REQUIRE_FALSE(ids[0].has_value());
  REQUIRE(log->Commit(std::move(b)).ok());

  REQUIRE(log->LookupEventIds({"e-1", "e-2"}, &ids).ok());
  REQUIRE(ids[0].has_value());
  REQUIRE(ids[0]->seq == s1);
  REQUIRE_FALSE(ids[1].has_value());

  auto c1 = log->CustomerSeqs("c-1");
  REQUIRE(c1.ok());
  REQUIRE(*c1 == std::vector<uint64_t>{s1, s3});
  auto c2 = log->CustomerSeqs("c-2");
  REQUIRE(*c2 == std::vector<uint64_t>{s2});
  REQUIRE(log->CustomerSeqs("c-")->empty());

  auto pos = log->SourcePositionOf(r1.source());
  REQUIRE(pos.ok());
  REQUIRE(pos->has_value());
  REQUIRE((*pos)->file().line() == 3);  // the last position set wins

  std::vector<std::optional<DeadLetterEntry>> dls;
  v1::SourcePosition p2 = r2.source(), p1 = r1.source();
  REQUIRE(log->LookupDeadLetters({internal::PositionKey(p2), internal::PositionKey(p1)}, &dls)
              .ok());
  REQUIRE(dls[0].has_value());
  REQUIRE(dls[0]->seq == s2);
  REQUIRE(dls[0]->raw_sha256 == "sha");
  REQUIRE_FALSE(dls[1].has_value());
}

TEST_CASE("SameSource agrees with SourceKey") {
  // Proves: the ingestor's shortcut (setting a position once per run of one source)
  // groups messages exactly as the `sources` keys do.
  std::vector<v1::SourcePosition> positions(8);
  positions[1].mutable_kafka()->set_topic("t");
  positions[1].mutable_kafka()->set_partition(0);
  positions[2].mutable_kafka()->set_topic("t");
  positions[2].mutable_kafka()->set_partition(0);
  positions[2].mutable_kafka()->set_offset(7);
  positions[3].mutable_kafka()->set_topic("t");
  positions[3].mutable_kafka()->set_partition(1);
  positions[4].mutable_kafka()->set_topic("u");
  positions[4].mutable_kafka()->set_partition(0);
  positions[5].mutable_file()->set_path("a.jsonl");
  positions[6].mutable_file()->set_path("a.jsonl");
  positions[6].mutable_file()->set_line(9);
  positions[7].mutable_file();  // a file position with no path: the unset one's key
  for (const auto& a : positions) {
    for (const auto& b : positions) {
      CHECK(internal::SameSource(a, b) == (internal::SourceKey(a) == internal::SourceKey(b)));
    }
  }
}

TEST_CASE("a second writer of the same data directory is refused with a clear message") {
  // Proves: RocksDB's lock keeps one writer per directory, reported as
  // FailedPrecondition naming the directory.
  testing::TempDir dir;
  auto first = OpenLog(dir.path());
  LogOptions options;
  options.data_dir = dir.path();
  auto second = EventLog::Open(options);
  REQUIRE(absl::IsFailedPrecondition(second.status()));
  REQUIRE(std::string(second.status().message()).find("in use") != std::string::npos);
}

TEST_CASE("a snapshot's head is its last record while batches are committed beside it") {
  // Proves: TakeSnapshot's head (taken from the writer's, not read from the store)
  // names the snapshot's last record and its chain hash, even when the snapshot is
  // taken while a batch is written or just after, before the writer moved its head.
  testing::TempDir dir;
  auto log = OpenLog(dir.path());
  constexpr int kBatches = 1500, kRecords = 20;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    uint64_t line = 0;
    for (int b = 0; b < kBatches; ++b) {
      LogBatch batch = log->NewBatch();
      for (int i = 0; i < kRecords; ++i) {
        v1::LogRecord r = DeadLetterRecord("r", ++line);
        batch.Append(&r);
      }
      REQUIRE(log->Commit(std::move(batch)).ok());
    }
    done = true;
  });
  int snapshots = 0, wrong = 0;
  uint64_t last = 0;
  while (!done.load()) {
    auto snap = log->TakeSnapshot();
    REQUIRE(snap.ok());
    const LogHead head = (*snap)->head();
    ++snapshots;
    CHECK(head.seq % kRecords == 0);  // heads move a whole batch at a time
    CHECK(head.seq >= last);
    last = head.seq;
    const bool next_visible = log->Read(head.seq + 1, snap->get()).ok();
    bool head_right = !next_visible;
    if (head.seq > 0) {
      auto hash = log->ChainHashAt(head.seq, snap->get());
      head_right = head_right && hash.ok() && *hash == head.hash;
    }
    if (!head_right) ++wrong;
    // A shared view is at least as new as every commit that returned before it was
    // asked for, and names its own last record too.
    const uint64_t committed = log->head().seq;
    auto shared = log->SharedSnapshot();
    REQUIRE(shared.ok());
    CHECK((*shared)->head().seq >= committed);
    if (log->Read((*shared)->head().seq + 1, shared->get()).ok()) ++wrong;
  }
  writer.join();
  CHECK(wrong == 0);
  CHECK(snapshots > 0);
  REQUIRE(log->head().seq == kBatches * kRecords);
  auto final_snap = log->TakeSnapshot();
  REQUIRE(final_snap.ok());
  CHECK((*final_snap)->head().seq == log->head().seq);
  CHECK((*final_snap)->head().hash == log->head().hash);
}

TEST_CASE("a shared snapshot is handed out again until a commit finishes") {
  testing::TempDir dir;
  auto log = OpenLog(dir.path());
  auto commit = [&](const std::string& raw) {
    LogBatch b = log->NewBatch();
    v1::LogRecord r = DeadLetterRecord(raw, 1);
    b.Append(&r);
    REQUIRE(log->Commit(std::move(b)).ok());
  };
  commit("a");
  auto first = log->SharedSnapshot();
  auto again = log->SharedSnapshot();
  REQUIRE(first.ok());
  REQUIRE(again.ok());
  CHECK(first->get() == again->get());
  CHECK((*first)->seq() == 1);
  commit("b");
  auto after = log->SharedSnapshot();
  REQUIRE(after.ok());
  CHECK(after->get() != first->get());
  CHECK((*after)->seq() == 2);
  CHECK((*after)->head().hash == log->head().hash);
  // The first view still reads as it was.
  CHECK(absl::IsNotFound(log->Read(2, first->get()).status()));
  CHECK(log->Read(2, after->get()).ok());
}

TEST_CASE("a read-only log sees the writer's commits after CatchUp") {
  // Proves: verify and other readers can run beside a live writer.
  testing::TempDir dir;
  auto writer = OpenLog(dir.path());
  LogBatch b = writer->NewBatch();
  v1::LogRecord r = DeadLetterRecord("a", 1);
  b.Append(&r);
  REQUIRE(writer->Commit(std::move(b)).ok());
  auto reader = OpenReader(dir.path());
  REQUIRE(reader.ok());
  REQUIRE((*reader)->head().seq == 1);
  LogBatch b2 = writer->NewBatch();
  v1::LogRecord r2 = DeadLetterRecord("b", 2);
  b2.Append(&r2);
  REQUIRE(writer->Commit(std::move(b2)).ok());
  REQUIRE((*reader)->CatchUp().ok());
  REQUIRE((*reader)->head().seq == 2);
  REQUIRE((*reader)->head().hash == writer->head().hash);
}

}  // namespace
}  // namespace loyalty

namespace loyalty {
namespace {

TEST_CASE("the log runs on an injected rocksdb::Env") {
  // Proves the storage seam: with an in-memory Env nothing reaches the real disk,
  // and the log still appends, reopens and recovers its head.
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  LogOptions options;
  options.data_dir = "/in-memory/loyalty";
  options.env = mem.get();
  LogHead head;
  {
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    LogBatch b = (*log)->NewBatch();
    v1::LogRecord r = DeadLetterRecord("in memory", 1);
    b.Append(&r);
    REQUIRE((*log)->Commit(std::move(b)).ok());
    head = (*log)->head();
  }
  REQUIRE_FALSE(std::filesystem::exists("/in-memory/loyalty"));
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  REQUIRE((*log)->head().seq == 1);
  REQUIRE((*log)->head().hash == head.hash);
}

}  // namespace
}  // namespace loyalty
