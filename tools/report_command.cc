// hansa report STATE_DIR --out DIR [--ca CA.pem] [--coordinator-fingerprint HEX |
//              --certificate CERT.pem] [--egress EGRESS.jsonl]...: the compliance report of a
// federation, with the checks it could make.
//
// Exit codes: 0 written and every check made passed (a missing closing record aside: the
// federation may still run); 2 written, but the audit log did not verify (or could not be
// verified: no CA, no log), or another check failed; 1 nothing written.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/pki/certificate.h"
#include "common/report/report.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct ReportFlags {
  std::string state_dir;
  std::string out;
  std::string ca;
  std::string fingerprint;
  std::string certificate;
  std::vector<std::string> egress;
};

void Run(const ReportFlags& flags) {
  ReportOptions options;
  options.state_dir = flags.state_dir;
  options.ca_path = flags.ca;
  options.coordinator_fingerprint = flags.fingerprint;
  options.egress_ledgers = flags.egress;
  if (!flags.certificate.empty()) {
    auto cert = Certificate::FromFile(flags.certificate);
    if (!cert.ok()) {
      std::cerr << "hansa report: " << cert.status().message() << "\n";
      throw CLI::RuntimeError(1);
    }
    options.coordinator_fingerprint = cert->Sha256Fingerprint();
  }
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
  if (!written->failed_checks.empty()) {
    for (const std::string& failed : written->failed_checks) {
      std::cerr << "hansa report: WARNING: check failed: " << failed << "\n";
    }
    throw CLI::RuntimeError(2);
  }
}

void Register(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand(
      "report", "write the compliance report (report.html and report.json) of a federation");
  auto flags = std::make_shared<ReportFlags>();
  cmd->add_option("STATE_DIR", flags->state_dir, "the coordinator's state directory")->required();
  cmd->add_option("--out", flags->out, "folder for report.html and report.json")->required();
  cmd->add_option("--ca", flags->ca,
                  "the federation CA certificate (default: STATE_DIR/../ca.pem when present)");
  auto* fingerprint = cmd->add_option(
      "--coordinator-fingerprint", flags->fingerprint,
      "SHA-256 fingerprint of the coordinator's certificate the audit log must be signed with");
  cmd->add_option("--certificate", flags->certificate,
                  "the coordinator's certificate (its kit's cert.pem), instead of its fingerprint")
      ->excludes(fingerprint);
  cmd->add_option("--egress", flags->egress,
                  "a site's egress.jsonl to reconcile with the audit log (repeat for each site)");
  cmd->callback([flags] { Run(*flags); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
