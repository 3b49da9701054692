#include "engine/ingestor.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/event_codec.h"
#include "engine/internal/keys.h"
#include "engine/sha256.h"
#include "engine/status_macros.h"
#include "engine/validation.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace loyalty {
namespace {

enum class Verdict { kApply, kDuplicate, kDeadLetter };

struct Decoded {
  Verdict verdict = Verdict::kDeadLetter;
  v1::Encoding encoding = v1::ENCODING_UNSPECIFIED;
  InputVerdict input;
};

// The verdict on an input of at most kMaxMessageBytes, given what decoding it gave.
InputVerdict VerdictOf(std::string_view raw, v1::Encoding encoding,
                       absl::StatusOr<v1::Event> event, absl::Time clock) {
  InputVerdict v;
  if (!event.ok()) {
    v.rejection = {v1::UNDECODABLE, std::string(event.status().message())};
    // JSON that is well-formed but not an Event (a value of the wrong type, a bad
    // timestamp) often still names its event: keep the id, so the dead letter is
    // found by it (GET /v1/events/{id}).
    google::protobuf::Struct fields;
    if (encoding == v1::ENCODING_JSON &&
        google::protobuf::util::JsonStringToMessage(std::string(raw), &fields).ok()) {
      for (const char* name : {"eventId", "event_id"}) {
        auto it = fields.fields().find(name);
        if (it != fields.fields().end() && it->second.has_string_value()) {
          v.event.set_event_id(it->second.string_value());
          break;
        }
      }
    }
    return v;
  }
  v.event = std::move(*event);  // kept for a dead letter too: its event id is indexed
  if (auto r = ValidateEvent(v.event, clock)) {
    v.rejection = std::move(*r);
    return v;
  }
  v.canonical = CanonicalEncoding(v.event);
  v.digest = ContentDigest(v.canonical);
  v.ok = true;
  return v;
}

}  // namespace

InputVerdict CheckInput(std::string_view raw, v1::Encoding encoding, uint64_t full_size,
                        absl::Time clock) {
  const InputToCheck input{raw, encoding, full_size, clock};
  return std::move(CheckInputs({&input, 1})[0]);
}

std::vector<InputVerdict> CheckInputs(absl::Span<const InputToCheck> inputs) {
  std::vector<InputVerdict> verdicts(inputs.size());
  std::vector<std::string_view> json;
  std::vector<size_t> json_at;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputToCheck& in = inputs[i];
    const uint64_t size = in.full_size != 0 ? in.full_size : in.raw.size();
    if (size > kMaxMessageBytes) {
      verdicts[i].rejection = {v1::MESSAGE_TOO_LARGE,
                               absl::StrCat("the message is ", size, " bytes, over the limit of ",
                                            kMaxMessageBytes)};
    } else if (in.encoding == v1::ENCODING_JSON) {
      json.push_back(in.raw);
      json_at.push_back(i);
    } else {
      verdicts[i] = VerdictOf(in.raw, in.encoding, DecodeEvent(in.raw, in.encoding), in.clock);
    }
  }
  std::vector<absl::StatusOr<v1::Event>> events = DecodeJsonEvents(json);
  for (size_t k = 0; k < json_at.size(); ++k) {
    const InputToCheck& in = inputs[json_at[k]];
    verdicts[json_at[k]] = VerdictOf(in.raw, in.encoding, std::move(events[k]), in.clock);
  }
  return verdicts;
}

absl::StatusOr<std::string> AppliedDigest(const EventLog& log, uint64_t seq,
                                          const LogSnapshot* snapshot) {
  absl::StatusOr<v1::LogRecord> record = log.Read(seq, snapshot);
  if (!record.ok()) {
    return absl::DataLossError(absl::StrCat("the event-id index names record ", seq,
                                            ", which cannot be read: ",
                                            record.status().message()));
  }
  absl::StatusOr<v1::Event> event = RecordEvent(*record);
  if (!event.ok()) {
    return absl::DataLossError(absl::StrCat("the event-id index names record ", seq,
                                            ", whose event cannot be read: ",
                                            event.status().message()));
  }
  return ContentDigest(CanonicalEncoding(*event));
}

void IngestCounts::Add(const IngestCounts& o) {
  messages += o.messages;
  applied += o.applied;
  duplicates += o.duplicates;
  dead_letters += o.dead_letters;
  repeated_dead_letters += o.repeated_dead_letters;
  key_mismatches += o.key_mismatches;
  accepted += o.accepted;
  rejected += o.rejected;
  for (const auto& [reason, n] : o.dead_letters_by_reason) dead_letters_by_reason[reason] += n;
  last_seq = std::max(last_seq, o.last_seq);
}

