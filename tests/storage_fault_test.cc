// Storage faults (docs/reliability.md): a disk that fails mid-stream (full, or an
// I/O error) stops a batch whole, stores nothing of it and advances no input
// position; after a restart the same input is taken exactly once.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "engine/log_verify.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

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

TEST_CASE("storage: a failing disk stops a batch whole; a restart takes the same input once") {
  testing::TempDir dir;
  testing::FaultEnv env(rocksdb::Env::Default());
  LogOptions options;
  options.data_dir = dir.Sub("data");
  options.env = &env;
  ManualClock clock(absl::FromUnixSeconds(4102444800));  // 2100: nothing is in the future
  LogHead before;
  {
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    auto projector = Projector::Open(log->get(), DefaultProgram());
    REQUIRE(projector.ok());
    Ingestor ingestor(log->get(), &clock, projector->get());
    REQUIRE(ingestor.IngestBatch(Lines(1, 30)).ok());
    before = (*log)->head();
    REQUIRE(NextOffset(**log) == 30);

    // The disk fails: the batch is refused whole, nothing of it is stored, and
    // the input position does not move.
    env.SetFailing(true);
    REQUIRE_FALSE(ingestor.IngestBatch(Lines(31, 60)).ok());
    CHECK(env.refused() > 0);
    CHECK((*log)->head().seq == before.seq);
    CHECK((*log)->head().hash == before.hash);
    CHECK(NextOffset(**log) == 30);
    CHECK_FALSE((*log)->Read(before.seq + 1).ok());
    // RocksDB keeps refusing writes on this instance, even once the disk is back:
    // nothing half-written can follow.
    env.SetFailing(false);
    CHECK_FALSE(ingestor.IngestBatch(Lines(31, 60)).ok());
    CHECK((*log)->head().seq == before.seq);
  }

  // A restart (what `serve` needs after a storage fault) resumes exactly before the
  // failed batch, and the same input is taken once.
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  CHECK((*log)->head().seq == before.seq);
  CHECK((*log)->head().hash == before.hash);
  CHECK(NextOffset(**log) == 30);
  auto projector = Projector::Open(log->get(), DefaultProgram());
  REQUIRE(projector.ok());
  Ingestor ingestor(log->get(), &clock, projector->get());
  auto retried = ingestor.IngestBatch(Lines(31, 60));
  REQUIRE(retried.ok());
  CHECK(retried->applied == 30);
  CHECK(retried->duplicates == 0);
  CHECK(NextOffset(**log) == 60);
  CHECK((*log)->head().seq == before.seq + 30);
  auto again = ingestor.IngestBatch(Lines(31, 60));  // a redelivery is a duplicate
  REQUIRE(again.ok());
  CHECK(again->duplicates == 30);

  // The projections equal those of a run the fault never touched, byte for byte.
  LogOptions clean;
  clean.data_dir = dir.Sub("reference");
  auto ref = EventLog::Open(clean);
  REQUIRE(ref.ok());
  auto ref_projector = Projector::Open(ref->get(), DefaultProgram());
  REQUIRE(ref_projector.ok());
  Ingestor ref_ingestor(ref->get(), &clock, ref_projector->get());
  REQUIRE(ref_ingestor.IngestBatch(Lines(1, 30)).ok());
  REQUIRE(ref_ingestor.IngestBatch(Lines(31, 60)).ok());
  std::map<std::string, std::string> expected, got;
  auto collect = [](const EventLog& l, std::map<std::string, std::string>* out) {
    REQUIRE(l.ScanProjection(LogBatch::ProjectionCf::kCustomerState,
                             [&](std::string_view key, std::string_view value) {
                               out->emplace(std::string(key), std::string(value));
                               return absl::OkStatus();
                             })
                .ok());
  };
  collect(**ref, &expected);
  collect(**log, &got);
  CHECK(got.size() == 3);
  CHECK(got == expected);
  auto verified = VerifyLog(**log);
  REQUIRE(verified.ok());
  CHECK(verified->ok);
}

}  // namespace
}  // namespace loyalty
