// `hansa`: the admin binary (enroll, ca, audit, report, dp, simulate, provision). Subcommands live
// in tools/*_command.cc and register themselves; see tools/command.h.
#include "common/net/rpc.h"
#include "common/version/version.h"
#include "tools/command.h"

namespace hansa::tools {

std::vector<CommandFn>& Commands() {
  static std::vector<CommandFn> commands;
  return commands;
}

}  // namespace hansa::tools

int main(int argc, char** argv) {
  // `simulate` (its workers' gRPC links) and `doctor` open gRPC channels, whose threads may
  // outlive main.
  hansa::KeepOpenSslUntilExit();
  CLI::App app{
      "hansa: federation administration (enroll, ca, audit, report, dp, simulate, provision)"};
  app.set_version_flag("--version", hansa::VersionText("hansa"));
  app.require_subcommand(1);
  for (const auto& add : hansa::tools::Commands()) add(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
