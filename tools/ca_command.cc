// `hansa ca init|sign|renew|revoke|list`: the federation operator's CA, created once, and every
// certificate it issues from participants' signing requests. The logic lives in
// common/pki/ca_registry.h and common/pki/enrollment.h; this file parses flags and prints.
#include <iostream>

#include "absl/strings/str_join.h"
#include "common/pki/ca_registry.h"
#include "common/pki/enrollment.h"
#include "common/pki/revocation.h"
#include "common/pki/startup_kit.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct CaFlags {
  std::string dir;
  // init
  std::string federation;
  std::string country;
  std::string org;
  int ca_days = kDefaultCaValidityDays;
  std::string key_type = "ed25519";
  // sign, renew
  std::string request;
  std::string role = "site";
  int days = kDefaultCertificateValidityDays;
  std::vector<std::string> hosts;
  std::string address;
  std::string key_fingerprint;
  std::string out;
  // renew, revoke
  std::string name;
  std::string reason = "unspecified";
};

[[noreturn]] void Fail(const std::string& command, const Status& status) {
  std::cerr << "hansa ca " << command << ": " << status.message() << "\n";
  throw CLI::RuntimeError(2);
}

template <typename T>
T OrFail(const std::string& command, StatusOr<T> value) {
  if (!value.ok()) Fail(command, value.status());
  return *std::move(value);
}

void PrintReply(const std::string& reply_dir, const std::vector<std::string>& files,
                const Certificate& cert) {
  std::cout << "Issued serial " << cert.SerialHex() << " to '" << cert.Subject().common_name
            << "', valid until " << FormatCertificateTime(cert.NotAfter()) << "\n"
            << "Certificate SHA-256: " << cert.Sha256Fingerprint() << "\n\n"
            << "Send the participant the folder " << reply_dir << " (" << absl::StrJoin(files, ", ")
            << "): certificates and fingerprints only, no private key.\n";
  if (std::find(files.begin(), files.end(), "coordinator.sha256") == files.end() &&
      cert.OrganizationalUnit() != kOperatorUnit) {
    std::cout << "No coordinator certificate is issued yet, so the reply holds no "
                 "coordinator.sha256 to pin: sign the coordinator's request first, then send "
                 "this site a reply that has it (hansa ca renew NAME).\n";
  }
}

void RunInit(const CaFlags& f) {
  CaOptions options;
  options.federation = f.federation;
  options.organization = f.org;
  options.country = f.country;
  options.key_type = OrFail("init", ParseKeyType(f.key_type));
  options.not_after = absl::Now() + absl::Hours(24 * f.ca_days);
  CaRegistry registry = OrFail("init", CaRegistry::Init(f.dir, options));
  const Certificate& ca = registry.ca().certificate();
  std::cout << "Federation CA '" << ca.Subject().common_name << "' created in " << f.dir
            << " (valid until " << FormatCertificateTime(ca.NotAfter()) << ")\n"
            << "CA certificate SHA-256: " << ca.Sha256Fingerprint() << "\n\n"
            << "  " << f.dir << "/ca.pem       the CA certificate (public; goes into every reply)\n"
            << "  " << f.dir
            << "/ca-key.pem   its private key (0600): keep it offline, back it up, never send it\n"
            << "  " << f.dir << "/crl.pem      the revocation list (the coordinator reads it)\n"
            << "  " << f.dir << "/index.tsv    every certificate issued (hansa ca list)\n\n"
            << "Next: the coordinator and each site run hansa enroll on their own machine and "
               "send you their request.csr; sign each with hansa ca sign.\n";
}

