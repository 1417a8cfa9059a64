// `hansa enroll`: run on the participant's own machine. Makes its key (which never leaves the
// machine) and a signing request for the federation operator; `hansa enroll accept` installs
// the operator's reply. The logic lives in common/pki/enrollment.h; this file parses flags and
// prints.
#include <iostream>

#include "common/pki/enrollment.h"
#include "common/pki/startup_kit.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct EnrollFlags {
  std::string site;
  std::string coordinator;
  std::string country;
  std::string org;
  std::vector<std::string> hosts;
  std::string key_type = "ed25519";
  std::string out;
  // accept
  std::string reply;
  std::string coordinator_address;
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";
};

[[noreturn]] void Fail(const std::string& command, const Status& status) {
  std::cerr << "hansa " << command << ": " << status.message() << "\n";
  throw CLI::RuntimeError(2);
}

void RunEnroll(const EnrollFlags& f) {
  if (f.site.empty() == f.coordinator.empty()) {
    Fail("enroll",
         absl::InvalidArgumentError("give exactly one of --site NAME or --coordinator NAME"));
  }
  EnrollRequest request;
  request.out_dir = f.out;
  request.role = f.site.empty() ? ParticipantRole::kCoordinator : ParticipantRole::kSite;
  const std::string& name = f.site.empty() ? f.coordinator : f.site;
  request.subject = {name, f.org.empty() ? name : f.org, f.country};
  request.hosts = f.hosts;
  StatusOr<KeyType> key_type = ParseKeyType(f.key_type);
  if (!key_type.ok()) Fail("enroll", Annotate(key_type.status(), "--key-type"));
  request.key_type = *key_type;
  StatusOr<Enrollment> enrolled = Enroll(request);
  if (!enrolled.ok()) Fail("enroll", enrolled.status());
  std::cout << "Enrolling " << RoleName(request.role) << " '" << name << "' ("
            << request.subject.organization << ", " << request.subject.country << ")\n"
            << "  " << enrolled->key_path
            << "      private key (0600): stays on this machine, never send it\n"
            << "  " << enrolled->request_path
            << "  signing request: send this file to the federation operator\n\n"
            << "Key SHA-256 (read it to the operator by phone when they call to confirm):\n  "
            << GroupFingerprint(PublicKeyFingerprint(enrolled->request.public_key())) << "\n\n"
            << "When the operator's reply arrives (cert.pem, ca.pem, coordinator.sha256), run:\n"
            << "  hansa enroll accept --out " << f.out << " REPLY_DIR\n";
}

void RunAccept(const EnrollFlags& f) {
  AcceptOptions options;
  options.dir = f.out;
  options.reply_dir = f.reply;
  options.coordinator_address = f.coordinator_address;
  options.dataset_dir = f.dataset_dir;
  StatusOr<Accepted> accepted = AcceptReply(options);
  if (!accepted.ok()) Fail("enroll accept", accepted.status());
  const Certificate& cert = accepted->certificate;
  std::cout << "Installed the certificate of " << RoleName(accepted->role) << " '"
            << cert.Subject().common_name << "' (serial " << cert.SerialHex() << ", valid until "
            << FormatCertificateTime(cert.NotAfter()) << ") and the federation CA in " << f.out
            << "\n";
  if (accepted->role == ParticipantRole::kSite) {
    std::cout << "Pinned coordinator certificate SHA-256: " << accepted->coordinator_fingerprint
              << "\n"
              << (accepted->config_created ? "Wrote " : "Updated the coordinator and its pin in ")
              << accepted->config_path << "\n";
    if (accepted->config_created) {
      std::cout << "Point its [data] section at this site's own files, then run:\n"
                << "  hansa-client --config " << accepted->config_path << "\n";
    }
  } else {
    std::cout << (accepted->config_created ? "Wrote " : "Kept ") << accepted->config_path
              << (accepted->config_created
                      ? ": list the sites under [sites] allowed, then run hansa-coordinator "
                        "--config it"
                      : " as it was")
              << "\n";
  }
}

void AddEnrollCommand(CLI::App& root) {
  auto f = std::make_shared<EnrollFlags>();
  CLI::App* enroll = root.add_subcommand(
      "enroll",
      "On a participant's machine: make its key and a certificate signing request for the "
      "operator (no private key ever leaves the machine)");
  enroll->require_subcommand(0, 1);
  enroll->add_option("--site", f->site, "the site's name (lowercase letters, digits, '-')");
  enroll->add_option("--coordinator", f->coordinator, "the coordinator's name (instead of --site)");
  enroll->add_option("--country", f->country, "ISO 3166 country of its jurisdiction (e.g. DE)");
  enroll->add_option("--org", f->org, "its organisation (default: the name)");
  enroll->add_option("--host", f->hosts,
                     "a host name or IP sites connect to (the coordinator; repeatable)");
  enroll->add_option("--key-type", f->key_type, "ed25519 or ecdsa-p256")->capture_default_str();
  enroll->add_option("--out", f->out, "enrollment folder (key.pem, request.csr)");

  CLI::App* accept = enroll->add_subcommand(
      "accept",
      "Install the operator's reply (cert.pem, ca.pem, coordinator.sha256) after "
      "checking it belongs to this folder's key");
  accept->add_option("reply", f->reply, "the reply folder from hansa ca sign or renew")->required();
  accept->add_option("--out", f->out, "the enrollment folder (holds key.pem)")->required();
  accept->add_option("--coordinator-address", f->coordinator_address,
                     "HOST:PORT of the coordinator, if the reply's coordinator.address is wrong "
                     "or missing (for the coordinator: its listen address)");
  accept
      ->add_option("--dataset-dir", f->dataset_dir,
                   "folder of the site's IDX files, for a new site.toml template")
      ->capture_default_str();
  accept->callback([f] { RunAccept(*f); });

  enroll->callback([f, accept] {
    if (accept->parsed()) return;
    if (f->out.empty() || f->country.empty()) {
      Fail("enroll", absl::InvalidArgumentError("--out and --country are required"));
    }
    RunEnroll(*f);
  });
}

HANSA_REGISTER_COMMAND(AddEnrollCommand);

}  // namespace
}  // namespace hansa::tools
