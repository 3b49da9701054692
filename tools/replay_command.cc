// `loyalty replay`: the audit tool (docs/audit.md). Every subcommand here opens the
// store read-only (a RocksDB secondary instance), so it runs beside a live serve.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/clock.h"
#include "engine/event_codec.h"
#include "engine/event_log.h"
#include "engine/sha256.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/time_util.h"
#include "projections/audit.h"
#include "projections/ledger.h"
#include "projections/ledger_reader.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "projections/replay.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace loyalty {
namespace {

using google::protobuf::util::TimeUtil;

struct ReplayArgs {
  std::string data_dir;
  uint64_t to_seq = UINT64_MAX;
  uint64_t from_seq = 1;
  std::string digest_file;
  std::string out;
  std::string customer;
  std::string from, to, as_of, since, until;
  std::string format = "text";
};

int Fail(const char* command, const std::string& message) {
  std::fprintf(stderr, "loyalty replay %s: %s\n", command, message.c_str());
  return 1;
}

absl::StatusOr<std::unique_ptr<EventLog>> OpenReadOnly(const std::string& dir) {
  LogOptions options;
  options.data_dir = dir;
  options.read_only = true;
  return EventLog::Open(options);
}

// An RFC 3339 time, or `fallback` when empty.
absl::StatusOr<int64_t> ParseTimeArg(const char* name, const std::string& text, int64_t fallback) {
  if (text.empty()) return fallback;
  google::protobuf::Timestamp ts;
  if (!TimeUtil::FromString(text, &ts)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " '", text, "' is not an RFC 3339 time"));
  }
  return ts.seconds();
}

std::string TimeText(int64_t t) { return TimeUtil::ToString(TimeUtil::SecondsToTimestamp(t)); }

std::string SourceText(const v1::SourcePosition& p) {
  if (p.has_kafka()) {
    return absl::StrCat(p.kafka().topic(), ":", p.kafka().partition(), ":", p.kafka().offset());
  }
  if (p.has_file()) return absl::StrCat(p.file().path(), ":", p.file().line());
  return "";
}


std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

// ------------------------------------------------------------------ verify

int RunVerify(const ReplayArgs& args) {
  auto log = OpenReadOnly(args.data_dir);
  if (!log.ok()) return Fail("verify", std::string(log.status().message()));
  AuditOptions options;
  options.from_seq = args.from_seq;
  options.to_seq = args.to_seq;
  options.now = absl::ToUnixSeconds(RealClock()->Now());
  if (!args.digest_file.empty()) {
    std::ifstream in(args.digest_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      return Fail("verify", absl::StrCat("cannot read ", args.digest_file));
    }
    // "loyalty-digest seq=N sha256=HEX"
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, "seq=")) {
        if (!absl::SimpleAtoi(field, &options.digest_seq)) options.digest_seq = 0;
      } else if (absl::ConsumePrefix(&field, "sha256=")) {
        options.digest_hash_hex = std::string(field);
      }
    }
    if (options.digest_seq == 0 || options.digest_hash_hex.size() != 64) {
      return Fail("verify", absl::StrCat(args.digest_file, " is not a `loyalty replay digest`"));
    }
  }
  Progress progress;
  auto report = AuditLog(**log, options, [&](const std::string& phase, uint64_t n) {
    progress.Update(absl::StrFormat("verify: %s, %d records", phase, n));
  });
  progress.Done();
  if (!report.ok()) return Fail("verify", std::string(report.status().message()));
  if (!report->ok) {
    if (report->first_bad_seq != 0) {
      std::printf("FAILED at sequence %llu (%s check): %s\n",
                  static_cast<unsigned long long>(report->first_bad_seq), report->check.c_str(),
                  report->problem.c_str());
    } else {
      std::printf("FAILED (%s check): %s\n", report->check.c_str(), report->problem.c_str());
    }
    return 1;
  }
  std::printf("verified %llu records: sequence gapless from 1, hash chain intact\n",
              static_cast<unsigned long long>(report->records));
  if (options.digest_seq != 0) {
    std::printf("digest: record %llu still has the kept hash\n",
                static_cast<unsigned long long>(options.digest_seq));
  }
  std::printf("validation: %llu events and %llu dead letters reach the same verdict again\n",
              static_cast<unsigned long long>(report->events),
              static_cast<unsigned long long>(report->dead_letters));
  std::printf("decisions: every outcome and entry re-derived exactly from the inputs\n");
  std::printf("projections: %llu customers rebuilt from the log equal the live state\n",
              static_cast<unsigned long long>(report->customers));
  std::printf("conservation: holds for every customer\n");
  std::printf("head: seq %llu, hash %s\n", static_cast<unsigned long long>(report->head.seq),
              DigestHex(DigestView(report->head.hash)).c_str());
  return 0;
}

