#include "server/query_service.h"

#include <chrono>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/event_codec.h"
#include "engine/sha256.h"
#include "engine/status_macros.h"
#include "engine/validation.h"
#include "google/protobuf/util/time_util.h"
#include "projections/ledger.h"
#include "projections/ledger_reader.h"
#include "projections/state_store.h"
#include "projections/stats.h"

namespace loyalty {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp Ts(int64_t unix_seconds) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(unix_seconds);
  return ts;
}

absl::Status CheckCustomerId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("customer id is empty");
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("customer id is ", id.size(), " bytes; the limit is ", kMaxIdBytes));
  }
  return absl::OkStatus();
}

// Waits are measured on the monotonic clock: they are about elapsed time, not the
// business time the injected Clock gives (which a test may hold still).
std::chrono::steady_clock::time_point Deadline(int64_t wait_ms) {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
}
absl::Duration Left(std::chrono::steady_clock::time_point deadline) {
  return std::max(absl::ZeroDuration(),
                  absl::FromChrono(deadline - std::chrono::steady_clock::now()));
}

absl::Status Unknown(const std::string& id, int64_t t) {
  return absl::NotFoundError(absl::StrCat("customer '", id, "' is unknown as of ",
                                          TimeUtil::ToString(Ts(t))));
}


// Page tokens: hex of "as_of:last_customer_id", so every page of a listing is
// evaluated at the first page's time and continues after the last key shown.
std::string EncodeToken(int64_t as_of, const std::string& last) {
  return absl::BytesToHexString(absl::StrCat(as_of, ":", last));
}
absl::Status DecodeToken(const std::string& token, int64_t* as_of, std::string* last) {
  auto bad = absl::InvalidArgumentError("page_token is not one this server issued");
  if (token.size() % 2 != 0 || token.size() > 2 * (kMaxIdBytes + 32) ||
      token.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return bad;
  }
  const std::string text = absl::HexStringToBytes(token);
  const size_t colon = text.find(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(text.substr(0, colon), as_of)) return bad;
  // Issued tokens hold an as_of that is a valid Timestamp; a forged one beyond it
  // would be answered with an as_of that cannot be printed (found by tests/fuzz).
  if (*as_of < TimeUtil::kTimestampMinSeconds || *as_of > TimeUtil::kTimestampMaxSeconds) {
    return bad;
  }
  *last = text.substr(colon + 1);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::KafkaPosition> ParseAfter(const std::string& text) {
  // The topic may itself hold ':'; partition and offset are the last two fields.
  const size_t b = text.rfind(':');
  const size_t a = b == std::string::npos || b == 0 ? std::string::npos : text.rfind(':', b - 1);
  v1::KafkaPosition p;
  int32_t partition = 0;
  int64_t offset = 0;
  if (a == std::string::npos || a == 0 ||
      !absl::SimpleAtoi(text.substr(a + 1, b - a - 1), &partition) ||
      !absl::SimpleAtoi(text.substr(b + 1), &offset) || partition < 0 || offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("after '", text, "' is not topic:partition:offset"));
  }
  p.set_topic(text.substr(0, a));
  p.set_partition(partition);
  p.set_offset(offset);
  return p;
}

QueryService::QueryService(const EventLog* log, const Clock* clock,
                           std::shared_ptr<const Rules> rules, QueryLimits limits)
    : log_(log), clock_(clock), limits_(limits), rules_(std::move(rules)), stats_index_(log) {}

void QueryService::SetRules(std::shared_ptr<const Rules> rules) {
  absl::MutexLock lock(&mu_);
  rules_ = std::move(rules);
}

std::shared_ptr<const Rules> QueryService::rules() const {
  absl::MutexLock lock(&mu_);
  return rules_;
}

int64_t QueryService::AsOf(const v1::ReadOptions& read) const {
  if (read.has_as_of()) return read.as_of().seconds();
  return absl::ToUnixSeconds(clock_->Now());
}

