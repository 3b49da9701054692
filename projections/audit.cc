#include "projections/audit.h"

#include <any>
#include <atomic>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/event_codec.h"
#include "engine/ingestor.h"
#include "engine/log_verify.h"
#include "engine/sha256.h"
#include "engine/status_macros.h"
#include "engine/validation.h"
#include "projections/ledger.h"
#include "projections/replay.h"
#include "projections/state_store.h"

namespace loyalty {
namespace {


// Stops a scan with a finding recorded in the report.
absl::Status Fail(AuditReport* report, const std::string& check, uint64_t seq,
                  std::string problem) {
  report->ok = false;
  report->check = check;
  report->first_bad_seq = seq;
  report->problem = std::move(problem);
  return absl::CancelledError("audit finding");
}

absl::Time RecordClock(const v1::LogRecord& record) {
  return absl::FromUnixSeconds(record.ingested_at().seconds()) +
         absl::Nanoseconds(record.ingested_at().nanos());
}

// What is found for an input record ahead of the replay, on the replay's
// preparing thread (ReplayPrepare): the input's verdict now (CheckInput), whether
// the decoded event the record stores is the one its raw bytes give now, and what
// the event-id index holds for the event (one read for a chunk of records).
struct Prepared {
  InputVerdict verdict;
  bool stored_event_matches = true;
  std::optional<EventIdEntry> indexed;
  absl::Status index_read;  // reading the index failed
};

std::vector<std::any> PrepareChunk(const EventLog& log, const AuditOptions& options,
                                   absl::Span<const PrepareItem> records) {
  std::vector<InputToCheck> inputs;
  std::vector<size_t> at;
  for (size_t i = 0; i < records.size(); ++i) {
    const v1::LogRecord& record = *records[i].record;
    if (records[i].seq < options.from_seq || record.has_program() || record.has_sweep()) {
      continue;
    }
    inputs.push_back({record.raw(), record.encoding(), record.dead_letter().raw_size(),
                      RecordClock(record)});
    at.push_back(i);
  }
  std::vector<InputVerdict> verdicts = CheckInputs(inputs);
  std::vector<Prepared> found(at.size());
  std::vector<std::string_view> ids;
  std::vector<size_t> looked_up;
  for (size_t k = 0; k < at.size(); ++k) {
    const v1::LogRecord& record = *records[at[k]].record;
    Prepared& p = found[k];
    p.verdict = std::move(verdicts[k]);
    if (!p.verdict.ok) continue;
    if (record.has_applied() && record.applied().has_event()) {
      p.stored_event_matches = SerializeDeterministic(record.applied().event()) ==
                               p.verdict.canonical;
    }
    if (record.has_applied() ||
        record.dead_letter().reason() == v1::EVENT_ID_CONFLICT) {
      ids.push_back(p.verdict.event.event_id());
      looked_up.push_back(k);
    }
  }
  std::vector<std::optional<EventIdEntry>> entries;
  const absl::Status read = ids.empty() ? absl::OkStatus() : log.LookupEventIds(ids, &entries);
  for (size_t j = 0; j < looked_up.size(); ++j) {
    Prepared& p = found[looked_up[j]];
    p.index_read = read;
    if (read.ok()) p.indexed = entries[j];
  }
  std::vector<std::any> prepared(records.size());
  for (size_t k = 0; k < at.size(); ++k) prepared[at[k]] = std::move(found[k]);
  return prepared;
}

// Check 3 for one record, given what was found for it ahead of the replay.
absl::Status CheckValidation(const EventLog& log, uint64_t seq, const v1::LogRecord& record,
                             const Prepared* prepared, AuditReport* report) {
  if (record.has_program() || record.has_sweep()) return absl::OkStatus();
  if (prepared == nullptr) return absl::InternalError("no verdict for an input record");
  const InputVerdict& v = prepared->verdict;
  if (record.has_dead_letter()) {
    ++report->dead_letters;
    const v1::DeadLetterReason reason = record.dead_letter().reason();
    if (reason == v1::EVENT_ID_CONFLICT) {
      if (!v.ok) {
        return Fail(report, "validation", seq,
                    absl::StrCat("EVENT_ID_CONFLICT, but the input is invalid: ",
                                 v.rejection.detail));
      }
      LOYALTY_RETURN_IF_ERROR(prepared->index_read);
      const std::optional<EventIdEntry>& found = prepared->indexed;
      std::string earlier;
      if (found.has_value() && found->seq < seq) {
        absl::StatusOr<std::string> digest = AppliedDigest(log, found->seq);
        if (!digest.ok()) {
          return Fail(report, "validation", seq, std::string(digest.status().message()));
        }
        earlier = *std::move(digest);
      }
      if (earlier.empty() || earlier == v.digest) {
        return Fail(report, "validation", seq,
                    absl::StrCat("EVENT_ID_CONFLICT, but no earlier event '", v.event.event_id(),
                                 "' with other content is indexed"));
      }
      return absl::OkStatus();
    }
    if (v.ok) {
      return Fail(report, "validation", seq,
                  absl::StrCat("dead letter ", v1::DeadLetterReason_Name(reason),
                               ", but the input validates now"));
    }
    if (v.rejection.reason != reason) {
      return Fail(report, "validation", seq,
                  absl::StrCat("dead letter ", v1::DeadLetterReason_Name(reason),
                               ", but validation now says ",
                               v1::DeadLetterReason_Name(v.rejection.reason)));
    }
    return absl::OkStatus();
  }
  if (!record.has_applied()) return Fail(report, "validation", seq, "a record with no body");
  ++report->events;
  if (!v.ok) {
    return Fail(report, "validation", seq,
                absl::StrCat("applied, but the input is a dead letter now: ",
                             v1::DeadLetterReason_Name(v.rejection.reason), ": ",
                             v.rejection.detail));
  }
  if (!prepared->stored_event_matches) {
    return Fail(report, "validation", seq, "the stored decoded event differs from its raw bytes");
  }
  LOYALTY_RETURN_IF_ERROR(prepared->index_read);
  const std::optional<EventIdEntry>& found = prepared->indexed;
  if (!found.has_value() || found->seq != seq) {
    return Fail(report, "validation", seq,
                absl::StrCat("the event-id index does not hold event '", v.event.event_id(),
                             "' at this record (applied twice, or the index was altered)"));
  }
  return absl::OkStatus();
}

// Compares a live projection column family with what the replay rebuilt (`rebuilt`,
// in key order; `bytes_of` gives a value's stored bytes), key by key. The first
// difference fails the report as a "projections" finding, naming the `noun` by
// `name_of(key)`; an error is one of reading the store.
template <typename Map, typename BytesOf, typename NameOf>
absl::Status CompareProjection(const EventLog& log, LogBatch::ProjectionCf cf,
                               const Map& rebuilt, const BytesOf& bytes_of,
                               const char* noun, const char* value_noun,
                               const NameOf& name_of, AuditReport* report) {
  auto next = rebuilt.begin();
  absl::Status s = log.ScanProjection(
      cf, [&](std::string_view key, std::string_view value) -> absl::Status {
        if (next == rebuilt.end() || next->first != key) {
          return Fail(report, "projections", 0,
                      next == rebuilt.end() || std::string_view(next->first) > key
                          ? absl::StrCat("the live projections hold ", noun, " ", name_of(key),
                                         ", which the log does not")
                          : absl::StrCat("the live projections lack ", noun, " ",
                                         name_of(next->first)));
        }
        if (bytes_of(next->second) != value) {
          return Fail(report, "projections", 0,
                      absl::StrCat("the live ", value_noun, " of ", noun, " ",
                                   name_of(next->first),
                                   " differs from the one rebuilt from the log"));
        }
        ++next;
        return absl::OkStatus();
      });
  if (!report->ok) return absl::OkStatus();
  LOYALTY_RETURN_IF_ERROR(s);
  if (next != rebuilt.end()) {
    Fail(report, "projections", 0,
         absl::StrCat("the live projections lack ", noun, " ", name_of(next->first)))
        .IgnoreError();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AuditReport> AuditLog(
    const EventLog& log, const AuditOptions& options,
    const std::function<void(const std::string&, uint64_t)>& progress) {
  AuditReport report;
  absl::Mutex progress_mu;  // the chain and the replay report progress at once
  auto phase = [&](const char* name) {
    return [&progress, &progress_mu, name](uint64_t n) {
      if (!progress) return;
      absl::MutexLock lock(&progress_mu);
      progress(name, n);
    };
  };

  // 1. chain, on a thread of its own while the replay (3 and 4) reads the same
  // records, so that the two share the cores. Its findings still come first: the
  // replay's count only once the chain holds, and the replay stops early when it
  // does not.
  absl::StatusOr<VerifyReport> chain_or;
  std::atomic<bool> chain_failed{false};
  std::thread chain_thread([&] {
    chain_or = VerifyLog(log, phase("chain"));
    if (!chain_or.ok() || !chain_or->ok) chain_failed = true;
  });

  // 3 and 4: validation and decisions, in one replay. Each input's verdict, and
  // what the event-id index holds for it, are found again ahead of the replay,
  // on its preparing thread. The records after the chain's head (if any) are
  // replayed too; a chain that holds ends at the log's last record.
  AuditReport replayed;  // the replay's findings
  absl::StatusOr<ReplayResult> replay = ReplayLog(
      log, options.to_seq, phase("replay"),
      [&](uint64_t seq, const v1::LogRecord& record, const v1::Event*,
          const v1::Outcome* redecided, bool same_outcome,
          const std::any& prepared) -> absl::Status {
        if (chain_failed) return absl::CancelledError("the chain does not hold");
        if (seq < options.from_seq) return absl::OkStatus();
        LOYALTY_RETURN_IF_ERROR(CheckValidation(log, seq, record,
                                                std::any_cast<Prepared>(&prepared), &replayed));
        if (redecided != nullptr && !same_outcome) {
          return Fail(&replayed, "decision", seq,
                      absl::StrCat("recorded outcome ", record.applied().outcome().ShortDebugString(),
                                   "; the rules give ", redecided->ShortDebugString()));
        }
        return absl::OkStatus();
      },
      [&](absl::Span<const PrepareItem> records) { return PrepareChunk(log, options, records); });
  chain_thread.join();
  LOYALTY_RETURN_IF_ERROR(chain_or.status());
  const VerifyReport& chain = *chain_or;
  report.records = chain.records;
  report.head = chain.head;
  if (!chain.ok) {
    Fail(&report, "chain", chain.first_bad_seq, chain.problem).IgnoreError();
    return report;
  }
  const uint64_t to = std::min(options.to_seq, chain.head.seq);

  // 2. digest
  if (options.digest_seq != 0) {
    if (options.digest_seq > chain.head.seq) {
      Fail(&report, "digest", options.digest_seq,
           absl::StrCat("the digest names sequence ", options.digest_seq,
                        " but the log ends at ", chain.head.seq, ": records were removed"))
          .IgnoreError();
      return report;
    }
    // The chain up to the head was proved above, so the hash at digest_seq is
    // the one the chain gives there.
    LOYALTY_ASSIGN_OR_RETURN(Sha256Digest at, log.ChainHashAt(options.digest_seq));
    const std::string stored = DigestHex(DigestView(at));
    if (stored != options.digest_hash_hex) {
      Fail(&report, "digest", options.digest_seq,
           absl::StrCat("the kept digest is ", options.digest_hash_hex, " but the log now has ",
                        stored, ": the log was rewritten up to here"))
          .IgnoreError();
      return report;
    }
  }

  report.events = replayed.events;
  report.dead_letters = replayed.dead_letters;
  if (!replayed.ok) {
    report.ok = false;
    report.check = replayed.check;
    report.first_bad_seq = replayed.first_bad_seq;
    report.problem = replayed.problem;
    return report;
  }
  if (!replay.ok()) return replay.status();
  // A recorded outcome that differs stopped the replay above; what is left are the
  // signals (projections/signals.h), of events and of sweeps.
  if (replay->first_mismatch_seq >= options.from_seq && replay->first_mismatch_seq != 0) {
    Fail(&report, "decision", replay->first_mismatch_seq, replay->mismatch).IgnoreError();
    return report;
  }
  report.customers = replay->states.size();

  // 5. projections
  if (options.compare_projections && to == chain.head.seq) {
    // A state as stored: its head (customer_state), which names its chunks by
    // their SHA-256, and the chunks (state_chunks).
    std::map<std::string, std::string> chunks;
    LOYALTY_RETURN_IF_ERROR(CompareProjection(
        log, LogBatch::ProjectionCf::kCustomerState, replay->states,
        [&chunks](const std::unique_ptr<v1::CustomerState>& state) {
          const std::string bytes = SerializeDeterministic(*state);
          EncodedState encoded = EncodeState(state->customer_id(), bytes);
          for (const auto& [key, chunk] : encoded.chunks) chunks.emplace(key, chunk);
          return std::move(encoded.head);
        },
        "customer", "state", [](std::string_view key) { return absl::StrCat("'", std::string(key), "'"); },
        &report));
    if (!report.ok) return report;
    LOYALTY_RETURN_IF_ERROR(CompareProjection(
        log, LogBatch::ProjectionCf::kStateChunks, chunks,
        [](const std::string& value) { return value; }, "state chunk", "bytes",
        [](std::string_view key) { return absl::CHexEscape(std::string(key)); }, &report));
    if (!report.ok) return report;
    LOYALTY_RETURN_IF_ERROR(CompareProjection(
        log, LogBatch::ProjectionCf::kDecisionIds, replay->decision_ids,
        [](const std::string& value) { return value; }, "decision id", "value",
        [](std::string_view key) { return absl::CHexEscape(std::string(key)); }, &report));
    if (!report.ok) return report;
  }

  // 6. conservation
  if (replay->program.version() > 0) {
    const Rules rules(replay->program.program());
    for (const auto& [id, state] : replay->states) {
      const v1::LedgerState& l = state->ledger();
      for (int64_t t : {l.clock(), l.clock() + rules.pending_s, l.clock() + rules.expiry_s,
                        l.clock() + rules.pending_s + rules.expiry_s, std::max(options.now, l.clock())}) {
        const BalanceView b = EvaluateBalance(rules, l, t);
        if (b.earned != b.available + b.pending + b.redeemed + b.reversed + b.adjusted_out +
                            b.expired) {
          Fail(&report, "conservation", 0,
               absl::StrCat("customer '", id, "' at ", t, ": earned ", b.earned, " != available ",
                            b.available, " + pending ", b.pending, " + redeemed ", b.redeemed,
                            " + reversed ", b.reversed, " + adjusted_out ", b.adjusted_out,
                            " + expired ", b.expired))
              .IgnoreError();
          return report;
        }
      }
    }
  }
  return report;
}

}  // namespace loyalty