// ------------------------------------------------------------------ digest

int RunDigest(const ReplayArgs& args) {
  auto log = OpenReadOnly(args.data_dir);
  if (!log.ok()) return Fail("digest", std::string(log.status().message()));
  const LogHead head = (*log)->head();
  const std::string line = absl::StrCat("loyalty-digest seq=", head.seq,
                                        " sha256=", DigestHex(DigestView(head.hash)));
  if (!args.out.empty()) {
    std::ofstream out(args.out);
    out << line << "\n";
    if (!out) return Fail("digest", absl::StrCat("cannot write ", args.out));
  }
  std::printf("%s\n", line.c_str());
  return 0;
}

// ------------------------------------------------------------------ statement

int RunStatement(const ReplayArgs& args) {
  if (args.format != "text" && args.format != "json" && args.format != "csv") {
    return Fail("statement", "--format must be text, json or csv");
  }
  auto log = OpenReadOnly(args.data_dir);
  if (!log.ok()) return Fail("statement", std::string(log.status().message()));
  const int64_t now = absl::ToUnixSeconds(RealClock()->Now());
  auto from = ParseTimeArg("--from", args.from, INT64_MIN);
  auto to = ParseTimeArg("--to", args.to, INT64_MAX);
  auto as_of = ParseTimeArg("--as-of", args.as_of, now);
  for (const auto* s : {&from, &to, &as_of}) {
    if (!s->ok()) return Fail("statement", std::string(s->status().message()));
  }
  auto stored = (*log)->GetProjection(LogBatch::ProjectionCf::kProjectionMeta, kMetaProgram);
  v1::ProgramChange program;
  if (stored.ok()) program.ParseFromString(*stored);
  const Rules rules(program.version() > 0 ? program.program() : DefaultProgram());
  LedgerReader reader(log->get(), &rules);
  // Every entry up to the later of --to and --as-of: the running balance needs the
  // entries before --from, the totals those up to --as-of.
  auto entries = reader.Entries(args.customer, INT64_MIN, std::max(*to, *as_of));
  if (!entries.ok()) return Fail("statement", std::string(entries.status().message()));
  if (entries->empty()) return Fail("statement", absl::StrCat("customer '", args.customer, "' is unknown"));

  if (args.format == "csv") {
    std::printf("time,kind,points,available_after,pending_after,event_id,source,seq,record_hash\n");
  }
  v1::LedgerState state;
  v1::LedgerState at_as_of;
  bool any_as_of = false;
  LogHead last_hash;  // the last entry's record and its chain hash
  for (const v1::LedgerEntry& e : *entries) {
    if (auto s = ApplyEntry(rules, e, &state); !s.ok()) {
      return Fail("statement", std::string(s.message()));
    }
    if (e.effective_at() <= *as_of) {
      at_as_of = state;
      any_as_of = true;
    }
    if (e.effective_at() < *from || e.effective_at() > *to) continue;
    const BalanceView b = EvaluateBalance(rules, state, e.effective_at());
    auto record = (*log)->Read(e.seq());
    // A record missing here shows as an empty hash; verify finds why. Entries come
    // in log order: each hash is computed on from the last one's when nearer.
    absl::StatusOr<Sha256Digest> chain_hash =
        e.seq() == last_hash.seq
            ? last_hash.hash
            : (*log)->ChainHashAt(e.seq(), nullptr, last_hash.seq != 0 ? &last_hash : nullptr);
    if (chain_hash.ok()) last_hash = LogHead{e.seq(), *chain_hash};
    const std::string hash = chain_hash.ok() ? DigestHex(DigestView(*chain_hash)) : "";
    const std::string source = record.ok() ? SourceText(record->source()) : "";
    const std::string kind = v1::EntryKind_Name(e.kind());
    if (args.format == "json") {
      google::protobuf::Struct line;
      auto& f = *line.mutable_fields();
      f["time"].set_string_value(TimeText(e.effective_at()));
      f["kind"].set_string_value(kind);
      f["points"].set_number_value(static_cast<double>(SignedPoints(e)));
      f["availableAfter"].set_number_value(static_cast<double>(b.available));
      f["pendingAfter"].set_number_value(static_cast<double>(b.pending));
      f["eventId"].set_string_value(e.event_id());
      f["source"].set_string_value(source);
      f["seq"].set_number_value(static_cast<double>(e.seq()));
      f["recordHash"].set_string_value(hash);
      std::printf("%s\n", ToJson(line).c_str());
    } else if (args.format == "csv") {
      std::printf("%s,%s,%lld,%lld,%lld,%s,%s,%llu,%s\n", TimeText(e.effective_at()).c_str(),
                  kind.c_str(), static_cast<long long>(SignedPoints(e)),
                  static_cast<long long>(b.available), static_cast<long long>(b.pending),
                  CsvField(e.event_id()).c_str(), CsvField(source).c_str(),
                  static_cast<unsigned long long>(e.seq()), hash.c_str());
    } else {
      std::printf("%s  %-20s %+10lld  available %8lld  pending %8lld  event %s  from %s  seq %llu  hash %.16s\n",
                  TimeText(e.effective_at()).c_str(), kind.c_str(),
                  static_cast<long long>(SignedPoints(e)), static_cast<long long>(b.available),
                  static_cast<long long>(b.pending), e.event_id().c_str(), source.c_str(),
                  static_cast<unsigned long long>(e.seq()), hash.c_str());
    }
  }
  if (!any_as_of) {
    std::fprintf(stderr, "customer '%s' is unknown as of %s: no totals\n", args.customer.c_str(),
                 TimeText(*as_of).c_str());
    return 0;
  }
  const BalanceView t = EvaluateBalance(rules, at_as_of, *as_of);
  const std::string totals = absl::StrFormat(
      "as of %s: available %d, pending %d, earned %d, redeemed %d, reversed %d, adjusted_out "
      "%d, expired %d, debt %d",
      TimeText(*as_of), t.available, t.pending, t.earned, t.redeemed, t.reversed, t.adjusted_out,
      t.expired, t.debt);
  if (args.format == "json") {
    google::protobuf::Struct line;
    auto& f = *(*line.mutable_fields())["totals"].mutable_struct_value()->mutable_fields();
    f["asOf"].set_string_value(TimeText(*as_of));
    for (const auto& [name, value] :
         {std::pair<const char*, int64_t>{"available", t.available}, {"pending", t.pending},
          {"earned", t.earned}, {"redeemed", t.redeemed}, {"reversed", t.reversed},
          {"adjustedOut", t.adjusted_out}, {"expired", t.expired}, {"debt", t.debt}}) {
      f[name].set_number_value(static_cast<double>(value));
    }
    std::printf("%s\n", ToJson(line).c_str());
  } else if (args.format == "csv") {
    std::printf("# %s\n", totals.c_str());
  } else {
    std::printf("%s\n", totals.c_str());
  }
  return 0;
}

