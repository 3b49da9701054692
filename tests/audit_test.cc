// Tests that the audit (`loyalty replay verify`) catches each kind of tampering
// with the check that should catch it, and that the audit tools agree with the
// query answers.
#include <sys/resource.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "engine/event_codec.h"
#include "engine/internal/keys.h"
#include "engine/sha256.h"
#include "projections/audit.h"
#include "projections/decider.h"
#include "projections/replay.h"
#include "projections/state_store.h"
#include "rocksdb/db.h"
#include "tests/testing/ledger_harness.h"
#include "tests/testing/raw_db.h"

namespace loyalty {
namespace {

using testing::LedgerHarness;
using testing::T;

using testing::Day;

void Scenario(LedgerHarness& h) {
  h.Referral("ann", Day(0), "ref");
  h.Purchase("ann", Day(1), "o1", 5000);
  h.Purchase("bo", Day(2), "o2", 60000);
  h.Redeem("bo", Day(20), "r1", 300);
  h.Refund("bo", Day(21), "o2", 60000);  // debt
  h.Adjust("cy", Day(3), 70);
  h.IngestLines({"not json"});
}

// Rewrites record `seq` with `mutate` and recomputes the chain from it to the end,
// as a forger who controls the storage would (the store is of format 2: a hash is
// stored with each batch's last record). Without `recompute_chain`, only the record
// changes and every stored hash stays: the chain breaks there.
void Rewrite(const std::string& dir, uint64_t seq, const std::function<void(v1::LogRecord*)>& mutate,
             bool recompute_chain = true) {
  testing::EditRaw(dir, [&](rocksdb::DB* db, testing::RawCfs& cf) {
    rocksdb::ColumnFamilyHandle* log = cf["log"];
    Sha256Digest prev{};
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), log));
    std::vector<std::pair<std::string, std::string>> rewritten;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view record, hash;
      REQUIRE(SplitLogValue(2, it->value().ToStringView(), &record, &hash));
      std::string bytes(record);
      if (it->key().ToString() == internal::SeqKey(seq)) {
        v1::LogRecord r;
        REQUIRE(r.ParseFromString(bytes));
        mutate(&r);
        bytes = SerializeDeterministic(r);
      }
      prev = Sha256Of2(DigestView(prev), bytes);
      if (it->key().ToString() < internal::SeqKey(seq)) continue;
      if (!recompute_chain && it->key().ToString() != internal::SeqKey(seq)) break;
      std::string value(1, hash.empty() ? kValueWithoutHash : kValueWithHash);
      value += bytes;
      if (!hash.empty()) value += recompute_chain ? std::string(DigestView(prev)) : std::string(hash);
      rewritten.emplace_back(it->key().ToString(), std::move(value));
    }
    for (auto& [k, v] : rewritten) REQUIRE(db->Put(rocksdb::WriteOptions(), log, k, v).ok());
  });
}

AuditReport Audit(const std::string& dir, uint64_t digest_seq = 0, std::string digest_hex = "",
                  uint64_t from_seq = 1) {
  LogOptions options;
  options.data_dir = dir;
  options.read_only = true;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  AuditOptions a;
  a.digest_seq = digest_seq;
  a.digest_hash_hex = digest_hex;
  a.from_seq = from_seq;
  a.now = T(Day(400));
  auto report = AuditLog(**log, a);
  REQUIRE(report.ok());
  return *report;
}

// Builds the scenario in a data directory that outlives the harness's handles,
// followed by `bulk` purchases of 500 other customers in one batch.
struct Closed {
  testing::TempDir dir;
  std::string data = dir.Sub("data");
  LogHead head;
  explicit Closed(int bulk = 0) {
    LedgerHarness h(DefaultProgram(), data);
    Scenario(h);
    if (bulk > 0) {
      std::vector<std::string> lines;
      for (int i = 0; i < bulk; ++i) {
        lines.push_back(absl::StrCat(R"({"eventId":"bulk-)", i, R"(","customerId":"m)", i % 500,
                                     R"(","occurredAt":")", Day(30),
                                     R"(","purchase":{"orderId":"b)", i,
                                     R"(","amountMinor":1000,"currency":"EUR"}})"));
      }
      REQUIRE(h.IngestLines(lines).applied == static_cast<uint64_t>(bulk));
    }
    head = h.log().head();
  }  // the harness closes the store here
};

TEST_CASE("audit: an untouched log passes every check") {
  // Proves the baseline: chain, validation, decisions, projections, conservation.
  Closed c;
  AuditReport r = Audit(c.data);
  INFO(r.check << ": " << r.problem);
  REQUIRE(r.ok);
  CHECK(r.records == c.head.seq);
  CHECK(r.dead_letters == 1);
  CHECK(r.customers == 4);  // ann, ref, bo, cy
}

