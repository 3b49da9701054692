// `loyalty`: one program, with subcommands (docs/architecture.md).
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "tools/commands.h"

#ifdef LOYALTY_JEMALLOC
// jemalloc's settings, read at its start (MALLOC_CONF in the environment overrides
// them). Freed pages go back to the system after 1 s, from a background thread,
// instead of 10 s: the engine frees hundreds of MB a second while ingesting, and
// kept pages were about 40% of the resident set (docs/benchmarks.md, run S).
extern "C" {
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
#endif

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
