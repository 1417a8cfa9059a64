#include "common/pki/enrollment.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/config/config.h"
#include "common/fileio/fileio.h"
#include "common/pki/revocation.h"
#include "common/pki/startup_kit.h"

namespace hansa {
namespace {

constexpr size_t kMaxReplyFileBytes = 1 << 20;

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

// The first line of a small text file, without surrounding blanks; empty when absent.
StatusOr<std::string> ReadLine(const std::string& path) {
  if (!Exists(path)) return std::string();
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, kMaxReplyFileBytes));
  std::string line(absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))));
  return line;
}

std::string FederationOf(const Certificate& ca) {
  std::string name = ca.Subject().common_name;
  absl::string_view stripped = absl::StripSuffix(name, " CA");
  return std::string(stripped);
}

// Replaces the value of `key = ...` at the start of a line; NotFound when no line has it.
Status ReplaceValue(std::vector<std::string>* lines, const std::string& key,
                    const std::string& value) {
  for (std::string& line : *lines) {
    absl::string_view view(line);
    if (absl::ConsumePrefix(&view, key) &&
        absl::StartsWith(absl::StripLeadingAsciiWhitespace(view), "=")) {
      line = absl::StrCat(key, " = ", TomlString(value));
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("has no line '", key, " = ...'"));
}

// The site config at `path` with the new address and pin, for AcceptReply to write once the
// reply is installed.
StatusOr<std::string> UpdatedSiteConfig(const std::string& path, const std::string& address,
                                        const std::string& fingerprint) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, kMaxReplyFileBytes));
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  RETURN_IF_ERROR(Annotate(ReplaceValue(&lines, "coordinator", address), path));
  RETURN_IF_ERROR(Annotate(ReplaceValue(&lines, "coordinator_fingerprint", fingerprint), path));
  return absl::StrJoin(lines, "\n");
}

}  // namespace

StatusOr<Enrollment> Enroll(const EnrollRequest& request) {
  if (request.out_dir.empty()) return absl::InvalidArgumentError("no output folder given (--out)");
  const std::string& name = request.subject.common_name;
  RETURN_IF_ERROR(ValidateParticipantName(name));
  RETURN_IF_ERROR(Annotate(ValidateCountryCode(request.subject.country), name));
  if (request.role == ParticipantRole::kCoordinator && request.hosts.empty()) {
    return absl::InvalidArgumentError(
        "a coordinator's request needs the host names or IPs sites connect to: add --host HOST");
  }
  if (request.role == ParticipantRole::kSite && !request.hosts.empty()) {
    return absl::InvalidArgumentError("--host is for the coordinator; a site has no host names");
  }
  const std::string key_path = request.out_dir + "/key.pem";
  if (Exists(key_path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        key_path,
        " exists: this folder is enrolled already. To extend a certificate ask the operator "
        "for hansa ca renew (the key stays); to start over with a new key, use another --out"));
  }
  ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::Generate(request.key_type));
  ASSIGN_OR_RETURN(SigningRequest csr, SigningRequest::Create(key, request.subject, request.hosts));
  RETURN_IF_ERROR(MakeDirs(request.out_dir));
  RETURN_IF_ERROR(WritePrivateKeyFile(key_path, key));
  const std::string request_path = request.out_dir + "/request.csr";
  RETURN_IF_ERROR(WriteFileAtomically(request_path, csr.ToPem(), 0644));
  return Enrollment{key_path, request_path, std::move(csr)};
}