// ------------------------------------------------------------------ export

int RunExport(const ReplayArgs& args) {
  if (args.format != "jsonl" && args.format != "csv") {
    return Fail("export", "--format must be jsonl or csv");
  }
  auto log = OpenReadOnly(args.data_dir);
  if (!log.ok()) return Fail("export", std::string(log.status().message()));
  auto since = ParseTimeArg("--since", args.since, INT64_MIN);
  auto until = ParseTimeArg("--until", args.until, INT64_MAX);
  for (const auto* s : {&since, &until}) {
    if (!s->ok()) return Fail("export", std::string(s->status().message()));
  }
  if (args.format == "csv") {
    std::printf("seq,event_id,customer_id,time,kind,points,order_id,redemption_id,lot_id,"
                "debt_added,debt_paid,expired_points,program_version,source\n");
  }
  Progress progress;
  uint64_t lines = 0;
  v1::LogRecord record;
  // Streams record by record: memory stays bounded whatever the log's size.
  absl::Status s = (*log)->Scan(
      args.from_seq, args.to_seq,
      [&](uint64_t seq, std::string_view, std::string_view bytes, std::string_view) -> absl::Status {
        if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
          return absl::DataLossError(absl::StrCat("record ", seq, " does not decode"));
        }
        if (!record.has_applied()) return absl::OkStatus();
        std::string event_id;
        if (record.applied().has_event()) {
          event_id = record.applied().event().event_id();
        } else {
          auto event = DecodeEvent(record.raw(), v1::ENCODING_PROTOBUF);
          if (event.ok()) event_id = event->event_id();
        }
        const v1::Outcome& o = record.applied().outcome();
        const std::string source = SourceText(record.source());
        for (const v1::LedgerEntry& e : o.entries()) {
          if (e.effective_at() < *since || e.effective_at() > *until) continue;
          if (args.format == "csv") {
            std::printf("%llu,%s,%s,%s,%s,%lld,%s,%s,%llu,%lld,%lld,%lld,%u,%s\n",
                        static_cast<unsigned long long>(seq), CsvField(event_id).c_str(),
                        CsvField(e.customer_id()).c_str(), TimeText(e.effective_at()).c_str(),
                        v1::EntryKind_Name(e.kind()).c_str(), static_cast<long long>(SignedPoints(e)),
                        CsvField(e.order_id()).c_str(), CsvField(e.redemption_id()).c_str(),
                        static_cast<unsigned long long>(e.lot_id()),
                        static_cast<long long>(e.debt_added()),
                        static_cast<long long>(e.debt_paid()),
                        static_cast<long long>(e.expired_points()), o.program_version(),
                        CsvField(source).c_str());
          } else {
            v1::LedgerEntry copy = e;
            copy.set_event_id(event_id);
            copy.set_seq(seq);
            std::printf("%s\n", ToJson(copy).c_str());
          }
          ++lines;
        }
        if ((seq & 0xfff) == 0) progress.Update(absl::StrFormat("export: record %d", seq));
        return absl::OkStatus();
      });
  progress.Done();
  if (!s.ok()) return Fail("export", std::string(s.message()));
  std::fflush(stdout);
  std::fprintf(stderr, "exported %llu entries\n", static_cast<unsigned long long>(lines));
  return 0;
}