absl::Status QueryService::WaitFor(const v1::ReadOptions& read) const {
  if (read.after().empty() && read.after_seq() == 0) return absl::OkStatus();
  const int64_t wait_ms = std::min<int64_t>(
      read.wait_ms() > 0 ? read.wait_ms() : limits_.default_after_wait_ms, limits_.max_wait_ms);
  const auto deadline = Deadline(wait_ms);
  if (read.after_seq() > 0 && !log_->WaitForSeq(read.after_seq(), Left(deadline))) {
    return absl::DeadlineExceededError(absl::StrCat(
        "log sequence ", read.after_seq(), " not applied within ", wait_ms, " ms"));
  }
  if (read.after().empty()) return absl::OkStatus();
  LOYALTY_ASSIGN_OR_RETURN(v1::KafkaPosition want, ParseAfter(read.after()));
  v1::SourcePosition key;
  *key.mutable_kafka() = want;
  for (;;) {
    LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::SourcePosition> have, log_->SourcePositionOf(key));
    if (have.has_value() && have->kafka().offset() >= want.offset()) return absl::OkStatus();
    const absl::Duration left = Left(deadline);
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("input ", read.after(), " not applied within ", wait_ms, " ms"));
    }
    log_->WaitForSeq(log_->head().seq + 1, left);
  }
}

#define LOYALTY_CUSTOMER_PRELUDE(request)                                               \
  LOYALTY_RETURN_IF_ERROR(CheckCustomerId(request.customer_id()));                      \
  LOYALTY_RETURN_IF_ERROR(WaitFor(request.read()));                                     \
  const std::shared_ptr<const Rules> rules_now = rules();                               \
  LOYALTY_ASSIGN_OR_RETURN(std::shared_ptr<const LogSnapshot> snap,                     \
                           log_->SharedSnapshot());                                     \
  const int64_t t = AsOf(request.read());                                               \
  LedgerReader reader(log_, rules_now.get(), snap.get());                               \
  LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::LedgerState> state,                        \
                           reader.StateAsOf(request.customer_id(), t));                 \
  if (!state.has_value()) return Unknown(request.customer_id(), t)

absl::StatusOr<v1::Balance> QueryService::GetBalance(const v1::CustomerRequest& request) const {
  LOYALTY_CUSTOMER_PRELUDE(request);
  const BalanceView b = EvaluateBalance(*rules_now, *state, t);
  v1::Balance out;
  out.set_customer_id(request.customer_id());
  *out.mutable_as_of() = Ts(t);
  out.set_available(b.available);
  out.set_pending(b.pending);
  out.set_earned(b.earned);
  out.set_redeemed(b.redeemed);
  out.set_reversed(b.reversed);
  out.set_adjusted_out(b.adjusted_out);
  out.set_expired(b.expired);
  out.set_debt(b.debt);
  for (const ExpiringLot& lot : b.expiring_soon) {
    v1::ExpiringPoints* e = out.add_expiring_soon();
    e->set_points(lot.points);
    *e->mutable_expires_at() = Ts(lot.expires_at);
  }
  out.set_log_seq(snap->seq());
  return out;
}

absl::StatusOr<v1::TierStatus> QueryService::GetTier(const v1::CustomerRequest& request) const {
  LOYALTY_CUSTOMER_PRELUDE(request);
  const TierView v = EvaluateTier(*rules_now, *state, t);
  v1::TierStatus out;
  out.set_customer_id(request.customer_id());
  *out.mutable_as_of() = Ts(t);
  out.set_tier(static_cast<v1::Tier>(v.tier));
  out.set_rolling_spend_minor(v.rolling_spend_minor);
  if (v.valid_until.has_value()) *out.mutable_valid_until() = Ts(*v.valid_until);
  if (v.next_tier.has_value()) out.set_next_tier(static_cast<v1::Tier>(*v.next_tier));
  out.set_spend_to_next_tier_minor(v.spend_to_next_tier_minor);
  out.set_log_seq(snap->seq());
  return out;
}

