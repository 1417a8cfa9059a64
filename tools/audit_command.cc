// hansa audit verify FILE --ca CA.pem
// hansa audit reconcile COORDINATOR_AUDIT SITE_EGRESS --ca CA.pem
//
// Exit codes: 0 verified / no differences; 2 the log does not verify or the logs differ;
// 1 anything else (unreadable CA, bad flags).
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
  std::string role = "any";
  std::string signer;
  std::string head;
};

void Verify(const VerifyFlags& flags) {
  Certificate ca = LoadCa(flags.ca, "verify");
  VerifyOptions options;
  options.expected_signer = flags.signer;
  options.expected_head = flags.head;
  if (flags.role == "coordinator") options.usage = CertificateUsage::kTlsServer;
  if (flags.role == "site") options.usage = CertificateUsage::kTlsClient;
  auto summary = VerifyAuditLog(flags.file, ca, options);
  if (!summary.ok()) {
    std::cerr << "hansa audit verify: FAILED: " << summary.status().message() << "\n";
    throw CLI::RuntimeError(summary.status().code() == absl::StatusCode::kNotFound ? 1 : 2);
  }
  std::cout << summary->ToText();
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
                   "coordinator: signer must hold the coordinator's (TLS server) certificate; "
                   "site: a site's (TLS client) certificate")
      ->check(CLI::IsMember({"any", "coordinator", "site"}));
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
