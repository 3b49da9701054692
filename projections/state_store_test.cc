// Customer states stored whole or as content-defined chunks (projections/state_store.h).
#include "projections/state_store.h"

#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/event_log.h"
#include "tests/testing/ledger_harness.h"
#include "tests/testing/temp_dir.h"

namespace loyalty {
namespace {

using ProjectionCf = LogBatch::ProjectionCf;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

std::vector<std::string> Chunks(std::string_view bytes) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t end : ChunkEnds(bytes)) {
    out.emplace_back(bytes.substr(start, end - start));
    start = end;
  }
  return out;
}

// A store written through ForEachStateChange, one batch per Write.
class Store {
 public:
  Store() {
    LogOptions options;
    options.data_dir = dir_.Sub("data");
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    log_ = *std::move(log);
  }
  const EventLog& log() const { return *log_; }

  // Stores `bytes` as the state of `id`; the chunks the batch put.
  size_t Write(const std::string& id, const std::string& bytes) {
    LogBatch batch = log_->NewBatch();
    const EncodedState encoded = EncodeState(id, bytes);
    size_t chunks_put = 0;
    REQUIRE(ForEachStateChange(
                encoded, id, heads_[id],
                [&](ProjectionCf cf, std::string_view key, std::string_view value) {
                  if (cf == ProjectionCf::kStateChunks) ++chunks_put;
                  batch.Put(cf, key, value);
                },
                [&](std::string_view key) { batch.Delete(ProjectionCf::kStateChunks, key); })
                .ok());
    REQUIRE(log_->Commit(std::move(batch)).ok());
    heads_[id] = encoded.head;
    return chunks_put;
  }

  std::string Read(const std::string& id) const {
    auto bytes = ReadStateBytes(*log_, id);
    REQUIRE(bytes.ok());
    REQUIRE(bytes->has_value());
    return **bytes;
  }

 private:
  testing::TempDir dir_;
  std::unique_ptr<EventLog> log_;
  std::map<std::string, std::string> heads_;
};

TEST_CASE("state store: chunk cuts are bounded and depend only on the bytes around them") {
  const std::string bytes = RandomBytes(300'000, 7);
  const std::vector<size_t> ends = ChunkEnds(bytes);
  REQUIRE(ends.back() == bytes.size());
  size_t start = 0;
  for (size_t i = 0; i < ends.size(); ++i) {
    const size_t size = ends[i] - start;
    CHECK(size <= kStateChunkMaxBytes);
    if (i + 1 < ends.size()) CHECK(size >= kStateChunkMinBytes);
    start = ends[i];
  }
  // About kStateChunkMinBytes + 1 KiB on average on random bytes.
  const size_t average = bytes.size() / ends.size();
  CHECK(average > 1500);
  CHECK(average < 2600);

  // Bytes inserted in the middle change only the chunks around them.
  std::string edited = bytes;
  edited.insert(150'000, "seventeen bytes!!");
  const std::vector<std::string> before = Chunks(bytes), after = Chunks(edited);
  const std::set<std::string> old_chunks(before.begin(), before.end());
  size_t new_chunks = 0;
  for (const std::string& c : after) new_chunks += old_chunks.count(c) == 0;
  CHECK(new_chunks >= 1);
  CHECK(new_chunks <= 3);
  CHECK(after.size() + 3 >= before.size());
}

TEST_CASE("state store: a small state is stored whole and a large one as chunks") {
  Store store;
  const std::string small = RandomBytes(kStateInlineBytes - 1, 1);
  const std::string large = RandomBytes(100'000, 2);
  CHECK(store.Write("s", small) == 0);
  CHECK(store.Write("l", large) > 20);
  CHECK(store.Read("s") == small);
  CHECK(store.Read("l") == large);
  auto head = store.log().GetProjection(ProjectionCf::kCustomerState, "l");
  REQUIRE(head.ok());
  CHECK(EncodedState::IsChunkedHead(*head));
  CHECK(StateSizeOfHead(*head) == large.size());
  CHECK(head->size() < 1000);
  auto missing = ReadStateBytes(store.log(), "nobody");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());

  std::map<std::string, std::string> scanned;
  REQUIRE(ScanStateBytes(store.log(), [&](std::string_view k, std::string_view v) {
            scanned.emplace(std::string(k), std::string(v));
            return absl::OkStatus();
          }).ok());
  CHECK(scanned == std::map<std::string, std::string>{{"l", large}, {"s", small}});
}

TEST_CASE("state store: a change rewrites only the chunks it touched and leaves none behind") {
  Store store;
  std::string state = RandomBytes(200'000, 3);
  const size_t all = store.Write("c", state);
  REQUIRE(all > 50);
  // As a busy customer's state changes: bytes appended at the end, a few changed
  // near the front.
  for (int round = 0; round < 5; ++round) {
    state.append(RandomBytes(300, 10 + round));
    state[2000 + round] ^= 0x5a;
    const size_t put = store.Write("c", state);
    INFO("round " << round);
    CHECK(put >= 1);
    CHECK(put <= 5);
    CHECK(store.Read("c") == state);
  }
  // Shrinking to a small state stores it whole and deletes every chunk.
  const std::string small = state.substr(0, 100);
  store.Write("c", small);
  CHECK(store.Read("c") == small);
  CHECK(testing::ProjectionContents(store.log(), ProjectionCf::kStateChunks).empty());

  // Growing again: the chunks stored are exactly the head's.
  store.Write("c", state);
  auto head = store.log().GetProjection(ProjectionCf::kCustomerState, "c");
  REQUIRE(head.ok());
  auto keys = HeadChunkKeys("c", *head);
  REQUIRE(keys.ok());
  std::set<std::string> named(keys->begin(), keys->end());
  std::set<std::string> stored;
  for (const auto& [k, v] : testing::ProjectionContents(store.log(), ProjectionCf::kStateChunks)) {
    stored.insert(k);
  }
  CHECK(stored == named);
}

TEST_CASE("state store: a missing chunk or a malformed head is data loss") {
  Store store;
  const std::string state = RandomBytes(50'000, 4);
  store.Write("c", state);
  auto head = store.log().GetProjection(ProjectionCf::kCustomerState, "c");
  REQUIRE(head.ok());

  SECTION("a chunk missing") {
    auto keys = HeadChunkKeys("c", *head);
    REQUIRE(keys.ok());
    REQUIRE(keys->size() > 2);
    // The same head read against a store that lacks its chunks (another customer).
    auto bytes = StateBytesOfHead(store.log(), "d", *head);
    CHECK(absl::IsDataLoss(bytes.status()));
  }
  SECTION("a head cut short") {
    auto bytes = StateBytesOfHead(store.log(), "c", head->substr(0, head->size() - 3));
    CHECK(absl::IsDataLoss(bytes.status()));
  }
  SECTION("a head whose size is wrong") {
    std::string wrong = *head;
    wrong[8] ^= 1;
    auto bytes = StateBytesOfHead(store.log(), "c", wrong);
    CHECK(absl::IsDataLoss(bytes.status()));
  }
  SECTION("a head whose size is far more than its chunks can hold") {
    std::string wrong = *head;
    wrong[1] = static_cast<char>(0x40);  // about 2^62 bytes: refused before any allocation
    auto bytes = StateBytesOfHead(store.log(), "c", wrong);
    CHECK(absl::IsDataLoss(bytes.status()));
    CHECK(std::string(bytes.status().message()).find("chunks") != std::string::npos);
  }
}

}  // namespace
}  // namespace loyalty
