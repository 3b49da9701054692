#include "projections/ledger_reader.h"

#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "engine/status_macros.h"
#include "loyalty/v1/log.pb.h"
#include "projections/ledger.h"
#include "projections/state_store.h"

namespace loyalty {

bool ParseLedgerOnly(std::string_view bytes, v1::LedgerState* ledger) {
  using google::protobuf::internal::WireFormatLite;
  ledger->Clear();
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  while (true) {
    const uint32_t tag = in.ReadTag();
    // The end, or a malformed tag; a ledger whose columns disagree is malformed too.
    if (tag == 0) return in.ExpectAtEnd() && ColumnsAgree(*ledger);
    if (WireFormatLite::GetTagFieldNumber(tag) == v1::CustomerState::kLedgerFieldNumber &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      // Repeated occurrences of a message field merge (proto semantics).
      if (!WireFormatLite::ReadMessage(&in, ledger)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
}

namespace {

using google::protobuf::internal::WireFormatLite;

// Reads a length-delimited field's bytes as a nested message with `fn` (which reads
// tags until ReadTag gives 0), and checks it ended exactly at the field's end.
template <typename Fn>
bool ReadNested(google::protobuf::io::CodedInputStream* in, Fn fn) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return false;
  const auto limit = in->PushLimit(static_cast<int>(length));
  if (!fn() || in->BytesUntilLimit() != 0) return false;
  in->PopLimit(limit);
  return true;
}

bool IsField(uint32_t tag, int number) {
  return WireFormatLite::GetTagFieldNumber(tag) == number &&
         WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
}

}  // namespace

bool ParseRecordEntries(std::string_view bytes, std::vector<v1::LedgerEntry>* entries) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  // Reads tags until the end of the current message, calling nested(tag) for the
  // field wanted and skipping every other.
  auto fields = [&in](int number, auto nested) {
    for (uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
      if (IsField(tag, number)) {
        if (!nested()) return false;
      } else if (!WireFormatLite::SkipField(&in, tag)) {
        return false;
      }
    }
    return true;
  };
  auto entry = [&] {
    uint32_t length = 0;
    if (!in.ReadVarint32(&length)) return false;
    const auto limit = in.PushLimit(static_cast<int>(length));
    v1::LedgerEntry& e = entries->emplace_back();
    if (!e.MergePartialFromCodedStream(&in) || in.BytesUntilLimit() != 0) return false;
    in.PopLimit(limit);
    return true;
  };
  auto outcome = [&] {
    return ReadNested(&in, [&] { return fields(v1::Outcome::kEntriesFieldNumber, entry); });
  };
  auto applied = [&] {
    return ReadNested(&in, [&] { return fields(v1::Applied::kOutcomeFieldNumber, outcome); });
  };
  return fields(v1::LogRecord::kAppliedFieldNumber, applied) && in.ExpectAtEnd();
}

absl::StatusOr<std::optional<v1::CustomerState>> LedgerReader::Current(
    const std::string& customer_id) const {
  LOYALTY_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                           ReadStateBytes(*log_, customer_id, snapshot_));
  if (!stored.has_value()) return std::optional<v1::CustomerState>();
  v1::CustomerState state;
  if (!ParseCustomerState(*stored, &state)) {
    return absl::DataLossError(absl::StrCat("the state of ", customer_id, " does not decode"));
  }
  return std::optional<v1::CustomerState>(std::move(state));
}

absl::StatusOr<std::vector<v1::LedgerEntry>> LedgerReader::Entries(
    const std::string& customer_id, int64_t from, int64_t to) const {
  std::vector<v1::LedgerEntry> out;
  LOYALTY_ASSIGN_OR_RETURN(std::vector<uint64_t> seqs, log_->CustomerSeqs(customer_id, snapshot_));
  for (uint64_t seq : seqs) {
    LOYALTY_ASSIGN_OR_RETURN(v1::LogRecord record, log_->Read(seq, snapshot_));
    if (!record.has_applied()) continue;
    const v1::Outcome& outcome = record.applied().outcome();
    bool past_end = false;
    for (const v1::LedgerEntry& e : outcome.entries()) {
      if (e.customer_id() != customer_id) continue;
      if (e.effective_at() > to) {
        past_end = true;  // a customer's entries are in time order
        break;
      }
      if (e.effective_at() < from) continue;
      v1::LedgerEntry& copy = out.emplace_back(e);
      copy.set_seq(seq);
      if (copy.event_id().empty()) {
        LOYALTY_ASSIGN_OR_RETURN(v1::Event event, RecordEvent(record));
        copy.set_event_id(event.event_id());
      }
    }
    if (past_end) break;
  }
  return out;
}

absl::StatusOr<StatsView> LedgerReader::Stats(int64_t t) const {
  StatsView stats;
  v1::LedgerState ledger;
  LOYALTY_RETURN_IF_ERROR(ScanStateBytes(
      *log_,
      [&](std::string_view key, std::string_view value) -> absl::Status {
        if (!ParseLedgerOnly(value, &ledger)) {
          return absl::DataLossError(
              absl::StrCat("the state of ", std::string(key), " does not decode"));
        }
        if (ledger.clock() <= t) {
          AddToStats(*rules_, ledger, t, &stats);
          return absl::OkStatus();
        }
        LOYALTY_ASSIGN_OR_RETURN(std::optional<v1::LedgerState> past,
                                 StateAsOf(std::string(key), t));
        if (past.has_value()) AddToStats(*rules_, *past, t, &stats);
        return absl::OkStatus();
      },
      snapshot_));
  return stats;
}

absl::StatusOr<std::optional<v1::LedgerState>> LedgerReader::StateAsOf(
    const std::string& customer_id, int64_t t) const {
  // Only the ledger: the decision state (every order and redemption id) is not needed.
  LOYALTY_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                           ReadStateBytes(*log_, customer_id, snapshot_));
  if (!stored.has_value()) return std::optional<v1::LedgerState>();
  v1::LedgerState current;
  if (!ParseLedgerOnly(*stored, &current)) {
    return absl::DataLossError(absl::StrCat("the state of ", customer_id, " does not decode"));
  }
  if (current.entries() == 0 || current.first_at() > t) {
    return std::optional<v1::LedgerState>();
  }
  if (current.clock() <= t) return std::optional<v1::LedgerState>(std::move(current));
  LOYALTY_ASSIGN_OR_RETURN(std::vector<v1::LedgerEntry> entries,
                           Entries(customer_id, INT64_MIN, t));
  v1::LedgerState state;
  for (const v1::LedgerEntry& e : entries) {
    LOYALTY_RETURN_IF_ERROR(ApplyEntry(*rules_, e, &state));
  }
  if (state.entries() == 0) return std::optional<v1::LedgerState>();
  return std::optional<v1::LedgerState>(std::move(state));
}

}  // namespace loyalty
