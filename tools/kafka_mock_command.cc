// `loyalty kafka-mock`: a standalone mock Kafka cluster on loopback. Prints its
// bootstrap address alone on the first line of stdout and runs until SIGTERM or
// SIGINT.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "consumers/mock_cluster.h"
#include "tools/commands.h"

namespace loyalty {
namespace {

struct KafkaMockArgs {
  int brokers = 1;
  std::vector<std::string> topics;
  std::vector<int> partitions;
};

int RunKafkaMock(const KafkaMockArgs& args) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // the cluster's threads inherit it

  if (!args.partitions.empty() && args.partitions.size() != args.topics.size()) {
    std::fprintf(stderr, "loyalty kafka-mock: give --partitions once per --topic, or never\n");
    return 2;
  }
  auto cluster = MockCluster::Start(args.brokers);
  if (!cluster.ok()) {
    std::fprintf(stderr, "loyalty kafka-mock: %s\n", std::string(cluster.status().message()).c_str());
    return 1;
  }
  std::vector<std::pair<std::string, int>> topics;
  if (args.topics.empty()) {
    topics = {{kDefaultEventsTopic, 6}, {kDeadLetterTopic, 1}, {kOutcomesTopic, 6}, {kSignalsTopic, 6}};
  } else {
    for (size_t i = 0; i < args.topics.size(); ++i) {
      topics.emplace_back(args.topics[i], args.partitions.empty() ? 1 : args.partitions[i]);
    }
  }
  for (const auto& [topic, partitions] : topics) {
    if (auto s = (*cluster)->CreateTopic(topic, partitions); !s.ok()) {
      std::fprintf(stderr, "loyalty kafka-mock: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  std::printf("%s\n", (*cluster)->bootstrap_servers().c_str());
  std::fflush(stdout);
  for (const auto& [topic, partitions] : topics) {
    std::fprintf(stderr, "loyalty kafka-mock: topic %s, %d partitions\n", topic.c_str(), partitions);
  }
  int sig = 0;
  sigwait(&stop, &sig);
  return 0;
}

}  // namespace

void AddKafkaMockCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<KafkaMockArgs>();
  CLI::App* cmd = app.add_subcommand(
      "kafka-mock",
      "A standalone mock Kafka cluster on loopback (librdkafka's): prints the bootstrap "
      "address on the first line and runs until SIGTERM/SIGINT");
  cmd->add_option("--broker-count", args->brokers, "brokers")->check(CLI::Range(1, 16));
  cmd->add_option("--topic", args->topics,
                  "create this topic (repeatable; default: the engine's four topics)");
  cmd->add_option("--partitions", args->partitions, "partitions of each --topic, in order")
      ->check(CLI::Range(1, 1024));
  cmd->callback([args, exit_code] { *exit_code = RunKafkaMock(*args); });
}

}  // namespace loyalty