TEST_CASE("audit: a rewritten record with a recomputed chain is caught by the kept digest") {
  // Proves: a forger who rewrites history and rehashes everything after it passes
  // the chain check, but not a digest kept outside the system.
  Closed c;
  const std::string kept = DigestHex(DigestView(c.head.hash));
  Rewrite(c.data, 3, [](v1::LogRecord* r) { r->set_raw(r->raw() + " "); });
  AuditReport r = Audit(c.data, c.head.seq, kept);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "digest");
}

TEST_CASE("audit: a kept digest of a record inside a batch is checked") {
  // Proves: a digest may name any record, also one stored without its hash (only a
  // batch's last record carries one): the audit finds its hash along the chain.
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  Sha256Digest at2{};
  {
    LedgerHarness h(DefaultProgram(), data);
    Scenario(h);
    const uint64_t before = h.log().head().seq;
    REQUIRE(h.IngestLines({"one", "two", "three"}).dead_letters == 3);  // one batch
    Sha256Digest chain{};
    REQUIRE(h.log().Scan(1, UINT64_MAX, [&](uint64_t seq, std::string_view, std::string_view bytes,
                                            std::string_view hash) {
      chain = Sha256Of2(DigestView(chain), bytes);
      if (seq == before + 2) {
        CHECK(hash.empty());
        at2 = chain;
      }
      return absl::OkStatus();
    }).ok());
    CHECK(chain == h.log().head().hash);
    REQUIRE(h.log().head().seq == before + 3);
  }
  const uint64_t seq = [&] {
    LogOptions options;
    options.data_dir = data;
    options.read_only = true;
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    return (*log)->head().seq - 1;
  }();
  AuditReport good = Audit(data, seq, DigestHex(DigestView(at2)));
  INFO(good.check << ": " << good.problem);
  CHECK(good.ok);
  Sha256Digest other = at2;
  other[0] ^= 1;
  AuditReport bad = Audit(data, seq, DigestHex(DigestView(other)));
  CHECK_FALSE(bad.ok);
  CHECK(bad.check == "digest");
}

TEST_CASE("audit: a decision that differs from the rules is caught") {
  // Proves: changing an outcome (and rehashing) is found by re-deciding the event.
  Closed c;
  // Record 3 is ann's purchase (record 1 the program, 2 the referral): give it
  // more points than the rules do.
  Rewrite(c.data, 3, [](v1::LogRecord* r) {
    REQUIRE(r->has_applied());
    v1::LedgerEntry* e = r->mutable_applied()->mutable_outcome()->mutable_entries(0);
    e->set_points(e->points() + 1000);
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "decision");
  CHECK(r.first_bad_seq == 3);
  // --from-seq 4 reports findings from record 4 on only: this one is before it.
  CHECK(Audit(c.data, 0, "", 4).ok);
  CHECK_FALSE(Audit(c.data, 0, "", 3).ok);
}

TEST_CASE("audit: a log of many chunks is checked in order and a late finding is placed") {
  // Proves: the records are read and prepared in chunks on several threads (two
  // chunks can be prepared at once) and still reach the checks in log order.
  Closed c(9000);  // about 9 chunks of 1024 records
  AuditReport clean = Audit(c.data);
  INFO(clean.check << ": " << clean.problem);
  REQUIRE(clean.ok);
  CHECK(clean.records == c.head.seq);
  CHECK(clean.customers == 504);
  // A raw input changed near the end (its stored event then differs from it).
  const uint64_t late = c.head.seq - 100;
  Rewrite(c.data, late, [](v1::LogRecord* r) {
    REQUIRE(r->has_applied());
    std::string raw = r->raw();
    const size_t at = raw.find(R"("amountMinor":1000)");
    REQUIRE(at != std::string::npos);
    raw.replace(at, 18, R"("amountMinor":1001)");
    r->set_raw(raw);
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.first_bad_seq == late);
}

TEST_CASE("audit: a stored decoded event that differs from its raw bytes is caught") {
  // Proves: the decoded copy kept beside a JSON input (which the replay decides
  // from) must be what the raw bytes decode to now.
  Closed c;
  Rewrite(c.data, 3, [](v1::LogRecord* r) {
    REQUIRE(r->has_applied());
    REQUIRE(r->applied().has_event());  // a JSON input keeps its decoded event
    v1::Purchase* p = r->mutable_applied()->mutable_event()->mutable_purchase();
    p->set_amount_minor(p->amount_minor() + 100);
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "validation");
  CHECK(r.first_bad_seq == 3);
  CHECK(r.problem.find("stored decoded event differs") != std::string::npos);
}

TEST_CASE("audit: a broken chain is reported first though the replay finds an earlier record") {
  // Proves: the chain's finding comes first, as when it ran before the replay,
  // though it is now checked beside it: record 3's outcome is changed with the
  // chain recomputed (a decision finding), then the last record is changed without
  // it (a chain finding, later in the log). Many records come between the two, so
  // that the replay reaches record 3 long before the chain reaches the last one.
  Closed c(30000);
  Rewrite(c.data, 3, [](v1::LogRecord* r) {
    v1::LedgerEntry* e = r->mutable_applied()->mutable_outcome()->mutable_entries(0);
    e->set_points(e->points() + 1000);
  });
  REQUIRE(Audit(c.data).check == "decision");
  Rewrite(c.data, c.head.seq, [](v1::LogRecord* r) { r->set_raw(r->raw() + " "); },
          /*recompute_chain=*/false);
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "chain");
  CHECK(r.first_bad_seq > 3);
}

TEST_CASE("audit: a dead letter whose reason was changed is caught") {
  // Proves: re-validation with the kept clock reading reaches the original verdict.
  Closed c;
  Rewrite(c.data, c.head.seq, [](v1::LogRecord* r) {
    REQUIRE(r->has_dead_letter());
    r->mutable_dead_letter()->set_reason(v1::MISSING_PAYLOAD);
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "validation");
  CHECK(r.first_bad_seq == c.head.seq);
}

TEST_CASE("audit: a projection edited underneath is caught by the rebuild comparison") {
  // Proves: live state that the log does not produce is found.
  Closed c;
  testing::EditRaw(c.data, [](rocksdb::DB* db, testing::RawCfs& cf) {
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf["customer_state"], "cy", &v).ok());
    REQUIRE_FALSE(EncodedState::IsChunkedHead(v));  // a small state: stored whole
    v1::CustomerState s;
    REQUIRE(s.ParseFromString(v.substr(1)));
    s.mutable_ledger()->set_earned(s.ledger().earned() + 1);
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf["customer_state"], "cy",
                    EncodeState("cy", SerializeDeterministic(s)).head)
                .ok());
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "projections");
  CHECK(r.problem.find("'cy'") != std::string::npos);
}