Ingestor::~Ingestor() { FinishInFlight().IgnoreError(); }

absl::Status Ingestor::FinishInFlight() {
  if (!in_flight_commit_.valid()) return absl::OkStatus();
  absl::Status s = in_flight_commit_.get();
  in_flight_ = InFlight();
  if (s.ok()) stored_.Add(in_flight_counts_);
  if (processor_ != nullptr) {
    if (s.ok()) {
      processor_->Committed();
    } else {
      processor_->AbortBatch();
    }
  }
  return s;
}

absl::Status Ingestor::Flush() { return FinishInFlight(); }

absl::StatusOr<IngestCounts> Ingestor::IngestBatch(const std::vector<InputMessage>& batch) {
  const absl::Span<const InputMessage> all(batch);
  IngestCounts total;
  size_t at = 0;
  do {
    const size_t n = slice_messages_ == 0 ? all.size() - at
                                          : std::min(slice_messages_, all.size() - at);
    LOYALTY_ASSIGN_OR_RETURN(IngestCounts counts, IngestAppend(all.subspan(at, n)));
    total.Add(counts);
    at += n;
    if (processor_ == nullptr || n == 0) continue;
    // The next append takes as many messages as keep its states within the bound,
    // by this one's bytes per message; a whole batch when well within.
    const size_t bytes = processor_->LastBatchStateBytes();
    if (bytes > batch_state_bytes_ || slice_messages_ != 0) {
      const double fit = static_cast<double>(n) * static_cast<double>(batch_state_bytes_) /
                         static_cast<double>(std::max<size_t>(bytes, 1));
      slice_messages_ = std::max(kMinSliceMessages, static_cast<size_t>(fit));
    }
  } while (at < all.size());
  return total;
}

absl::StatusOr<IngestCounts> Ingestor::IngestAppend(absl::Span<const InputMessage> batch) {
  ++appends_;
  const bool after_in_flight = in_flight_commit_.valid();
  LogBatch out = after_in_flight ? log_->NewBatchAfter(in_flight_head_) : log_->NewBatch();
  absl::Status s;
  if (processor_ != nullptr) s = processor_->BeginBatch(&out);
  InFlight added;
  absl::StatusOr<IngestCounts> counts =
      s.ok() ? Build(batch, &out, pipelined_ ? &added : nullptr) : s;
  s = counts.status();
  if (s.ok() && processor_ != nullptr) s = processor_->EndBatch(&out);
  // The batch before this one (pipelined) is stored first, or this one is not.
  if (absl::Status before = FinishInFlight(); !before.ok()) {
    // The processor forgot this batch's changes with the failed one's.
    return absl::Status(before.code(),
                        absl::StrCat("the batch before this one failed to commit: ",
                                     before.message()));
  }
  if (s.ok()) {
    counts->last_seq = out.last_seq();
    if (pipelined_) {
      in_flight_head_ = LogHead{out.last_seq(), out.head_hash()};
      in_flight_ = std::move(added);
      in_flight_counts_ = *counts;
      in_flight_commit_ = std::async(std::launch::async, [log = log_, b = std::move(out)]() mutable {
        return log->Commit(std::move(b));
      });
      return counts;
    }
    s = log_->Commit(std::move(out));
  }
  if (!s.ok()) {
    if (processor_ != nullptr) processor_->AbortBatch();
    return s;
  }
  if (processor_ != nullptr) processor_->Committed();
  stored_.Add(*counts);
  return counts;
}

absl::StatusOr<size_t> Ingestor::Sweep() {
  if (processor_ == nullptr) return 0;
  LOYALTY_RETURN_IF_ERROR(FinishInFlight());
  LogBatch out = log_->NewBatch();
  absl::Status s = processor_->BeginBatch(&out);
  absl::StatusOr<bool> swept = false;
  if (s.ok()) {
    swept = processor_->Sweep(absl::ToUnixSeconds(clock_->Now()), &out);
    s = swept.status();
  }
  const size_t records = out.record_count();
  if (s.ok() && records == 0) {
    processor_->AbortBatch();  // nothing changed: nothing to write
    return 0;
  }
  if (s.ok()) s = processor_->EndBatch(&out);
  if (s.ok()) s = log_->Commit(std::move(out));
  if (!s.ok()) {
    processor_->AbortBatch();
    return s;
  }
  processor_->Committed();
  return records;
}

