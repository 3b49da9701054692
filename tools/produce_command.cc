// `loyalty produce`: a realistic synthetic event stream for demos and load.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "engine/clock.h"
#include "consumers/kafka_producer.h"
#include "consumers/mock_cluster.h"
#include "tools/commands.h"
#include "tools/produce.h"
#include "tools/progress.h"

namespace loyalty {
namespace {

struct ProduceArgs {
  std::string file;
  std::string brokers;
  std::string topic = kDefaultEventsTopic;
  std::vector<std::string> kafka_config;
  std::string start;  // RFC 3339; empty: the stream ends at today's midnight UTC
  std::string format = "json";
  uint64_t rate = 0;
  int64_t span_days = 365;
  ProduceOptions options;
};

int ProduceToKafka(ProduceArgs& args) {
  std::vector<std::pair<std::string, std::string>> config;
  for (const std::string& kv : args.kafka_config) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "loyalty produce: --kafka-config %s is not KEY=VALUE\n", kv.c_str());
      return 2;
    }
    config.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  auto producer = KafkaProducer::Create(args.brokers, config);
  if (!producer.ok()) {
    std::fprintf(stderr, "loyalty produce: %s\n", std::string(producer.status().message()).c_str());
    return 1;
  }
  Progress progress;
  uint64_t sent = 0;
  absl::Status failure;
  const auto start = std::chrono::steady_clock::now();
  GenerateStream(args.options, [&](std::string_view key, std::string_view value) {
    failure = (*producer)->Send(args.topic, key, value);
    if (!failure.ok()) return false;
    ++sent;
    if (args.rate > 0) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(sent * 1'000'000 / args.rate));
    }
    if ((sent & 0x3ff) == 0) {
      progress.Update(absl::StrFormat("produce: %d of %d events", sent, args.options.events));
    }
    return true;
  });
  progress.Done();
  if (failure.ok()) failure = (*producer)->Flush(60'000);
  if (!failure.ok()) {
    std::fprintf(stderr, "loyalty produce: %s\n", std::string(failure.message()).c_str());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "produced %llu events to %s at %s in %.2f s, all delivered\n",
               static_cast<unsigned long long>(sent), args.topic.c_str(), args.brokers.c_str(),
               seconds);
  return 0;
}

int RunProduce(ProduceArgs args) {
  if (args.file.empty() == args.brokers.empty()) {
    std::fprintf(stderr, "loyalty produce: give exactly one of --file and --brokers\n");
    return 2;
  }
  if (!args.file.empty() && args.format != "json") {
    std::fprintf(stderr,
                 "loyalty produce: --format %s cannot be written to a JSON-lines file\n",
                 args.format.c_str());
    return 2;
  }
  args.options.format = args.format == "json" ? ProduceFormat::kJson : ProduceFormat::kProtobuf;
  args.options.span_seconds = args.span_days * 86400;
  if (args.start.empty()) {
    // By default the stream ends at the start of today (UTC), so that the engine's
    // clock is past every well-formed event and only the deliberately future ones
    // are more than 24 hours ahead of it.
    const int64_t today = absl::ToUnixSeconds(RealClock()->Now()) / 86400 * 86400;
    args.options.start_unix_seconds = today - args.options.span_seconds;
  } else {
    absl::Time t;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, args.start, &t, &err)) {
      std::fprintf(stderr, "loyalty produce: --start %s is not an RFC 3339 time: %s\n",
                   args.start.c_str(), err.c_str());
      return 2;
    }
    args.options.start_unix_seconds = absl::ToUnixSeconds(t);
  }
  if (!args.brokers.empty()) return ProduceToKafka(args);
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
  cmd->add_option("--file", args->file, "write JSON lines to this file (- for stdout)");
  cmd->add_option("--brokers", args->brokers, "produce to these Kafka brokers instead");
  cmd->add_option("--topic", args->topic, "the topic to produce to");
  cmd->add_option("--kafka-config", args->kafka_config,
                  "a librdkafka property KEY=VALUE (TLS, SASL, ...); repeatable");
  cmd->add_option("--customers", args->options.customers, "distinct customers")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  cmd->add_option("--events", args->options.events, "messages to generate")
      ->check(CLI::Range(uint64_t{0}, uint64_t{10'000'000'000}));
  cmd->add_option("--rate", args->rate, "messages per second (0: as fast as possible)");
  cmd->add_option("--format", args->format, "json or protobuf")
      ->check(CLI::IsMember({"json", "protobuf"}));
  cmd->add_option("--start", args->start,
                  "occurred_at of the first event, RFC 3339 (default: the stream ends today)");
  cmd->add_option("--span-days", args->span_days, "days the stream's occurred_at spans")
      ->check(CLI::Range(int64_t{0}, int64_t{36500}));
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