TEST_CASE("audit: a decision id added underneath is caught by the rebuild comparison") {
  // Proves: a remembered order id the log never moved out of a state (which would
  // reject a new purchase as DUPLICATE_ORDER) is found.
  Closed c;
  testing::EditRaw(c.data, [](rocksdb::DB* db, testing::RawCfs& cf) {
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf["decision_ids"],
                    DecisionIdKey("cy", IdKind::kOrder, "forged"), "")
                .ok());
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "projections");
  CHECK(r.problem.find("hold decision id") != std::string::npos);
  CHECK(r.problem.find("forged") != std::string::npos);
}

TEST_CASE("audit: an applied event whose index entry was removed is caught") {
  // Proves: the event-id index must hold every applied event at its own record,
  // or duplicates could be applied twice unnoticed.
  Closed c;
  testing::EditRaw(c.data, [](rocksdb::DB* db, testing::RawCfs& cf) {
    REQUIRE(db->Delete(rocksdb::WriteOptions(), cf["event_ids"], "ev-2").ok());
  });
  AuditReport r = Audit(c.data);
  REQUIRE_FALSE(r.ok);
  CHECK(r.check == "validation");
}

TEST_CASE("rebuild: replaces edited projections with the log's, atomically") {
  // Proves `replay rebuild`: after a projection was edited underneath, a rebuild
  // makes the audit pass again; states equal a fresh ingest's byte for byte; the
  // store reopens on the new generation and keeps ingesting.
  Closed c;
  testing::EditRaw(c.data, [](rocksdb::DB* db, testing::RawCfs& cf) {
    REQUIRE(db->Delete(rocksdb::WriteOptions(), cf["customer_state"], "cy").ok());
  });
  REQUIRE_FALSE(Audit(c.data).ok);
  {
    LogOptions options;
    options.data_dir = c.data;
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    REQUIRE((*log)->projection_generation() == 0);
    auto report = RebuildProjections(log->get());
    REQUIRE(report.ok());
    CHECK(report->customers == 4);
    CHECK(report->generation == 1);
  }
  AuditReport r = Audit(c.data);
  INFO(r.check << ": " << r.problem);
  REQUIRE(r.ok);
  // Reopen on generation 1 and go on ingesting through the normal path.
  LedgerHarness h(DefaultProgram(), c.data);
  CHECK(h.log().projection_generation() == 1);
  CHECK(h.IngestLines({absl::StrCat(R"({"eventId":"after-rebuild","customerId":"cy","occurredAt":")",
                                    Day(30), R"(","adjustment":{"points":5}})")})
            .applied == 1);
  CHECK(h.Balance("cy", Day(30)).available == 75);
}

}  // namespace
}  // namespace loyalty
