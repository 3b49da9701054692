// `loyalty ingest`: appends events from JSON lines through the same validation and
// idempotency path as Kafka messages.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "consumers/jsonl_reader.h"
#include "engine/clock.h"
#include "engine/event_log.h"
#include "engine/ingestor.h"
#include "engine/sha256.h"
#include "engine/validation.h"
#include "projections/program.h"
#include "projections/projector.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace loyalty {
namespace {

// Lines per batch: one WriteBatch and one WAL sync each (kDefaultBatchMessages).
constexpr size_t kDefaultBatchLines = kDefaultBatchMessages;
constexpr size_t kMaxBatchLines = 65536;

struct IngestArgs {
  std::string data_dir;
  std::string input;
  size_t batch_lines = kDefaultBatchLines;
  bool no_sync = false;
  bool print_commits = false;
  bool no_pipeline = false;
  std::string program_file;
};

int RunIngest(const IngestArgs& args) {
  LogOptions options;
  options.data_dir = args.data_dir;
  options.sync_writes = !args.no_sync;
  auto log = EventLog::Open(options);
  if (!log.ok()) {
    std::fprintf(stderr, "loyalty ingest: %s\n", std::string(log.status().message()).c_str());
    return 1;
  }
  auto program = LoadProgram(args.program_file);
  if (!program.ok()) {
    std::fprintf(stderr, "loyalty ingest: %s\n", std::string(program.status().message()).c_str());
    return 1;
  }
  auto projector = Projector::Open(log->get(), *program);
  if (!projector.ok()) {
    std::fprintf(stderr, "loyalty ingest: %s\n",
                 std::string(projector.status().message()).c_str());
    return 1;
  }
  auto reader = JsonLinesReader::Open(args.input);
  if (!reader.ok()) {
    std::fprintf(stderr, "loyalty ingest: %s\n",
                 std::string(reader.status().message()).c_str());
    return 1;
  }
  Ingestor ingestor(log->get(), RealClock(), projector->get());
  // The next batch is read and decided while the last one is written.
  ingestor.set_pipelined(!args.no_pipeline);
  IngestCounts total;
  Progress progress;
  const auto start = std::chrono::steady_clock::now();
  std::vector<InputMessage> batch;
  batch.reserve(args.batch_lines);
  // The batch handed to the ingestor last, not known stored until the next call
  // (or Flush) returns OK: its last line and record.
  struct Handed {
    uint64_t line = 0;
    uint64_t seq = 0;
  };
  std::optional<Handed> handed;
  auto print_commit = [&](const Handed& h) {
    if (!args.print_commits) return;
    // Printed only after the batch is durable: a test relies on it.
    std::printf("committed line=%llu seq=%llu\n", static_cast<unsigned long long>(h.line),
                static_cast<unsigned long long>(h.seq));
    std::fflush(stdout);
  };
  bool more = true;
  while (more) {
    batch.clear();
    auto got = (*reader)->Read(args.batch_lines, &batch);
    if (!got.ok()) {
      std::fprintf(stderr, "loyalty ingest: %s\n", std::string(got.status().message()).c_str());
      return 1;
    }
    more = *got;
    if (batch.empty()) continue;
    auto counts = ingestor.IngestBatch(batch);
    if (!counts.ok()) {
      // Pipelined, the failure may be the commit of the batch before this one: the
      // log says where the stored input ends.
      auto stored = (*log)->SourcePositionOf(batch.front().source);
      const std::string up_to =
          stored.ok() && stored->has_value()
              ? absl::StrCat("the log holds the input up to line ", (*stored)->file().line())
              : std::string("the log holds none of this input");
      std::fprintf(stderr, "loyalty ingest: stopped at line %llu (%s): %s\n",
                   static_cast<unsigned long long>(batch.front().source.file().line()),
                   up_to.c_str(), std::string(counts.status().message()).c_str());
      return 1;
    }
    if (handed.has_value()) print_commit(*handed);  // stored: this call returned OK
    total.Add(*counts);
    handed = Handed{batch.back().source.file().line(), counts->last_seq};
    if (!ingestor.pipelined()) {
      print_commit(*handed);
      handed.reset();
    }
    const uint64_t total_bytes = (*reader)->total_bytes();
    progress.Update(absl::StrFormat(
        "ingest: %d lines%s, %d appended, %d duplicate, %d dead-lettered",
        (*reader)->lines_read(),
        total_bytes > 0
            ? absl::StrFormat(" (%d%%)", (*reader)->bytes_read() * 100 / total_bytes)
            : "",
        total.applied, total.duplicates + total.repeated_dead_letters, total.dead_letters));
  }
  if (absl::Status s = ingestor.Flush(); !s.ok()) {
    std::fprintf(stderr, "loyalty ingest: the last batch (to line %llu) was not stored: %s\n",
                 static_cast<unsigned long long>(handed->line), std::string(s.message()).c_str());
    return 1;
  }
  if (handed.has_value()) print_commit(*handed);
  progress.Done();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const LogHead head = (*log)->head();
  std::printf("read %llu lines from %s (%llu blank) in %.2f s: %.0f lines/s\n",
              static_cast<unsigned long long>((*reader)->lines_read()), args.input.c_str(),
              static_cast<unsigned long long>((*reader)->blank_lines()), seconds,
              seconds > 0 ? (*reader)->lines_read() / seconds : 0.0);
  std::printf("  events accepted %llu, rejected by the rules %llu (program version %u)\n",
              static_cast<unsigned long long>(total.accepted),
              static_cast<unsigned long long>(total.rejected), (*projector)->program_version());
  for (const auto& [reason, n] : total.dead_letters_by_reason) {
    std::printf("  dead letter %-22s %llu\n", DeadLetterReasonName(reason).c_str(),
                static_cast<unsigned long long>(n));
  }
  if (total.repeated_dead_letters > 0) {
    std::printf("  dead letters already logged for their line: %llu\n",
                static_cast<unsigned long long>(total.repeated_dead_letters));
  }
  if (total.key_mismatches > 0) {
    std::printf("  key differs from customer_id: %llu\n",
                static_cast<unsigned long long>(total.key_mismatches));
  }
  std::printf("log head: seq %llu, hash %s\n", static_cast<unsigned long long>(head.seq),
              DigestHex(DigestView(head.hash)).c_str());
  std::printf("appended %llu, duplicate %llu, dead-lettered %llu\n",
              static_cast<unsigned long long>(total.applied),
              static_cast<unsigned long long>(total.duplicates + total.repeated_dead_letters),
              static_cast<unsigned long long>(total.dead_letters));
  return 0;
}

}  // namespace

void AddIngestCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<IngestArgs>();
  CLI::App* cmd = app.add_subcommand(
      "ingest",
      "Append events from JSON lines (one loyalty.v1.Event per line) through the same "
      "validation, idempotency and dead-letter path as Kafka messages");
  cmd->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  cmd->add_option("input", args->input, "a JSON-lines file, or - for standard input")
      ->required();
  cmd->add_option("--batch-lines", args->batch_lines,
                  "lines per atomic batch (one WAL sync each)")
      ->check(CLI::Range(size_t{1}, kMaxBatchLines));
  cmd->add_option("--program", args->program_file,
                  "the program settings (JSON, docs/program.md); default: rules.md's");
  cmd->add_flag("--no-sync", args->no_sync,
                "do not fsync the WAL per batch (survives a process crash, not an OS crash)");
  cmd->add_flag("--print-commits", args->print_commits,
                "print 'committed line=N seq=S' after each durable batch");
  cmd->add_flag("--no-pipeline", args->no_pipeline,
                "write each batch before reading the next (default: the next batch is "
                "read and decided while the last one is written)");
  cmd->callback([args, exit_code] { *exit_code = RunIngest(*args); });
}

}  // namespace loyalty