// ------------------------------------------------------------------ rebuild

int RunRebuild(const ReplayArgs& args) {
  LogOptions options;
  options.data_dir = args.data_dir;
  auto log = EventLog::Open(options);
  if (!log.ok()) return Fail("rebuild", std::string(log.status().message()));
  Progress progress;
  const auto start = absl::Now();
  auto report = RebuildProjections(log->get(), [&](uint64_t n) {
    progress.Update(absl::StrFormat("rebuild: %d records", n));
  });
  progress.Done();
  if (!report.ok()) return Fail("rebuild", std::string(report.status().message()));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("rebuilt the projections of %llu customers from %llu records in %.2f s "
              "(%.0f records/s); generation %llu in force\n",
              static_cast<unsigned long long>(report->customers),
              static_cast<unsigned long long>(report->records), seconds,
              seconds > 0 ? report->records / seconds : 0.0,
              static_cast<unsigned long long>(report->generation));
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App& app, int* exit_code) {
  CLI::App* replay = app.add_subcommand(
      "replay", "The audit tool: prove every point from the log (read-only, beside a live serve)");
  replay->require_subcommand(1);
  auto args = std::make_shared<ReplayArgs>();

  CLI::App* verify = replay->add_subcommand(
      "verify",
      "Check the chain, re-validate every input, re-decide every event, compare the rebuilt "
      "projections and the conservation law");
  verify->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  verify->add_option("--from-seq", args->from_seq, "report findings from this sequence number");
  verify->add_option("--to-seq", args->to_seq, "check records up to this sequence number");
  verify->add_option("--digest", args->digest_file,
                     "a file from `replay digest`: prove the log up to it was not rewritten");
  verify->callback([args, exit_code] { *exit_code = RunVerify(*args); });

  CLI::App* digest = replay->add_subcommand(
      "digest", "Print the head sequence and hash, to keep outside the system");
  digest->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  digest->add_option("--out", args->out, "also write it to this file");
  digest->callback([args, exit_code] { *exit_code = RunDigest(*args); });

  CLI::App* statement = replay->add_subcommand(
      "statement", "Every ledger entry of one customer with its cause, running balance, totals");
  statement->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  statement->add_option("--customer", args->customer, "the customer id")->required();
  statement->add_option("--from", args->from, "first entry time (RFC 3339)");
  statement->add_option("--to", args->to, "last entry time (RFC 3339)");
  statement->add_option("--as-of", args->as_of, "totals as of this time (default: now)");
  statement->add_option("--format", args->format, "text, json or csv")
      ->check(CLI::IsMember({"text", "json", "csv"}));
  statement->callback([args, exit_code] { *exit_code = RunStatement(*args); });

  CLI::App* rebuild = replay->add_subcommand(
      "rebuild",
      "Rebuild every projection from the log and switch to it atomically (takes the "
      "directory's write lock)");
  rebuild->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  rebuild->callback([args, exit_code] { *exit_code = RunRebuild(*args); });

  CLI::App* exp = replay->add_subcommand(
      "export", "Stream the ledger for finance (bounded memory whatever the log's size)");
  exp->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  exp->add_option("--format", args->format, "jsonl or csv")
      ->check(CLI::IsMember({"jsonl", "csv"}))
      ->required();
  exp->add_option("--since", args->since, "first entry time (RFC 3339)");
  exp->add_option("--until", args->until, "last entry time (RFC 3339)");
  exp->add_option("--from-seq", args->from_seq, "first record");
  exp->add_option("--to-seq", args->to_seq, "last record");
  exp->callback([args, exit_code] { *exit_code = RunExport(*args); });
}

}  // namespace loyalty
