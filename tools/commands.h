// The `loyalty` subcommands. Each Add*Command registers itself on the app and, when
// chosen, runs and stores its exit status in *exit_code.
#ifndef LOYALTY_TOOLS_COMMANDS_H_
#define LOYALTY_TOOLS_COMMANDS_H_

#include "CLI/CLI.hpp"

namespace loyalty {

void AddIngestCommand(CLI::App& app, int* exit_code);
void AddReplayCommand(CLI::App& app, int* exit_code);
void AddProduceCommand(CLI::App& app, int* exit_code);
void AddServeCommand(CLI::App& app, int* exit_code);
void AddKafkaMockCommand(CLI::App& app, int* exit_code);
void AddBenchCommand(CLI::App& app, int* exit_code);

}  // namespace loyalty

#endif  // LOYALTY_TOOLS_COMMANDS_H_
