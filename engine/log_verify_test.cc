// Tests that VerifyLog catches tampering written underneath the log API.
#include "engine/log_verify.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "engine/internal/keys.h"
#include "rocksdb/db.h"
#include "tests/testing/raw_db.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

void WriteRecords(const std::string& dir, int n) {
  LogOptions options;
  options.data_dir = dir;
  auto log = EventLog::Open(options);
  REQUIRE(log.ok());
  LogBatch b = (*log)->NewBatch();
  for (int i = 1; i <= n; ++i) {
    v1::LogRecord r;
    r.set_raw("record " + std::to_string(i));
    r.mutable_dead_letter()->set_reason(v1::UNDECODABLE);
    b.Append(&r);
  }
  REQUIRE((*log)->Commit(std::move(b)).ok());
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
  // Proves: a value changed underneath the API breaks the chain at that sequence.
  testing::TempDir dir;
  WriteRecords(dir.path(), 10);
  Tamper(dir.path(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf, internal::SeqKey(4), &v).ok());
    v[v.size() / 3] ^= 0x01;
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, internal::SeqKey(4), v).ok());
  });
  VerifyReport r = Verify(dir.path());
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.first_bad_seq == 4);
  REQUIRE(r.records == 3);
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