absl::StatusOr<v1::ChurnSignals> QueryService::GetChurn(const v1::CustomerRequest& request) const {
  LOYALTY_CUSTOMER_PRELUDE(request);
  const ChurnView v = EvaluateChurn(*rules_now, *state, t);
  v1::ChurnSignals out;
  out.set_customer_id(request.customer_id());
  *out.mutable_as_of() = Ts(t);
  out.set_risk_level(static_cast<v1::RiskLevel>(v.risk_level));
  if (v.last_purchase_at.has_value()) {
    *out.mutable_last_purchase_at() = Ts(*v.last_purchase_at);
    out.set_days_since_last_purchase(v.days_since_last_purchase);
    out.set_expected_interval_seconds(v.expected_interval_s);
    out.set_recency_ratio(v.recency_ratio);
  }
  out.set_purchases_365d(v.purchases_365d);
  out.set_spend_365d_minor(v.spend_365d_minor);
  out.set_log_seq(snap->seq());
  return out;
}

absl::StatusOr<v1::Statement> QueryService::GetStatement(
    const v1::StatementRequest& request) const {
  LOYALTY_RETURN_IF_ERROR(CheckCustomerId(request.customer_id()));
  LOYALTY_RETURN_IF_ERROR(WaitFor(request.read()));
  const std::shared_ptr<const Rules> rules_now = rules();
  LOYALTY_ASSIGN_OR_RETURN(std::shared_ptr<const LogSnapshot> snap, log_->SharedSnapshot());
  LedgerReader reader(log_, rules_now.get(), snap.get());
  LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::CustomerState> current,
                           reader.Current(request.customer_id()));
  if (!current.has_value()) {
    return absl::NotFoundError(absl::StrCat("customer '", request.customer_id(), "' is unknown"));
  }
  const int64_t from = request.has_from() ? request.from().seconds() : INT64_MIN;
  const int64_t to = request.has_to() ? request.to().seconds() : INT64_MAX;
  if (from > to) return absl::InvalidArgumentError("from is after to");
  LOYALTY_ASSIGN_OR_RETURN(std::vector<v1::LedgerEntry> entries,
                           reader.Entries(request.customer_id(), from, to));
  v1::Statement out;
  out.set_customer_id(request.customer_id());
  for (v1::LedgerEntry& e : entries) {
    v1::StatementEntry* s = out.add_entries();
    *s->mutable_time() = Ts(e.effective_at());
    s->set_kind(e.kind());
    s->set_points(SignedPoints(e));
    s->set_event_id(e.event_id());
    s->set_seq(e.seq());
    *s->mutable_detail() = std::move(e);
  }
  out.set_log_seq(snap->seq());
  return out;
}