void RunSign(const CaFlags& f) {
  SigningRequest request = OrFail("sign", SigningRequest::FromFile(f.request));
  const SubjectName subject = request.Subject();
  const std::string key_fingerprint = PublicKeyFingerprint(request.public_key());
  std::cout << "Request " << f.request << " (its signature verifies: the sender holds the key)\n"
            << "  name (CN):      " << subject.common_name << "\n"
            << "  organisation:   " << subject.organization << "\n"
            << "  country:        " << subject.country << "\n";
  if (!request.dns_names().empty() || !request.ip_addresses().empty()) {
    std::cout << "  host names:     " << absl::StrJoin(request.dns_names(), ", ")
              << (request.dns_names().empty() || request.ip_addresses().empty() ? "" : ", ")
              << absl::StrJoin(request.ip_addresses(), ", ") << "\n";
  }
  std::cout << "  key SHA-256:    " << GroupFingerprint(key_fingerprint) << "\n"
            << "Compare the key SHA-256 with the one hansa enroll printed at the participant "
               "(read it to each other by phone).\n\n";
  if (!f.key_fingerprint.empty()) {
    std::string expected;
    for (char c : f.key_fingerprint) {
      if (c != ' ' && c != ':') expected.push_back(static_cast<char>(std::tolower(c)));
    }
    if (expected != key_fingerprint) {
      Fail("sign", absl::PermissionDeniedError(absl::StrCat(
                       "the request's key SHA-256 is ", key_fingerprint, ", not ", expected,
                       " (--key-fingerprint): this is not the participant's request; sign "
                       "nothing and ask them to send it again")));
    }
  }
  CaRegistry registry = OrFail("sign", CaRegistry::Open(f.dir));
  SignOptions options;
  options.role = OrFail("sign", ParseRole(f.role));
  options.days = f.days;
  options.extra_hosts = f.hosts;
  options.address = f.address;
  if (options.role != ParticipantRole::kCoordinator && (!f.hosts.empty() || !f.address.empty())) {
    Fail("sign", absl::InvalidArgumentError("--host and --address are for --role coordinator"));
  }
  Certificate cert = OrFail("sign", registry.Sign(request, options));
  std::vector<std::string> files = OrFail("sign", WriteReply(f.out, registry, cert));
  PrintReply(f.out, files, cert);
  std::cout << "\nNext steps:\n";
  if (options.role == ParticipantRole::kSite) {
    std::cout << "  - add \"" << subject.common_name
              << "\" to [sites] allowed in coordinator.toml if it is not there (the coordinator "
                 "reads it when it starts)\n"
              << "  - the site runs: hansa enroll accept --out <its enrollment folder> <this "
                 "reply folder>\n";
  } else if (options.role == ParticipantRole::kOperator) {
    std::cout << "  - this certificate (OU=" << kOperatorUnit
              << ") opens the coordinator's dashboard when [monitoring] listens beyond "
                 "loopback; it joins no round\n"
              << "  - the operator bundles it with the key hansa enroll made, for the browser:\n"
              << "      openssl pkcs12 -export -in " << f.out
              << "/cert.pem -inkey KEY.pem -out operator.p12\n"
              << "    and imports operator.p12 and " << f.out
              << "/ca.pem (as an authority) into the browser\n";
  } else {
    std::cout << "  - the coordinator runs: hansa enroll accept --out <its enrollment folder> "
                 "<this reply folder>\n"
              << "  - sites connect to " << registry.CoordinatorAddress()
              << " and pin the certificate above; replies to sites signed from now on carry it\n";
  }
}

void RunRenew(const CaFlags& f) {
  CaRegistry registry = OrFail("renew", CaRegistry::Open(f.dir));
  Certificate cert = OrFail("renew", registry.Renew(f.name, f.days));
  std::vector<std::string> files = OrFail("renew", WriteReply(f.out, registry, cert));
  PrintReply(f.out, files, cert);
  std::cout << "The same key and subject as before; the previous certificate stays valid until "
               "it expires. The participant installs the reply with hansa enroll accept.\n";
}

void RunRevoke(const CaFlags& f) {
  CaRegistry registry = OrFail("revoke", CaRegistry::Open(f.dir));
  std::vector<IssuedRecord> revoked = OrFail("revoke", registry.Revoke(f.name, f.reason));
  for (const IssuedRecord& r : revoked) {
    std::cout << "Revoked serial " << r.serial_hex << " of '" << r.name << "' (" << r.reason
              << ")\n";
  }
  std::cout << "Re-signed " << f.dir
            << "/crl.pem: copy it over the coordinator's crl.pem (its [pki] revocation_list); "
               "the coordinator re-reads it and from then on refuses these certificates at "
               "join.\n";
}