StatusOr<std::vector<std::string>> WriteReply(const std::string& reply_dir,
                                              const CaRegistry& registry,
                                              const Certificate& issued) {
  if (reply_dir.empty()) return absl::InvalidArgumentError("no reply folder given (--out)");
  RETURN_IF_ERROR(MakeDirs(reply_dir, 0755));
  std::vector<std::string> written;
  auto write = [&](const std::string& name, const std::string& text) -> Status {
    RETURN_IF_ERROR(WriteFileAtomically(reply_dir + "/" + name, text, 0644));
    written.push_back(name);
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(write("cert.pem", issued.ToPem()));
  RETURN_IF_ERROR(write("ca.pem", registry.ca().certificate().ToPem()));
  if (std::optional<Certificate> coordinator = registry.CurrentCoordinator()) {
    RETURN_IF_ERROR(write("coordinator.sha256", coordinator->Sha256Fingerprint() + "\n"));
  }
  const std::string address = registry.CoordinatorAddress();
  if (!address.empty()) RETURN_IF_ERROR(write("coordinator.address", address + "\n"));
  for (const IssuedRecord& r : registry.records()) {
    if (r.serial_hex != issued.SerialHex() || r.role != ParticipantRole::kCoordinator) continue;
    ASSIGN_OR_RETURN(std::string crl, ReadFile(registry.dir() + "/crl.pem", kMaxReplyFileBytes));
    RETURN_IF_ERROR(write("crl.pem", crl));
  }
  return written;
}

StatusOr<Accepted> AcceptReply(const AcceptOptions& options) {
  const std::string& dir = options.dir;
  const std::string& reply = options.reply_dir;
  ASSIGN_OR_RETURN(PrivateKey key, ReadPrivateKeyFile(dir + "/key.pem"));
  ASSIGN_OR_RETURN(Certificate cert, Certificate::FromFile(reply + "/cert.pem"));
  ASSIGN_OR_RETURN(Certificate ca, Certificate::FromFile(reply + "/ca.pem"));
  if (!ca.IsCa()) {
    return absl::InvalidArgumentError(
        absl::StrCat(reply,
                     "/ca.pem is not a CA certificate; ask the operator for the reply of "
                     "hansa ca sign"));
  }
  const std::string who = cert.Subject().common_name;
  if (Status s = cert.CheckPrivateKeyMatches(key); !s.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the certificate in ", reply, " (of '", who, "') is not for the key in ", dir,
                     "/key.pem: it was issued from another request; send ", dir,
                     "/request.csr to the operator again"));
  }
  RETURN_IF_ERROR(VerifyCertificate(cert, ca, absl::Now()));
  if (Exists(dir + "/ca.pem")) {
    ASSIGN_OR_RETURN(Certificate installed, Certificate::FromFile(dir + "/ca.pem"));
    if (installed.Sha256Fingerprint() != ca.Sha256Fingerprint()) {
      return absl::PermissionDeniedError(
          absl::StrCat("the reply names another CA (", ca.Subject().common_name, ", SHA-256 ",
                       ca.Sha256Fingerprint(), ") than the one installed in ", dir, "/ca.pem (",
                       installed.Sha256Fingerprint(), "); refusing to switch federations"));
    }
  }
  Accepted out{ParticipantRole::kSite, cert, "", false, ""};
  if (VerifyCertificate(cert, ca, absl::Now(), CertificateUsage::kTlsClient).ok()) {
    out.role = ParticipantRole::kSite;
  } else if (VerifyCertificate(cert, ca, absl::Now(), CertificateUsage::kTlsServer).ok()) {
    out.role = ParticipantRole::kCoordinator;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "the certificate of '", who, "' allows neither TLS client nor server authentication"));
  }
  ASSIGN_OR_RETURN(std::string address, ReadLine(reply + "/coordinator.address"));
  if (!options.coordinator_address.empty()) address = options.coordinator_address;
  // It goes into the config as a TOML string, which must be UTF-8; a HOST:PORT is ASCII.
  if (!std::all_of(address.begin(), address.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the coordinator address '", absl::CHexEscape(address),
        "' is not a HOST:PORT (printable ASCII, no blanks); pass --coordinator-address HOST:PORT"));
  }

  if (out.role == ParticipantRole::kSite) {
    ASSIGN_OR_RETURN(out.coordinator_fingerprint, ReadLine(reply + "/coordinator.sha256"));
    if (out.coordinator_fingerprint.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(reply,
                       " has no coordinator.sha256: the operator has not signed the coordinator's "
                       "certificate yet, so there is nothing to pin. Once it is, ask for a reply "
                       "that has it (hansa ca renew)"));
    }
    // The pin is compared with Certificate::Sha256Fingerprint (lowercase hex) as it stands.
    absl::AsciiStrToLower(&out.coordinator_fingerprint);
    if (out.coordinator_fingerprint.size() != 64 ||
        !std::all_of(out.coordinator_fingerprint.begin(), out.coordinator_fingerprint.end(),
                     [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); })) {
      return absl::InvalidArgumentError(absl::StrCat(
          reply, "/coordinator.sha256 does not hold a SHA-256 fingerprint (64 hex digits)"));
    }
    if (address.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(reply, " has no coordinator.address; pass --coordinator-address HOST:PORT"));
    }
  }
  std::optional<RevocationList> crl;
  if (out.role == ParticipantRole::kCoordinator && Exists(reply + "/crl.pem")) {
    ASSIGN_OR_RETURN(crl, RevocationList::FromFile(reply + "/crl.pem", ca));
  }
  // A site config that cannot take the new address and pin refuses the reply before anything
  // is installed, so that a refused reply leaves the folder as it was.
  const std::string site_config = dir + "/site.toml";
  std::optional<std::string> updated_site_config;
  if (out.role == ParticipantRole::kSite && Exists(site_config)) {
    ASSIGN_OR_RETURN(updated_site_config,
                     UpdatedSiteConfig(site_config, address, out.coordinator_fingerprint));
  }
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/cert.pem", cert.ToPem(), 0644));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/ca.pem", ca.ToPem(), 0644));
  if (crl) RETURN_IF_ERROR(WriteRevocationListFile(dir + "/crl.pem", *crl));

  const std::string written_by = "hansa enroll accept";
  if (out.role == ParticipantRole::kSite) {
    out.config_path = site_config;
    if (updated_site_config) {
      RETURN_IF_ERROR(WriteFileAtomically(out.config_path, *updated_site_config, 0644));
    } else {
      SiteConfigTemplate config;
      config.site = who;
      config.federation = FederationOf(ca);
      config.coordinator_address = address;
      config.coordinator_fingerprint = out.coordinator_fingerprint;
      config.dataset_dir = options.dataset_dir;
      config.written_by = written_by;
      RETURN_IF_ERROR(WriteFileAtomically(out.config_path, RenderSiteConfig(config), 0644));
      out.config_created = true;
    }
  } else {
    out.config_path = dir + "/coordinator.toml";
    if (!Exists(out.config_path)) {
      CoordinatorConfigTemplate config;
      config.federation = FederationOf(ca);
      config.listen = address.empty() ? "0.0.0.0:50051" : address;
      config.written_by = written_by;
      if (crl) config.revocation_list = "crl.pem";
      RETURN_IF_ERROR(WriteFileAtomically(out.config_path, RenderCoordinatorConfig(config), 0644));
      out.config_created = true;
    }
  }
  return out;
}

}  // namespace hansa
