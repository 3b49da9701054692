// A broker-free driver for the rules (as Kafka Streams' TopologyTestDriver): events
// in as JSON lines through the real Ingestor + Projector, answers out through the
// LedgerReader at any as_of. The engine clock is fixed far ahead (2100) so that no
// test event is "in the future" unless a test moves it.
#ifndef LOYALTY_TESTS_TESTING_LEDGER_HARNESS_H_
#define LOYALTY_TESTS_TESTING_LEDGER_HARNESS_H_

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "loyalty/v1/log.pb.h"
#include "projections/ledger.h"
#include "projections/ledger_reader.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "projections/state_store.h"
#include "tests/testing/temp_dir.h"

namespace loyalty::testing {

// Unix seconds of an RFC 3339 time, e.g. T("2026-01-05T10:00:00Z").
inline int64_t T(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err));
  return absl::ToUnixSeconds(t);
}
inline std::string Rfc3339(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

// Day n of the test calendar (2026-01-01T00:00:00Z + n days), plus seconds.
inline std::string Day(int64_t n, int64_t seconds = 0) {
  return Rfc3339(T("2026-01-01T00:00:00Z") + n * 86400 + seconds);
}
inline int64_t DayT(int64_t n, int64_t seconds = 0) { return T(Day(n, seconds)); }

// How a LedgerHarness opens its store.
struct HarnessOptions {
  v1::Program program = DefaultProgram();
  // Used (and left behind) instead of a temporary directory, if given.
  std::string data_dir;
  // A fault-injecting environment, for storage fault tests. Not owned.
  rocksdb::Env* env = nullptr;
  bool sync_writes = false;
  size_t state_cache_bytes = kDefaultStateCacheBytes;
  size_t order_index_from = kDefaultOrderIndexFrom;
  size_t parsed_state_bytes = kDefaultParsedStateBytes;
  int serialize_threads = kDefaultSerializeThreads;
  // Projector::set_prefetch.
  bool prefetch = true;
  // Ingestor::set_pipelined: a batch is stored by the next call (or Flush).
  bool pipelined = false;
  // Ingestor::set_batch_state_bytes.
  size_t batch_state_bytes = kDefaultBatchStateBytes;
  // The prefix of the event ids Event() makes: a second harness on the same store
  // needs another one.
  std::string event_id_prefix = "ev-";
};

class LedgerHarness {
 public:
  // `data_dir`, if given, is used (and left behind) instead of a temporary one.
  explicit LedgerHarness(const v1::Program& program = DefaultProgram(),
                         const std::string& data_dir = "")
      : LedgerHarness(Options(program, data_dir)) {}

  explicit LedgerHarness(const HarnessOptions& o)
      : data_dir_(o.data_dir.empty() ? dir_.Sub("data") : o.data_dir),
        event_id_prefix_(o.event_id_prefix),
        clock_(absl::FromUnixSeconds(4102444800)) {  // 2100-01-01
    LogOptions options;
    options.data_dir = data_dir_;
    options.sync_writes = o.sync_writes;
    options.env = o.env;
    auto log = EventLog::Open(options);
    REQUIRE(log.ok());
    log_ = std::move(*log);
    auto projector = Projector::Open(log_.get(), o.program, o.state_cache_bytes,
                                     o.order_index_from, o.parsed_state_bytes);
    REQUIRE(projector.ok());
    projector_ = std::move(*projector);
    projector_->set_serialize_threads(o.serialize_threads);
    projector_->set_prefetch(o.prefetch);
    ingestor_ = std::make_unique<Ingestor>(log_.get(), &clock_, projector_.get());
    ingestor_->set_pipelined(o.pipelined);
    ingestor_->set_batch_state_bytes(o.batch_state_bytes);
  }

  // Ingests prepared messages as one batch (any source positions).
  absl::StatusOr<IngestCounts> Ingest(const std::vector<InputMessage>& batch) {
    return ingestor_->IngestBatch(batch);
  }

  // Ingests JSON lines as one batch; returns the counts.
  IngestCounts IngestLines(const std::vector<std::string>& lines) {
    std::vector<InputMessage> batch;
    for (const auto& l : lines) {
      InputMessage m;
      m.raw = l;
      m.source.mutable_file()->set_path("harness");
      m.source.mutable_file()->set_line(++line_);
      batch.push_back(std::move(m));
    }
    auto counts = ingestor_->IngestBatch(batch);
    REQUIRE(counts.ok());
    return *counts;
  }

  // Builds and ingests one event; returns its outcome. `payload` is the JSON of
  // the payload member, e.g. R"("purchase":{"orderId":"o1",...})".
  v1::Outcome Event(const std::string& customer, const std::string& occurred_at,
                    const std::string& payload) {
    const std::string id = absl::StrCat(event_id_prefix_, ++event_counter_);
    IngestCounts c = IngestLines({absl::StrCat(R"({"eventId":")", id, R"(","customerId":")",
                                               customer, R"(","occurredAt":")", occurred_at,
                                               R"(",)", payload, "}")});
    REQUIRE(c.applied == 1);
    auto r = log_->Read(log_->head().seq);
    REQUIRE(r.ok());
    REQUIRE(r->has_applied());
    return r->applied().outcome();
  }

  v1::Outcome Purchase(const std::string& customer, const std::string& at,
                       const std::string& order_id, int64_t amount,
                       const std::string& currency = "EUR") {
    return Event(customer, at,
                 absl::StrCat(R"("purchase":{"orderId":")", order_id, R"(","amountMinor":)",
                              amount, R"(,"currency":")", currency, R"("})"));
  }
  v1::Outcome Refund(const std::string& customer, const std::string& at,
                     const std::string& order_id, int64_t amount) {
    return Event(customer, at,
                 absl::StrCat(R"("refund":{"orderId":")", order_id, R"(","amountMinor":)",
                              amount, "}"));
  }
  v1::Outcome Referral(const std::string& referee, const std::string& at,
                       const std::string& referrer) {
    return Event(referee, at,
                 absl::StrCat(R"("referral":{"referrerId":")", referrer, R"(","refereeId":")",
                              referee, R"("})"));
  }
  v1::Outcome Redeem(const std::string& customer, const std::string& at,
                     const std::string& redemption_id, int64_t points) {
    return Event(customer, at,
                 absl::StrCat(R"("redemption":{"redemptionId":")", redemption_id,
                              R"(","points":)", points, R"(,"rewardId":"reward"})"));
  }
  v1::Outcome Cancel(const std::string& customer, const std::string& at,
                     const std::string& redemption_id) {
    return Event(customer, at,
                 absl::StrCat(R"("redemptionCancel":{"redemptionId":")", redemption_id, R"("})"));
  }
  v1::Outcome Adjust(const std::string& customer, const std::string& at, int64_t points) {
    return Event(customer, at,
                 absl::StrCat(R"("adjustment":{"points":)", points,
                              R"(,"reason":"test","actor":"harness"})"));
  }

  // A sweep at the engine clock's reading (set it with clock()); the records
  // appended, 0 if nothing was due.
  size_t Sweep() {
    auto records = ingestor_->Sweep();
    REQUIRE(records.ok());
    return *records;
  }
  // The customer's ledger as of `as_of` (Unix seconds); nullopt if unknown.
  std::optional<v1::LedgerState> State(const std::string& customer, int64_t as_of) {
    LedgerReader reader(log_.get(), &projector_->rules());
    auto s = reader.StateAsOf(customer, as_of);
    REQUIRE(s.ok());
    return *s;
  }
  BalanceView Balance(const std::string& customer, const std::string& as_of) {
    return BalanceAt(customer, T(as_of));
  }
  BalanceView BalanceAt(const std::string& customer, int64_t as_of) {
    auto s = State(customer, as_of);
    REQUIRE(s.has_value());
    return EvaluateBalance(projector_->rules(), *s, as_of);
  }
  TierView Tier(const std::string& customer, const std::string& as_of) {
    auto s = State(customer, T(as_of));
    REQUIRE(s.has_value());
    return EvaluateTier(projector_->rules(), *s, T(as_of));
  }
  ChurnView Churn(const std::string& customer, const std::string& as_of) {
    auto s = State(customer, T(as_of));
    REQUIRE(s.has_value());
    return EvaluateChurn(projector_->rules(), *s, T(as_of));
  }
  bool Known(const std::string& customer, const std::string& as_of) {
    return State(customer, T(as_of)).has_value();
  }

  static HarnessOptions Options(const v1::Program& program, const std::string& data_dir) {
    HarnessOptions o;
    o.program = program;
    o.data_dir = data_dir;
    return o;
  }

  EventLog& log() { return *log_; }
  Projector& projector() { return *projector_; }
  Ingestor& ingestor() { return *ingestor_; }
  ManualClock& clock() { return clock_; }
  const std::string& data_dir() const { return data_dir_; }

 private:
  TempDir dir_;
  std::string data_dir_;
  std::string event_id_prefix_;
  ManualClock clock_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<Projector> projector_;
  std::unique_ptr<Ingestor> ingestor_;
  uint64_t line_ = 0;
  uint64_t event_counter_ = 0;
};