void RunList(const CaFlags& f) {
  CaRegistry registry = OrFail("list", CaRegistry::Open(f.dir));
  std::cout << "Certificates issued by '" << registry.ca().certificate().Subject().common_name
            << "' (CA valid until " << FormatCertificateTime(registry.ca().certificate().NotAfter())
            << ")\n"
            << FormatIssuedTable(registry.records(), absl::Now());
}

void AddCaCommand(CLI::App& root) {
  auto f = std::make_shared<CaFlags>();
  CLI::App* ca = root.add_subcommand(
      "ca", "The federation CA: create it once, sign participants' requests, renew, revoke, list");
  ca->require_subcommand(1);

  CLI::App* init = ca->add_subcommand("init", "Create the federation CA in a folder (once)");
  init->add_option("--dir", f->dir, "the CA folder")->required();
  init->add_option("--federation", f->federation, "federation name")->required();
  init->add_option("--country", f->country, "the operator's country (ISO 3166, e.g. DE)")
      ->required();
  init->add_option("--org", f->org, "the operator's organisation");
  init->add_option("--days", f->ca_days, "validity of the CA in days")->capture_default_str();
  init->add_option("--key-type", f->key_type, "ed25519 or ecdsa-p256")->capture_default_str();
  init->callback([f] { RunInit(*f); });

  CLI::App* sign =
      ca->add_subcommand("sign", "Check a participant's request.csr and issue its certificate");
  sign->add_option("request", f->request, "the participant's request.csr")->required();
  sign->add_option("--dir", f->dir, "the CA folder")->required();
  sign->add_option("--role", f->role,
                   "site, coordinator, or operator (a person who may open the coordinator's "
                   "dashboard)")
      ->capture_default_str();
  sign->add_option("--days", f->days, "validity in days")->capture_default_str();
  sign->add_option("--host", f->hosts,
                   "extra host name or IP for a coordinator certificate (repeatable)");
  sign->add_option("--address", f->address,
                   "HOST:PORT sites connect to (a coordinator; default: its first host, "
                   "port 50051)");
  sign->add_option("--key-fingerprint", f->key_fingerprint,
                   "the key SHA-256 the participant read out: refuse the request unless it "
                   "matches");
  sign->add_option("--out", f->out, "reply folder to send back to the participant")->required();
  sign->callback([f] { RunSign(*f); });

  CLI::App* renew = ca->add_subcommand(
      "renew", "A new certificate for a participant's key and subject, valid from now");
  renew->add_option("name", f->name, "the participant's name")->required();
  renew->add_option("--dir", f->dir, "the CA folder")->required();
  renew->add_option("--days", f->days, "validity in days")->capture_default_str();
  renew->add_option("--out", f->out, "reply folder to send back to the participant")->required();
  renew->callback([f] { RunRenew(*f); });

  CLI::App* revoke =
      ca->add_subcommand("revoke", "Revoke a participant's certificates and re-sign crl.pem");
  revoke->add_option("name", f->name, "a participant's name (all its certificates) or a serial")
      ->required();
  revoke->add_option("--dir", f->dir, "the CA folder")->required();
  revoke
      ->add_option("--reason", f->reason,
                   absl::StrCat("one of ", absl::StrJoin(RevocationReasonNames(), ", ")))
      ->capture_default_str();
  revoke->callback([f] { RunRevoke(*f); });

  CLI::App* list = ca->add_subcommand(
      "list", "Every issued certificate: role, serial, expiry, status; ! within 30 days of expiry");
  list->add_option("--dir", f->dir, "the CA folder")->required();
  list->callback([f] { RunList(*f); });
}

HANSA_REGISTER_COMMAND(AddCaCommand);

}  // namespace
}  // namespace hansa::tools