absl::StatusOr<v1::ListCustomersResponse> QueryService::ListCustomers(
    const v1::ListCustomersRequest& request) const {
  if (request.limit() < 0 || request.limit() > limits_.max_page_size) {
    return absl::InvalidArgumentError(absl::StrCat("limit must be in [1, ",
                                                   limits_.max_page_size, "]"));
  }
  const int32_t limit = request.limit() == 0 ? limits_.default_page_size : request.limit();
  int64_t t = 0;
  std::string after;
  if (!request.page_token().empty()) {
    LOYALTY_RETURN_IF_ERROR(DecodeToken(request.page_token(), &t, &after));
  } else {
    LOYALTY_RETURN_IF_ERROR(WaitFor(request.read()));
    t = AsOf(request.read());
  }
  const std::shared_ptr<const Rules> rules_now = rules();
  LOYALTY_ASSIGN_OR_RETURN(std::shared_ptr<const LogSnapshot> snap, log_->SharedSnapshot());
  LedgerReader reader(log_, rules_now.get(), snap.get());
  v1::ListCustomersResponse out;
  *out.mutable_as_of() = Ts(t);
  std::string last_shown;
  bool more = false;
  v1::CustomerState state;
  // Start just after the last key shown: key + '\0' is its immediate successor.
  const std::string start = after.empty() ? "" : after + std::string(1, '\0');
  absl::Status s = ScanStateBytes(
      *log_,
      [&](std::string_view key, std::string_view value) -> absl::Status {
        if (out.customers_size() >= limit) {
          more = true;
          return absl::CancelledError("page full");  // stops the scan
        }
        if (!ParseCustomerState(value, &state)) {
          return absl::DataLossError("a customer state does not decode");
        }
        const v1::LedgerState* ledger = &state.ledger();
        std::optional<v1::LedgerState> past;
        if (ledger->entries() == 0 || ledger->first_at() > t) return absl::OkStatus();
        if (ledger->clock() > t) {
          LOYALTY_ASSIGN_OR_RETURN(past, reader.StateAsOf(std::string(key), t));
          if (!past.has_value()) return absl::OkStatus();
          ledger = &*past;
        }
        const Tier tier = EvaluateTier(*rules_now, *ledger, t).tier;
        const RiskLevel risk = EvaluateChurn(*rules_now, *ledger, t).risk_level;
        if (request.has_tier() && static_cast<int>(request.tier()) != static_cast<int>(tier)) {
          return absl::OkStatus();
        }
        if (request.has_risk_level() &&
            static_cast<int>(request.risk_level()) != static_cast<int>(risk)) {
          return absl::OkStatus();
        }
        v1::CustomerSummary* c = out.add_customers();
        c->set_customer_id(std::string(key));
        c->set_tier(static_cast<v1::Tier>(tier));
        c->set_risk_level(static_cast<v1::RiskLevel>(risk));
        c->set_available(EvaluateBalance(*rules_now, *ledger, t).available);
        last_shown = std::string(key);
        return absl::OkStatus();
      },
      snap.get(), start);
  if (!s.ok() && !absl::IsCancelled(s)) return s;
  if (more) out.set_next_page_token(EncodeToken(t, last_shown));
  out.set_log_seq(snap->seq());
  return out;
}

absl::StatusOr<v1::Stats> QueryService::GetStats(const v1::StatsRequest& request) const {
  LOYALTY_RETURN_IF_ERROR(WaitFor(request.read()));
  const int64_t t = AsOf(request.read());
  const int64_t now = absl::ToUnixSeconds(clock_->Now());
  // The index answers at the newest committed state: at or past any wait above.
  LOYALTY_ASSIGN_OR_RETURN(
      StatsIndex::Answer answer,
      stats_index_.Stats(rules(), t, now, std::abs(t - now) <= kKeepStatsWithin));
  const StatsView& s = answer.stats;
  v1::Stats out;
  *out.mutable_as_of() = Ts(t);
  out.set_members(s.members);
  out.set_purchasers(s.purchasers);
  out.set_repeat_purchase_rate(s.repeat_purchase_rate());
  out.set_points_outstanding(s.points_outstanding);
  out.set_earned(s.earned);
  out.set_redeemed(s.redeemed);
  out.set_expired(s.expired);
  for (int k = 0; k < 4; ++k) {
    v1::TierCount* c = out.add_per_tier();
    c->set_tier(static_cast<v1::Tier>(k));
    c->set_customers(s.per_tier[k]);
  }
  for (int k = 0; k < 5; ++k) {
    v1::RiskLevelCount* c = out.add_per_risk_level();
    c->set_risk_level(static_cast<v1::RiskLevel>(k));
    c->set_customers(s.per_risk_level[k]);
  }
  out.set_log_seq(answer.seq);
  return out;
}

absl::Status QueryService::RefreshStats() {
  return stats_index_.Refresh(rules(), absl::ToUnixSeconds(clock_->Now()));
}

