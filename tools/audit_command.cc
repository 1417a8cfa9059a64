// hansa audit verify FILE --ca CA.pem [--role coordinator|site] [--coordinator-fingerprint HEX |
//                    --certificate CERT.pem] [--require-closed] [--signer CN] [--head HEX]
// hansa audit reconcile COORDINATOR_AUDIT SITE_EGRESS --ca CA.pem
//
// verify checks a coordinator's audit.jsonl unless told `--role site` (a site's egress.jsonl).
// Exit codes: 0 verified / no differences; 2 the log does not verify (or, with
// --require-closed, has no closing record) or the logs differ; 1 anything else (unreadable CA
// or certificate, bad flags).
#include <iostream>
#include <memory>
#include <string>

#include "common/audit/reconcile.h"
#include "common/audit/verify.h"
#include "common/pki/certificate.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

Certificate LoadCa(const std::string& path, const char* command) {
  auto ca = Certificate::FromFile(path);
  if (!ca.ok()) {
    std::cerr << "hansa audit " << command << ": " << ca.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  return *std::move(ca);
}

struct VerifyFlags {
  std::string file;
  std::string ca;
  std::string role = "coordinator";
  std::string signer;
  std::string fingerprint;
  std::string certificate;
  std::string head;
  bool require_closed = false;
};

// The fingerprint to pin: given as such, or of the certificate given (a startup kit's cert.pem).
std::string ExpectedFingerprint(const VerifyFlags& flags) {
  if (flags.certificate.empty()) return flags.fingerprint;
  auto cert = Certificate::FromFile(flags.certificate);
  if (!cert.ok()) {
    std::cerr << "hansa audit verify: " << cert.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  return cert->Sha256Fingerprint();
}

void Verify(const VerifyFlags& flags) {
  Certificate ca = LoadCa(flags.ca, "verify");
  VerifyOptions options;
  options.expected_signer = flags.signer;
  options.expected_fingerprint = ExpectedFingerprint(flags);
  options.expected_head = flags.head;
  options.usage =
      flags.role == "site" ? CertificateUsage::kTlsClient : CertificateUsage::kTlsServer;
  auto summary = VerifyAuditLog(flags.file, ca, options);
  if (!summary.ok()) {
    std::cerr << "hansa audit verify: FAILED: " << summary.status().message() << "\n";
    if (flags.role == "coordinator" &&
        summary.status().message().find("not allowed for TLS server") != std::string::npos) {
      std::cerr << "hansa audit verify: the log is not signed with a coordinator's certificate; "
                   "a site's egress ledger is checked with --role site\n";
    }
    throw CLI::RuntimeError(summary.status().code() == absl::StatusCode::kNotFound ? 1 : 2);
  }
  std::cout << summary->ToText();
  if (!summary->fingerprint_checked && flags.role == "coordinator") {
    std::cout << "note: give --coordinator-fingerprint or --certificate (the coordinator kit's "
                 "cert.pem) to tie the log to the federation's own coordinator\n";
  }
  if (flags.require_closed && !summary->closed) {
    std::cerr << "hansa audit verify: FAILED: " << flags.file
              << " does not end in a closing federation_finished record (--require-closed)\n";
    throw CLI::RuntimeError(2);
  }
}

void Reconcile(const std::string& coordinator, const std::string& egress,
               const std::string& ca_path) {
  Certificate ca = LoadCa(ca_path, "reconcile");
  auto result = hansa::Reconcile(coordinator, egress, ca);
  if (!result.ok()) {
    std::cerr << "hansa audit reconcile: FAILED: " << result.status().message() << "\n";
    throw CLI::RuntimeError(result.status().code() == absl::StatusCode::kNotFound ? 1 : 2);
  }
  std::cout << result->ToText();
  if (!result->ok()) {
    std::cerr << "hansa audit reconcile: the coordinator's records and the ledger of '"
              << result->site << "' differ\n";
    throw CLI::RuntimeError(2);
  }
}

void Register(CLI::App& root) {
  CLI::App* audit =
      root.add_subcommand("audit", "verify audit logs and egress ledgers against the CA");
  audit->require_subcommand(1);

  CLI::App* verify = audit->add_subcommand(
      "verify", "check the hash chain and every signature of an audit.jsonl or egress.jsonl");
  auto flags = std::make_shared<VerifyFlags>();
  verify->add_option("FILE", flags->file, "the log")->required();
  verify->add_option("--ca", flags->ca, "the federation CA certificate (ca.pem)")->required();
  verify
      ->add_option("--role", flags->role,
                   "coordinator (default): signer must hold a coordinator's (TLS server) "
                   "certificate; site: a site's (TLS client) certificate, for an egress.jsonl")
      ->check(CLI::IsMember({"coordinator", "site"}));
  auto* fingerprint = verify->add_option(
      "--coordinator-fingerprint", flags->fingerprint,
      "SHA-256 fingerprint the signer's certificate must have (hex; e.g. a site.toml's "
      "coordinator_fingerprint)");
  verify
      ->add_option(
          "--certificate", flags->certificate,
          "the signer's certificate must be this one (e.g. the coordinator kit's cert.pem)")
      ->excludes(fingerprint);
  verify->add_flag("--require-closed", flags->require_closed,
                   "fail unless the log ends in its closing federation_finished record (a "
                   "finished federation's log)");
  verify->add_option("--signer", flags->signer, "the signer's certificate CN must be this");
  verify->add_option("--head", flags->head,
                     "SHA-256 the last line must have (an anchor kept elsewhere; detects records "
                     "cut off at the end)");
  verify->callback([flags] { Verify(*flags); });

  CLI::App* reconcile = audit->add_subcommand(
      "reconcile", "compare the updates a coordinator recorded with what one site sent");
  auto coordinator = std::make_shared<std::string>();
  auto egress = std::make_shared<std::string>();
  auto ca = std::make_shared<std::string>();
  reconcile->add_option("COORDINATOR_AUDIT", *coordinator, "the coordinator's audit.jsonl")
      ->required();
  reconcile->add_option("SITE_EGRESS", *egress, "the site's egress.jsonl")->required();
  reconcile->add_option("--ca", *ca, "the federation CA certificate (ca.pem)")->required();
  reconcile->callback([coordinator, egress, ca] { Reconcile(*coordinator, *egress, *ca); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
