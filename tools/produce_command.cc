// `loyalty produce`: a realistic synthetic event stream for demos and load.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_format.h"
#include "tools/commands.h"
#include "tools/produce.h"
#include "tools/progress.h"

namespace loyalty {
namespace {

struct ProduceArgs {
  std::string file;
  std::string format = "json";
  uint64_t rate = 0;
  ProduceOptions options;
};

int RunProduce(ProduceArgs args) {
  if (args.format != "json") {
    std::fprintf(stderr,
                 "loyalty produce: --format %s cannot be written to a JSON-lines file\n",
                 args.format.c_str());
    return 2;
  }
  args.options.format = ProduceFormat::kJson;
  FILE* out = args.file == "-" ? stdout : std::fopen(args.file.c_str(), "wb");
  if (out == nullptr) {
    std::fprintf(stderr, "loyalty produce: cannot write %s\n", args.file.c_str());
    return 1;
  }
  Progress progress;
  uint64_t written = 0;
  const auto start = std::chrono::steady_clock::now();
  bool io_error = false;
  GenerateStream(args.options, [&](std::string_view, std::string_view value) {
    if (std::fwrite(value.data(), 1, value.size(), out) != value.size() ||
        std::fputc('\n', out) == EOF) {
      io_error = true;
      return false;
    }
    ++written;
    if (args.rate > 0) {
      // Paced: message n is due n/rate seconds after the start.
      const auto due = start + std::chrono::microseconds(written * 1'000'000 / args.rate);
      std::this_thread::sleep_until(due);
    }
    if ((written & 0x3ff) == 0) {
      progress.Update(absl::StrFormat("produce: %d of %d events", written,
                                      args.options.events));
    }
    return true;
  });
  progress.Done();
  if (out != stdout && std::fclose(out) != 0) io_error = true;
  if (io_error) {
    std::fprintf(stderr, "loyalty produce: writing %s failed\n", args.file.c_str());
    return 1;
  }
  std::fprintf(stderr, "produced %llu events for %llu customers to %s\n",
               static_cast<unsigned long long>(written),
               static_cast<unsigned long long>(args.options.customers), args.file.c_str());
  return 0;
}

}  // namespace

void AddProduceCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ProduceArgs>();
  CLI::App* cmd = app.add_subcommand(
      "produce",
      "Generate a realistic synthetic stream (skewed customers, refunds, referrals, "
      "redemptions, a share of malformed input)");
  cmd->add_option("--file", args->file, "write JSON lines to this file (- for stdout)")
      ->required();
  cmd->add_option("--customers", args->options.customers, "distinct customers")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  cmd->add_option("--events", args->options.events, "messages to generate")
      ->check(CLI::Range(uint64_t{0}, uint64_t{10'000'000'000}));
  cmd->add_option("--rate", args->rate, "messages per second (0: as fast as possible)");
  cmd->add_option("--format", args->format, "json or protobuf")
      ->check(CLI::IsMember({"json", "protobuf"}));
  cmd->add_option("--seed", args->options.seed, "random seed (the same seed, the same stream)");
  cmd->add_option("--malformed-share", args->options.malformed_share,
                  "share of deliberately bad messages")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--duplicate-share", args->options.duplicate_share,
                  "share of re-sent messages")
      ->check(CLI::Range(0.0, 1.0));
  cmd->callback([args, exit_code] { *exit_code = RunProduce(*args); });
}

}  // namespace loyalty