absl::Status QueryService::BuildStatsTimeline(const std::atomic<bool>* cancel, bool* built) {
  if (built != nullptr) *built = false;
  std::shared_ptr<const Rules> rules_now = rules();
  if (stats_index_.HasTimeline(rules_now)) return absl::OkStatus();
  LOYALTY_RETURN_IF_ERROR(stats_index_.BuildTimeline(std::move(rules_now), cancel));
  if (built != nullptr) *built = true;
  return absl::OkStatus();
}

absl::StatusOr<v1::EventStatus> QueryService::GetEvent(const v1::EventRequest& request) const {
  if (request.event_id().empty()) return absl::InvalidArgumentError("event id is empty");
  if (request.event_id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("event id is over ", kMaxIdBytes, " bytes"));
  }
  const int64_t wait_ms = std::clamp<int64_t>(request.wait_ms(), 0, limits_.max_wait_ms);
  const auto deadline = Deadline(wait_ms);
  for (;;) {
    LOYALTY_ASSIGN_OR_RETURN(std::shared_ptr<const LogSnapshot> snap, log_->SharedSnapshot());
    v1::EventStatus out;
    out.set_event_id(request.event_id());
    out.set_log_seq(snap->seq());
    std::vector<std::optional<EventIdEntry>> found;
    LOYALTY_RETURN_IF_ERROR(log_->LookupEventIds({request.event_id()}, &found, snap.get()));
    uint64_t seq = found[0].has_value() ? found[0]->seq : 0;
    if (seq == 0) {
      LOYALTY_ASSIGN_OR_RETURN(std::vector<uint64_t> dls,
                               log_->DeadLettersOf(request.event_id(), snap.get()));
      if (!dls.empty()) seq = dls.back();
    }
    if (seq != 0) {
      LOYALTY_ASSIGN_OR_RETURN(v1::LogRecord record, log_->Read(seq, snap.get()));
      out.set_seq(seq);
      if (record.has_dead_letter()) {
        out.set_state(v1::EVENT_DEAD_LETTERED);
        out.set_dead_letter_reason(record.dead_letter().reason());
        out.set_detail(record.dead_letter().detail());
      } else {
        const v1::Outcome& o = record.applied().outcome();
        out.set_state(o.status() == v1::ACCEPTED ? v1::EVENT_ACCEPTED : v1::EVENT_REJECTED);
        out.set_reject_reason(o.reason());
        *out.mutable_effective_at() = Ts(o.effective_at());
        for (const v1::LedgerEntry& e : o.entries()) {
          v1::LedgerEntry* copy = out.add_entries();
          *copy = e;
          copy->set_event_id(request.event_id());
          copy->set_seq(seq);
        }
      }
      return out;
    }
    const absl::Duration left = Left(deadline);
    if (left <= absl::ZeroDuration()) return out;  // still unknown
    log_->WaitForSeq(snap->seq() + 1, left);
  }
}

absl::StatusOr<v1::Progress> QueryService::GetProgress() const {
  LOYALTY_ASSIGN_OR_RETURN(std::shared_ptr<const LogSnapshot> snap, log_->SharedSnapshot());
  LOYALTY_ASSIGN_OR_RETURN(std::vector<v1::SourcePosition> positions,
                           log_->SourcePositions(snap.get()));
  v1::Progress out;
  for (const v1::SourcePosition& p : positions) {
    if (p.has_kafka()) {
      v1::PartitionProgress* pp = out.add_partitions();
      pp->set_topic(p.kafka().topic());
      pp->set_partition(p.kafka().partition());
      pp->set_offset(p.kafka().offset() + 1);  // the next offset to consume
    } else {
      v1::FileProgress* f = out.add_files();
      f->set_path(p.file().path());
      f->set_line(p.file().line());
    }
  }
  out.set_log_length(snap->seq());
  out.set_head_hash(DigestHex(DigestView(snap->head().hash)));
  return out;
}

}  // namespace loyalty
