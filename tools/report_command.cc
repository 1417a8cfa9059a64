// hansa report STATE_DIR --out DIR [--ca CA.pem] [--coordinator-fingerprint HEX |
//              --certificate CERT.pem] [--egress EGRESS.jsonl]...: the compliance report of a
// federation, with the checks it could make.
// hansa report --site STATE_DIR --ca CA.pem --out DIR [--certificate CERT.pem]: a site's own
// report, from its egress ledger alone (common/report/site_report.h).
//
// Exit codes: 0 written and every check made passed (a missing closing record aside: the
// federation may still run); 2 written, but the audit log (the egress ledger) did not verify
// (or could not be verified: no CA, no log), or another check failed; 1 nothing written.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/pki/certificate.h"
#include "common/report/report.h"
#include "common/report/site_report.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct ReportFlags {
  std::string state_dir;
  std::string site_dir;
  std::string out;
  std::string ca;
  std::string fingerprint;
  std::string certificate;
  std::vector<std::string> egress;
};

// Exit 2 (after the report is written) when what it rests on did not verify or a check failed.
void Judge(const WrittenReport& written, const char* what) {
  if (!written.audit_verified) {
    std::cerr << "hansa report: WARNING: the " << what << " did not verify: " << written.audit_error
              << "\n";
    throw CLI::RuntimeError(2);
  }
  std::cout << what << " verified against the federation CA\n";
  if (!written.failed_checks.empty()) {
    for (const std::string& failed : written.failed_checks) {
      std::cerr << "hansa report: WARNING: check failed: " << failed << "\n";
    }
    throw CLI::RuntimeError(2);
  }
}

std::string FingerprintOf(const std::string& certificate) {
  if (certificate.empty()) return "";
  auto cert = Certificate::FromFile(certificate);
  if (!cert.ok()) {
    std::cerr << "hansa report: " << cert.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  return cert->Sha256Fingerprint();
}

void RunSite(const ReportFlags& flags) {
  if (!flags.state_dir.empty() || !flags.fingerprint.empty() || !flags.egress.empty()) {
    std::cerr << "hansa report: --site takes the site's state directory alone (no STATE_DIR, "
                 "--coordinator-fingerprint or --egress)\n";
    throw CLI::RuntimeError(1);
  }
  SiteReportOptions options;
  options.state_dir = flags.site_dir;
  options.ca_path = flags.ca;
  options.site_fingerprint = FingerprintOf(flags.certificate);
  auto written = WriteSiteReport(options, flags.out);
  if (!written.ok()) {
    std::cerr << "hansa report: " << written.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  std::cout << "site report: " << written->html_path << "\n"
            << "             " << written->json_path << "\n";
  Judge(*written, "egress ledger");
}

void Run(const ReportFlags& flags) {
  if (!flags.site_dir.empty()) return RunSite(flags);
  if (flags.state_dir.empty()) {
    std::cerr << "hansa report: give the coordinator's STATE_DIR, or --site and a site's state "
                 "directory\n";
    throw CLI::RuntimeError(1);
  }
  ReportOptions options;
  options.state_dir = flags.state_dir;
  options.ca_path = flags.ca;
  options.coordinator_fingerprint = flags.fingerprint;
  options.egress_ledgers = flags.egress;
  if (!flags.certificate.empty())
    options.coordinator_fingerprint = FingerprintOf(flags.certificate);
  auto written = WriteReport(options, flags.out);
  if (!written.ok()) {
    std::cerr << "hansa report: " << written.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  std::cout << "report: " << written->html_path << "\n"
            << "        " << written->json_path << "\n";
  Judge(*written, "audit log");
}

void Register(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand(
      "report", "write the compliance report (report.html and report.json) of a federation");
  auto flags = std::make_shared<ReportFlags>();
  cmd->add_option("STATE_DIR", flags->state_dir, "the coordinator's state directory");
  cmd->add_option("--site", flags->site_dir,
                  "a site's state directory: its own report, from its egress ledger alone");
  cmd->add_option("--out", flags->out, "folder for report.html and report.json")->required();
  cmd->add_option("--ca", flags->ca,
                  "the federation CA certificate (default: STATE_DIR/../ca.pem when present)");
  auto* fingerprint = cmd->add_option(
      "--coordinator-fingerprint", flags->fingerprint,
      "SHA-256 fingerprint of the coordinator's certificate the audit log must be signed with");
  cmd->add_option("--certificate", flags->certificate,
                  "the coordinator's certificate (its kit's cert.pem), instead of its fingerprint; "
                  "with --site, the site's, which must have signed its ledger")
      ->excludes(fingerprint);
  cmd->add_option("--egress", flags->egress,
                  "a site's egress.jsonl to reconcile with the audit log (repeat for each site)");
  cmd->callback([flags] { Run(*flags); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
