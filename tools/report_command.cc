// hansa report STATE_DIR --out DIR [--ca CA.pem]: the compliance report of a federation.
//
// Exit codes: 0 written and the audit log verified; 2 written, but the audit log did not
// verify (or could not be verified: no CA, no log); 1 nothing written.
#include <iostream>
#include <memory>
#include <string>

#include "common/report/report.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct ReportFlags {
  std::string state_dir;
  std::string out;
  std::string ca;
};

void Run(const ReportFlags& flags) {
  ReportOptions options;
  options.state_dir = flags.state_dir;
  options.ca_path = flags.ca;
  auto written = WriteReport(options, flags.out);
  if (!written.ok()) {
    std::cerr << "hansa report: " << written.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  std::cout << "report: " << written->html_path << "\n"
            << "        " << written->json_path << "\n";
  if (!written->audit_verified) {
    std::cerr << "hansa report: WARNING: the audit log did not verify: " << written->audit_error
              << "\n";
    throw CLI::RuntimeError(2);
  }
  std::cout << "audit log verified against the federation CA\n";
}

void Register(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand(
      "report", "write the compliance report (report.html and report.json) of a federation");
  auto flags = std::make_shared<ReportFlags>();
  cmd->add_option("STATE_DIR", flags->state_dir, "the coordinator's state directory")->required();
  cmd->add_option("--out", flags->out, "folder for report.html and report.json")->required();
  cmd->add_option("--ca", flags->ca,
                  "the federation CA certificate (default: STATE_DIR/../ca.pem when present)");
  cmd->callback([flags] { Run(*flags); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
