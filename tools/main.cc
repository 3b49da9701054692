// `loyalty`: one program, with subcommands (docs/architecture.md).
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"loyalty: an event-sourced loyalty points ledger engine"};
  app.require_subcommand(1);
  int exit_code = 0;
  loyalty::AddIngestCommand(app, &exit_code);
  loyalty::AddReplayCommand(app, &exit_code);
  loyalty::AddProduceCommand(app, &exit_code);
  loyalty::AddServeCommand(app, &exit_code);
  loyalty::AddKafkaMockCommand(app, &exit_code);
  loyalty::AddBenchCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Bad usage: one line saying why, non-zero exit.
    std::string what = e.what();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    std::fprintf(stderr, "loyalty: %s (see --help)\n", what.c_str());
    return 2;
  }
  return exit_code;
}
