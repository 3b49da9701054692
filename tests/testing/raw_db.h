// Tampering underneath the engine: opens a data directory's RocksDB directly, with
// every column family it has, and hands the handles to `edit` by name. The store
// must not be open elsewhere.
#ifndef LOYALTY_TESTS_TESTING_RAW_DB_H_
#define LOYALTY_TESTS_TESTING_RAW_DB_H_

#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "rocksdb/db.h"

namespace loyalty::testing {

using RawCfs = std::map<std::string, rocksdb::ColumnFamilyHandle*>;

inline void EditRaw(const std::string& dir,
                    const std::function<void(rocksdb::DB*, RawCfs&)>& edit) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), dir, cfs, &handles, &db).ok());
  RawCfs by_name;
  for (size_t i = 0; i < names.size(); ++i) by_name[names[i]] = handles[i];
  edit(db, by_name);
  for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
}

}  // namespace loyalty::testing

#endif  // LOYALTY_TESTS_TESTING_RAW_DB_H_
