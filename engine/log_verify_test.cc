// Tests that VerifyLog catches tampering written underneath the log API.
#include "engine/log_verify.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "engine/event_codec.h"
#include "engine/internal/keys.h"
#include "engine/sha256.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/testing/raw_db.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

// Appends records 1..n (dead letters with distinct raw bytes), `batch` to a commit.
void WriteRecords(const std::string& dir, int n, int batch = 0) {
  if (batch <= 0) batch = n;
  LogOptions options;
  options.data_dir = dir;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  for (int first = 1; first <= n; first += batch) {
    LogBatch b = (*log)->NewBatch();
    for (int i = first; i < first + batch && i <= n; ++i) {
      v1::LogRecord r;
      r.set_raw("record " + std::to_string(i));
      r.mutable_dead_letter()->set_reason(v1::UNDECODABLE);
      b.Append(&r);
    }
    REQUIRE((*log)->Commit(std::move(b)).ok());
  }
}

// Turns a store of the current format (2: a hash with each batch's last record)
// into format 1 (a hash after every record), as a store written before format 2
// holds it.
void ConvertToFormat1(const std::string& dir) {
  testing::EditRaw(dir, [&](rocksdb::DB* db, testing::RawCfs& cfs) {
    std::string format;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cfs.at("default"), "format", &format).ok());
    REQUIRE(format == "loyalty-log-v2");
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs.at("log")));
    Sha256Digest prev{};
    rocksdb::WriteBatch wb;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view record, hash;
      REQUIRE(SplitLogValue(2, it->value().ToStringView(), &record, &hash));
      prev = Sha256Of2(DigestView(prev), record);
      if (!hash.empty()) REQUIRE(hash == DigestView(prev));
      REQUIRE(wb.Put(cfs.at("log"), it->key(), std::string(record) + std::string(DigestView(prev))).ok());
    }
    REQUIRE(wb.Put(cfs.at("default"), "format", "loyalty-log-v1").ok());
    REQUIRE(db->Write(rocksdb::WriteOptions(), &wb).ok());
  });
}

// Applies `edit` to the `log` column family underneath the log API.
void Tamper(const std::string& dir,
            const std::function<void(rocksdb::DB*, rocksdb::ColumnFamilyHandle*)>& edit) {
  testing::EditRaw(dir, [&](rocksdb::DB* db, testing::RawCfs& cfs) { edit(db, cfs.at("log")); });
}

VerifyReport Verify(const std::string& dir) {
  LogOptions options;
  options.data_dir = dir;
  options.read_only = true;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  auto report = VerifyLog(**log);
  REQUIRE(report.ok());
  return *report;
}

TEST_CASE("verify passes an untouched log and reports its head") {
  // Proves: the baseline: a log written through the API verifies.
  testing::TempDir dir;
  WriteRecords(dir.path(), 10);
  VerifyReport r = Verify(dir.path());
  REQUIRE(r.ok);
  REQUIRE(r.records == 10);
  REQUIRE(r.head.seq == 10);
}

TEST_CASE("verify catches a flipped byte in a stored record") {
  // Proves: a value changed underneath the API breaks the chain. The finding names
  // the first record that the first mismatching stored hash covers alone: a batch's
  // first record (format 2 stores a hash per batch), the record itself in format 1.
  testing::TempDir dir;
  int batch = 3;
  uint64_t first_bad = 4;
  SECTION("format 2, batches of 3") {}
  SECTION("format 2, batches of 1") {
    batch = 1;
  }
  SECTION("format 1") {
    batch = 10;
  }
  WriteRecords(dir.path(), 10, batch);
  if (batch == 10) ConvertToFormat1(dir.path());
  Tamper(dir.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf, internal::SeqKey(5), &v).ok());
    v[v.find("record 5") + 7] ^= 0x01;  // still decodes
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, internal::SeqKey(5), v).ok());
  });
  if (batch != 3) first_bad = 5;
  VerifyReport r = Verify(dir.path());
  REQUIRE_FALSE(r.ok);
  CHECK(r.first_bad_seq == first_bad);
  CHECK(r.records == first_bad - 1);
  CHECK_THAT(r.problem, Catch::Contains("chain hash mismatch at sequence " +
                                        std::to_string(batch == 3 ? 6 : 5)));
}