// Batches this large are checked on several threads (a thread costs tens of
// microseconds to start; a JSON message about ten to check).
constexpr size_t kParallelCheckFrom = 256;

absl::StatusOr<IngestCounts> Ingestor::Build(absl::Span<const InputMessage> batch,
                                             LogBatch* out_batch, InFlight* added) {
  LogBatch& out = *out_batch;
  IngestCounts counts;
  counts.messages = batch.size();
  if (batch.empty()) return counts;

  // One clock reading per batch: every record of the batch keeps it, and
  // validation of occurred_at uses exactly that reading.
  const absl::Time now = absl::FromUnixMicros(absl::ToUnixMicros(clock_->Now()));
  std::vector<Decoded> decoded(batch.size());
  // Each message is checked on its own (a pure function of its bytes and `now`), so
  // large batches are split over threads; everything after is in order, here.
  auto check = [&](size_t from, size_t to) {
    std::vector<InputToCheck> inputs;
    inputs.reserve(to - from);
    for (size_t i = from; i < to; ++i) {
      decoded[i].encoding = DetectEncoding(batch[i].raw, batch[i].json_content_type);
      inputs.push_back({batch[i].raw, decoded[i].encoding, batch[i].full_size, now});
    }
    std::vector<InputVerdict> verdicts = CheckInputs(inputs);
    for (size_t i = from; i < to; ++i) {
      Decoded& d = decoded[i];
      d.input = std::move(verdicts[i - from]);
      d.verdict = d.input.ok ? Verdict::kApply : Verdict::kDeadLetter;
    }
  };
  const size_t threads =
      batch.size() >= kParallelCheckFrom ? static_cast<size_t>(decode_threads_) : 1;
  std::vector<std::thread> helpers;
  for (size_t k = 1; k < threads; ++k) {
    helpers.emplace_back(check, batch.size() * k / threads, batch.size() * (k + 1) / threads);
  }
  check(0, batch.size() / threads);
  for (std::thread& t : helpers) t.join();

  if (processor_ != nullptr) {
    std::vector<std::string_view> customers;
    customers.reserve(batch.size());
    for (const Decoded& d : decoded) {
      if (d.verdict == Verdict::kApply) customers.push_back(d.input.event.customer_id());
    }
    processor_->Prefetch(customers);
  }

  // Idempotency by event_id, against committed state and earlier messages of this
  // batch. Only applied events reserve an id.
  std::vector<std::string_view> ids;
  std::vector<size_t> id_index;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (decoded[i].verdict != Verdict::kApply) continue;
    ids.push_back(decoded[i].input.event.event_id());
    id_index.push_back(i);
  }
  std::vector<std::optional<EventIdEntry>> committed;
  LOYALTY_RETURN_IF_ERROR(log_->LookupEventIds(ids, &committed));
  absl::flat_hash_map<std::string_view, std::string_view> batch_ids;  // id -> digest
  std::string stored_digest;
  for (size_t j = 0; j < ids.size(); ++j) {
    Decoded& d = decoded[id_index[j]];
    std::optional<std::string_view> seen;
    if (committed[j].has_value()) {
      // A repeat of a stored event (a few percent of input): its record says
      // whether the content is the same.
      LOYALTY_ASSIGN_OR_RETURN(stored_digest, AppliedDigest(*log_, committed[j]->seq));
      seen = stored_digest;
    } else if (auto it = in_flight_.event_ids.find(absl::string_view(ids[j].data(), ids[j].size()));
               it != in_flight_.event_ids.end()) {
      seen = it->second;
    } else if (auto it = batch_ids.find(ids[j]); it != batch_ids.end()) {
      seen = it->second;
    }
    if (!seen.has_value()) {
      batch_ids.emplace(ids[j], d.input.digest);
    } else if (*seen == d.input.digest) {
      d.verdict = Verdict::kDuplicate;
    } else {
      d.verdict = Verdict::kDeadLetter;
      d.input.rejection = {v1::EVENT_ID_CONFLICT,
                     absl::StrCat("event_id '", std::string(ids[j]),
                                  "' was already applied with different content")};
    }
  }

  // A dead letter already logged for the same input position with the same bytes
  // is a redelivery of it (a file ingested again, a batch retried).
  std::vector<std::string> dl_keys;
  std::vector<size_t> dl_index;
  std::vector<std::string> raw_sha(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (decoded[i].verdict != Verdict::kDeadLetter) continue;
    raw_sha[i] = batch[i].full_size != 0 ? batch[i].full_sha256
                                         : std::string(DigestView(Sha256Of(batch[i].raw)));
    dl_keys.push_back(internal::PositionKey(batch[i].source));
    dl_index.push_back(i);
  }
  std::vector<std::optional<DeadLetterEntry>> dl_committed;
  LOYALTY_RETURN_IF_ERROR(log_->LookupDeadLetters(dl_keys, &dl_committed));
  std::vector<bool> repeated_dl(batch.size(), false);
  for (size_t j = 0; j < dl_keys.size(); ++j) {
    // The batch in flight wrote over the stored entry for its positions.
    if (auto it = in_flight_.dead_letters.find(dl_keys[j]); it != in_flight_.dead_letters.end()) {
      repeated_dl[dl_index[j]] = it->second == raw_sha[dl_index[j]];
    } else if (dl_committed[j].has_value()) {
      repeated_dl[dl_index[j]] = dl_committed[j]->raw_sha256 == raw_sha[dl_index[j]];
    }
  }

  google::protobuf::Timestamp ingested_at =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
  std::vector<std::string> customers;
  for (size_t i = 0; i < batch.size(); ++i) {
    const InputMessage& m = batch[i];
    Decoded& d = decoded[i];
    // The last position of each source wins: only the last of a run of messages
    // from one source needs setting (a run is a Kafka partition's or a file's).
    if (i + 1 == batch.size() || !internal::SameSource(m.source, batch[i + 1].source)) {
      out.SetSourcePosition(m.source);
    }
    if (d.verdict == Verdict::kDuplicate) {
      ++counts.duplicates;
      continue;
    }
    if (d.verdict == Verdict::kDeadLetter && repeated_dl[i]) {
      ++counts.repeated_dead_letters;
      continue;
    }
    v1::LogRecord record;
    *record.mutable_ingested_at() = ingested_at;
    *record.mutable_source() = m.source;
    record.set_raw(m.raw);
    record.set_encoding(d.encoding);
    record.set_key(m.key);
    if (d.verdict == Verdict::kApply) {
      v1::Applied* applied = record.mutable_applied();
      // The record holds the event unless raw is its canonical encoding. It is
      // lent to the record (moved, not copied) and given back once the record is
      // serialized: batch_ids views its id.
      const bool holds_event = d.encoding != v1::ENCODING_PROTOBUF || d.input.canonical != m.raw;
      if (holds_event) *applied->mutable_event() = std::move(d.input.event);
      const v1::Event& event = holds_event ? applied->event() : d.input.event;
      customers.clear();
      customers.push_back(event.customer_id());
      if (processor_ != nullptr) {
        LOYALTY_RETURN_IF_ERROR(processor_->Process(event, out.next_seq(), applied, &customers));
        if (applied->outcome().status() == v1::ACCEPTED) {
          ++counts.accepted;
        } else {
          ++counts.rejected;
        }
      }
      const uint64_t seq = out.Append(&record);
      if (holds_event) d.input.event = std::move(*applied->mutable_event());
      out.IndexEventId(d.input.event.event_id(), seq);
      std::sort(customers.begin(), customers.end());
      customers.erase(std::unique(customers.begin(), customers.end()), customers.end());
      for (const std::string& customer : customers) out.IndexCustomer(customer, seq);
      ++counts.applied;
      if (!m.key.empty() && m.key != d.input.event.customer_id()) ++counts.key_mismatches;
    } else {
      v1::DeadLetter* dl = record.mutable_dead_letter();
      dl->set_reason(d.input.rejection.reason);
      dl->set_detail(d.input.rejection.detail);
      if (m.full_size != 0) {
        dl->set_raw_size(m.full_size);
        dl->set_raw_sha256(m.full_sha256);
      }
      const uint64_t seq = out.Append(&record);
      out.IndexDeadLetter(m.source, seq, raw_sha[i]);
      if (added != nullptr) added->dead_letters[internal::PositionKey(m.source)] = raw_sha[i];
      if (!d.input.event.event_id().empty() && d.input.event.event_id().size() <= kMaxIdBytes) {
        out.IndexDeadLetterEventId(d.input.event.event_id(), seq);
      }
      ++counts.dead_letters;
      ++counts.dead_letters_by_reason[d.input.rejection.reason];
    }
  }
  if (added != nullptr) {
    added->event_ids.reserve(batch_ids.size());
    for (const auto& [id, digest] : batch_ids) added->event_ids.emplace(std::string(id), std::string(digest));
  }
  return counts;
}

}  // namespace loyalty
