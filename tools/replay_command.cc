// `loyalty replay`: the audit tool. `verify` checks the gapless sequence and the
// whole hash chain, read-only, beside a writer.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "engine/event_log.h"
#include "engine/log_verify.h"
#include "engine/sha256.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace loyalty {
namespace {

struct ReplayArgs {
  std::string data_dir;
};

int RunVerify(const ReplayArgs& args) {
  LogOptions options;
  options.data_dir = args.data_dir;
  options.read_only = true;
  auto log = EventLog::Open(options);
  if (!log.ok()) {
    std::fprintf(stderr, "loyalty replay verify: %s\n",
                 std::string(log.status().message()).c_str());
    return 1;
  }
  Progress progress;
  auto report = VerifyLog(**log, [&](uint64_t n) {
    progress.Update(absl::StrFormat("verify: %d records", n));
  });
  progress.Done();
  if (!report.ok()) {
    std::fprintf(stderr, "loyalty replay verify: %s\n",
                 std::string(report.status().message()).c_str());
    return 1;
  }
  if (!report->ok) {
    std::printf("FAILED at sequence %llu: %s\n",
                static_cast<unsigned long long>(report->first_bad_seq),
                report->problem.c_str());
    std::printf("records before it verified: %llu\n",
                static_cast<unsigned long long>(report->records));
    return 1;
  }
  std::printf("verified %llu records: sequence gapless from 1, hash chain intact\n",
              static_cast<unsigned long long>(report->records));
  std::printf("head: seq %llu, hash %s\n", static_cast<unsigned long long>(report->head.seq),
              DigestHex(DigestView(report->head.hash)).c_str());
  return 0;
}

}  // namespace

void AddReplayCommand(CLI::App& app, int* exit_code) {
  CLI::App* replay = app.add_subcommand("replay", "The audit tool: prove every point from the log");
  replay->require_subcommand(1);
  auto args = std::make_shared<ReplayArgs>();
  CLI::App* verify = replay->add_subcommand(
      "verify", "Check the gapless sequence and the whole hash chain (read-only)");
  verify->add_option("--data-dir", args->data_dir, "the engine's data directory")->required();
  verify->callback([args, exit_code] { *exit_code = RunVerify(*args); });
}

}  // namespace loyalty