TEST_CASE("a store of format 1 is read, verified and appended to in format 1") {
  // Proves: stores written before format 2 (a hash after every record) keep
  // working: the head, the hashes at every record, verify, and new batches, which
  // the store takes in its own format.
  testing::TempDir dir;
  WriteRecords(dir.path(), 7, 3);
  std::vector<Sha256Digest> before;
  {
    LogOptions options;
    options.data_dir = dir.path();
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    REQUIRE_FALSE((*log)->hash_every_record());
    for (uint64_t seq = 1; seq <= 7; ++seq) {
      auto h = (*log)->ChainHashAt(seq);
      REQUIRE(h.ok());
      before.push_back(*h);
    }
    CHECK(before.back() == (*log)->head().hash);
    CHECK(absl::IsNotFound((*log)->ChainHashAt(8).status()));
  }
  ConvertToFormat1(dir.path());
  WriteRecords(dir.path(), 2);  // records 8 and 9, appended to the converted store
  LogOptions options;
  options.data_dir = dir.path();
  options.read_only = true;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  REQUIRE((*log)->hash_every_record());
  size_t with_hash = 0;
  REQUIRE((*log)->Scan(1, UINT64_MAX, [&](uint64_t seq, std::string_view, std::string_view,
                                          std::string_view hash) {
    with_hash += hash.size() == kChainHashBytes;
    if (seq <= 7) CHECK(hash == DigestView(before[seq - 1]));
    return absl::OkStatus();
  }).ok());
  CHECK(with_hash == 9);
  VerifyReport r = Verify(dir.path());
  CHECK(r.ok);
  CHECK(r.records == 9);
  CHECK(r.head.seq == 9);
  CHECK(r.head.hash == (*log)->head().hash);
}

TEST_CASE("a log whose last record carries no chain hash is refused at open") {
  // Proves: in format 2 every batch's last record, so the log's last record,
  // carries the chain hash; a log whose last record lacks it is not taken as whole.
  testing::TempDir dir;
  WriteRecords(dir.path(), 6, 3);
  Tamper(dir.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    // Record 7, stored the way records inside a batch are: no hash.
    v1::LogRecord r;
    r.set_seq(7);
    r.set_raw("record 7");
    r.mutable_dead_letter()->set_reason(v1::UNDECODABLE);
    std::string v(1, kValueWithoutHash);
    v += SerializeDeterministic(r);
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, internal::SeqKey(7), v).ok());
  });
  LogOptions options;
  options.data_dir = dir.path();
  options.read_only = true;
  auto log = EventLog::Open(options);
  // Opening reads the head's hash.
  REQUIRE(absl::IsDataLoss(log.status()));
  CHECK_THAT(std::string(log.status().message()), Catch::Contains("carries no chain hash"));
}

TEST_CASE("verify catches a deleted record and two swapped records") {
  // Proves: a gap and a reordering are both found at the first affected sequence.
  testing::TempDir dir;
  WriteRecords(dir.path(), 10);
  SECTION("deleted") {
    Tamper(dir.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
      REQUIRE(db->Delete(rocksdb::WriteOptions(), cf, internal::SeqKey(6)).ok());
    });
    VerifyReport r = Verify(dir.path());
    REQUIRE_FALSE(r.ok);
    REQUIRE(r.first_bad_seq == 6);
  }
  SECTION("swapped") {
    Tamper(dir.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
      std::string a, b;
      REQUIRE(db->Get(rocksdb::ReadOptions(), cf, internal::SeqKey(2), &a).ok());
      REQUIRE(db->Get(rocksdb::ReadOptions(), cf, internal::SeqKey(3), &b).ok());
      REQUIRE(db->Put(rocksdb::WriteOptions(), cf, internal::SeqKey(2), b).ok());
      REQUIRE(db->Put(rocksdb::WriteOptions(), cf, internal::SeqKey(3), a).ok());
    });
    VerifyReport r = Verify(dir.path());
    REQUIRE_FALSE(r.ok);
    REQUIRE(r.first_bad_seq == 2);
  }
}

TEST_CASE("verify reports a flipped byte in a table file on disk") {
  // Proves: corruption below RocksDB (a flipped byte in an SST) fails verification
  // instead of passing silently.
  testing::TempDir dir;
  WriteRecords(dir.path(), 2000);
  Tamper(dir.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    REQUIRE(db->Flush(rocksdb::FlushOptions(), cf).ok());
  });
  std::string sst;
  uintmax_t best = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    if (e.path().extension() == ".sst" && e.file_size() > best) {
      best = e.file_size();
      sst = e.path().string();
    }
  }
  REQUIRE_FALSE(sst.empty());
  {
    std::fstream f(sst, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(best / 3));
    char c;
    f.read(&c, 1);
    c ^= 0x20;
    f.seekp(static_cast<std::streamoff>(best / 3));
    f.write(&c, 1);
  }
  VerifyReport r = Verify(dir.path());
  REQUIRE_FALSE(r.ok);
}

}  // namespace
}  // namespace loyalty