// earned = available + pending + redeemed + reversed + adjusted_out + expired
// (rules.md section 9; available already has debt subtracted).
inline bool Conserved(const BalanceView& b) {
  return b.earned == b.available + b.pending + b.redeemed + b.reversed + b.adjusted_out + b.expired;
}

// Every key and value of one projection column family of `log`, in key order.
inline std::map<std::string, std::string> ProjectionContents(const EventLog& log,
                                                             LogBatch::ProjectionCf cf) {
  std::map<std::string, std::string> out;
  REQUIRE(log.ScanProjection(cf,
                             [&](std::string_view key, std::string_view value) {
                               out.emplace(std::string(key), std::string(value));
                               return absl::OkStatus();
                             })
              .ok());
  return out;
}

// Every stored customer state as its protobuf bytes (assembled from its chunks,
// projections/state_store.h), by customer id.
inline std::map<std::string, std::string> StateContents(const EventLog& log) {
  std::map<std::string, std::string> out;
  REQUIRE(ScanStateBytes(log,
                         [&](std::string_view key, std::string_view value) {
                           out.emplace(std::string(key), std::string(value));
                           return absl::OkStatus();
                         })
              .ok());
  return out;
}

// Everything ingestion stores, as bytes: the log records with their chain hashes,
// the projections and the input positions.
inline std::map<std::string, std::string> StoreContents(const EventLog& log) {
  std::map<std::string, std::string> out;
  REQUIRE(log.Scan(1, UINT64_MAX,
                   [&](uint64_t seq, std::string_view, std::string_view record,
                       std::string_view hash) {
                     out.emplace(absl::StrCat("log/", seq), std::string(record) + std::string(hash));
                     return absl::OkStatus();
                   })
              .ok());
  for (auto [cf, name] : {std::pair{LogBatch::ProjectionCf::kCustomerState, "state/"},
                          std::pair{LogBatch::ProjectionCf::kProjectionMeta, "meta/"},
                          std::pair{LogBatch::ProjectionCf::kDecisionIds, "ids/"},
                          std::pair{LogBatch::ProjectionCf::kStateChunks, "chunks/"}}) {
    for (const auto& [k, v] : ProjectionContents(log, cf)) out.emplace(name + k, v);
  }
  auto positions = log.SourcePositions();
  REQUIRE(positions.ok());
  for (size_t i = 0; i < positions->size(); ++i) {
    out.emplace(absl::StrCat("position/", i), (*positions)[i].SerializeAsString());
  }
  return out;
}

}  // namespace loyalty::testing

#endif  // LOYALTY_TESTS_TESTING_LEDGER_HARNESS_H_
