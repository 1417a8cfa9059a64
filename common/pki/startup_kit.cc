#include "common/pki/startup_kit.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

struct HostPort {
  std::string host;  // without brackets
  int port = 0;
};

// "127.0.0.1:50051", "[::1]:50051", "coordinator.example.org:443".
StatusOr<HostPort> ParseListen(const std::string& listen) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("listen address '", listen, "' ", why,
                                                   "; write HOST:PORT, e.g. 127.0.0.1:50051"));
  };
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("has no port");
  HostPort out;
  out.host = listen.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  const std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad("has no numeric port");
  }
  out.port = std::stoi(port);
  if (out.port < 1 || out.port > 65535) return bad("has a port outside 1..65535");
  if (!IsIpAddress(out.host) && !ValidateDnsName(out.host).ok()) return bad("has a bad host");
  return out;
}

bool IsWildcard(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

std::string JoinHostPort(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
}

Status ValidateFederationName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 60 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' ||
           c == '.' || c == '_' || c == '-';
  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("federation name '", name,
                   "' must have 1 to 60 characters: letters, digits, space, '.', '_' or '-'"));
}

Status ValidateRequest(const ProvisionRequest& request) {
  RETURN_IF_ERROR(ValidateFederationName(request.federation));
  if (request.sites.empty()) {
    return absl::InvalidArgumentError("a federation needs at least one site; add --site NAME:CC");
  }
  std::set<std::string> names;
  auto check = [&](const ParticipantSpec& p, const char* role) -> Status {
    RETURN_IF_ERROR(Annotate(ValidateParticipantName(p.name), role));
    RETURN_IF_ERROR(
        Annotate(ValidateCountryCode(p.country), absl::StrCat(role, " '", p.name, "'")));
    if (!names.insert(p.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the name '", p.name, "' is given twice; every participant needs its own name"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check(request.coordinator, "coordinator"));
  for (const ParticipantSpec& site : request.sites) RETURN_IF_ERROR(check(site, "site"));
  if (request.validity_days < 1 || request.validity_days > request.ca_validity_days) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate validity of ", request.validity_days,
                     " days must be between 1 and the CA's ", request.ca_validity_days, " days"));
  }
  for (const std::string& host : request.coordinator_hosts) {
    if (!IsIpAddress(host)) RETURN_IF_ERROR(Annotate(ValidateDnsName(host), "--host"));
  }
  return absl::OkStatus();
}

// Where sites reach the coordinator: the listen address, unless that is a wildcard.
StatusOr<std::string> CoordinatorAddress(const ProvisionRequest& request, const HostPort& listen) {
  if (!IsWildcard(listen.host)) return JoinHostPort(listen.host, listen.port);
  if (request.coordinator_hosts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the coordinator listens on ", request.listen,
        ", which sites cannot connect to; give the address sites should use with --host"));
  }
  return JoinHostPort(request.coordinator_hosts.front(), listen.port);
}

CertificateRequest CoordinatorCertificateRequest(const ProvisionRequest& request,
                                                 const HostPort& listen, absl::Time now) {
  CertificateRequest cr;
  cr.subject = {request.coordinator.name, request.coordinator.organization,
                request.coordinator.country};
  cr.not_before = now - kClockSkewAllowance;
  cr.not_after = now + absl::Hours(24 * request.validity_days);
  cr.server_auth = true;
  std::vector<std::string> hosts = {"localhost", "127.0.0.1"};
  if (!IsWildcard(listen.host)) hosts.push_back(listen.host);
  hosts.insert(hosts.end(), request.coordinator_hosts.begin(), request.coordinator_hosts.end());
  std::set<std::string> seen;
  for (const std::string& host : hosts) {
    if (!seen.insert(host).second) continue;
    (IsIpAddress(host) ? cr.ip_addresses : cr.dns_names).push_back(host);
  }
  return cr;
}

Status WriteKit(const std::string& out, const StartupKit& kit, const Certificate& ca) {
  const std::string dir = out + "/" + kit.dir;
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/cert.pem", kit.certificate.ToPem(), 0644));
  RETURN_IF_ERROR(WritePrivateKeyFile(dir + "/key.pem", kit.key));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/ca.pem", ca.ToPem(), 0644));
  return WriteFileAtomically(dir + "/" + kit.config_name, kit.config, 0644);
}

StatusOr<StartupKit> MakeKit(const CertificateAuthority& ca, const CertificateRequest& cr,
                             KeyType type, std::string dir, std::string config_name) {
  ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::Generate(type));
  ASSIGN_OR_RETURN(Certificate cert, ca.Issue(cr, key.GetPublicKey()));
  return StartupKit{std::move(dir), std::move(config_name), "", std::move(cert), std::move(key)};
}

// Characters as a terminal shows them: UTF-8 continuation bytes take no column.
size_t DisplayWidth(const std::string& s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string Pad(const std::string& s, size_t width) {
  size_t w = DisplayWidth(s);
  return w >= width ? s : s + std::string(width - w, ' ');
}

}  // namespace

std::string RenderCoordinatorConfig(const CoordinatorConfigTemplate& config) {
  std::vector<std::string> allowed;
  for (const std::string& site : config.allowed_sites) allowed.push_back(TomlString(site));
  return absl::StrCat(
      "# Coordinator of federation ", TomlString(config.federation), ", written by ",
      config.written_by, ".\n", "# Paths are relative to this file's folder.\n", "[federation]\n",
      "name = ", TomlString(config.federation), "\n",
      "# The study's identifier and GDPR facts, in every plan the sites consent to. DEMO VALUES:\n"
      "# replace them with the study's own before it processes personal data.\n",
      "study = \"demo\"\n",
      "purpose = \"DEMO: test a federated training set-up on public data (no personal data)\"\n",
      "legal_basis = \"DEMO: none needed (no personal data); a study states its article, e.g. "
      "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR\"\n",
      "controllers = [\"DEMO: the federation operator\"]\n", "retention_days = 30\n",
      "dpia_reference = \"DEMO: none\"\n\n", "[coordinator]\n",
      "listen = ", TomlString(config.listen), "\n", "state_dir = \"state\"\n",
      "certificate = \"cert.pem\"\n", "private_key = \"key.pem\"\n",
      "ca_certificate = \"ca.pem\"\n\n", "[sites]\n", "allowed = [", absl::StrJoin(allowed, ", "),
      "]\n",
      config.revocation_list.empty()
          ? std::string()
          : absl::StrCat("\n[pki]\n# The federation CA's revocation list: replace "
                         "it with each new crl.pem from hansa ca revoke.\n",
                         "revocation_list = ", TomlString(config.revocation_list), "\n"));
}

std::string RenderSiteConfig(const SiteConfigTemplate& config) {
  const std::string& data = config.dataset_dir;
  const bool shard = config.shard_index >= 0;
  return absl::StrCat(
      "# Site ", TomlString(config.site), " of federation ", TomlString(config.federation),
      ", written by ", config.written_by, ".\n", "# Paths are relative to this file's folder.\n",
      "[site]\n", "name = ", TomlString(config.site), "\n",
      "coordinator = ", TomlString(config.coordinator_address), "\n",
      "certificate = \"cert.pem\"\n", "private_key = \"key.pem\"\n",
      "ca_certificate = \"ca.pem\"\n", "state_dir = \"state\"\n\n", "[policy]\n",
      "# The only coordinator this site talks to: SHA-256 of its certificate.\n",
      "coordinator_fingerprint = ", TomlString(config.coordinator_fingerprint), "\n",
      "# To take part in one study only, name it (its coordinator.toml federation.study):\n",
      "# study = \"demo\"\n\n", "[data]\n",
      shard ? "# Every site of this federation reads the same files and trains on its own shard.\n"
            : "# This site's own files: point these at them. The site trains on all of them.\n",
      "train_images = ", TomlString(data + "/train-images-idx3-ubyte.gz"), "\n",
      "train_labels = ", TomlString(data + "/train-labels-idx1-ubyte.gz"), "\n",
      "test_images = ", TomlString(data + "/t10k-images-idx3-ubyte.gz"), "\n",
      "test_labels = ", TomlString(data + "/t10k-labels-idx1-ubyte.gz"), "\n",
      shard ? absl::StrCat("shard_index = ", config.shard_index, "\n",
                           "shard_count = ", config.shard_count, "\n")
            : std::string());
}

Status ValidateParticipantName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("name '", std::string(name),
                   "' must have 1 to 63 characters, each a lowercase letter, a digit or '-'"));
}

StatusOr<ParticipantSpec> ParseParticipantSpec(std::string_view spec) {
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(spec.data(), spec.size()), absl::MaxSplits(':', 2));
  if (parts.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", std::string(spec), "' should be NAME:COUNTRY[:ORGANISATION], e.g. berlin:DE"));
  }
  ParticipantSpec out{parts[0], parts[1], parts.size() == 3 ? parts[2] : ""};
  RETURN_IF_ERROR(ValidateParticipantName(out.name));
  RETURN_IF_ERROR(Annotate(ValidateCountryCode(out.country), out.name));
  if (parts.size() == 3 && out.organization.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(spec), "' has an empty organisation after the second ':'"));
  }
  return out;
}

StatusOr<StartupKits> IssueStartupKits(const ProvisionRequest& original) {
  ProvisionRequest request = original;
  auto default_organization = [](ParticipantSpec& p) {
    if (p.organization.empty()) p.organization = p.name;
  };
  default_organization(request.coordinator);
  for (ParticipantSpec& site : request.sites) default_organization(site);
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(HostPort listen, ParseListen(request.listen));
  ASSIGN_OR_RETURN(std::string coordinator_address, CoordinatorAddress(request, listen));

  const absl::Time now = absl::Now();
  CaOptions ca_options;
  ca_options.federation = request.federation;
  ca_options.organization = request.coordinator.organization;
  ca_options.country = request.coordinator.country;
  ca_options.key_type = request.key_type;
  ca_options.not_before = now - kClockSkewAllowance;
  ca_options.not_after = now + absl::Hours(24 * request.ca_validity_days);
  ASSIGN_OR_RETURN(CertificateAuthority ca, CertificateAuthority::Create(ca_options));

  std::vector<StartupKit> kits;
  ASSIGN_OR_RETURN(StartupKit coordinator,
                   MakeKit(ca, CoordinatorCertificateRequest(request, listen, now),
                           request.key_type, "coordinator", "coordinator.toml"));
  CoordinatorConfigTemplate coordinator_config;
  coordinator_config.federation = request.federation;
  coordinator_config.listen = request.listen;
  for (const ParticipantSpec& site : request.sites) {
    coordinator_config.allowed_sites.push_back(site.name);
  }
  coordinator.config = RenderCoordinatorConfig(coordinator_config);
  const std::string coordinator_fingerprint = coordinator.certificate.Sha256Fingerprint();
  kits.push_back(std::move(coordinator));
  for (size_t i = 0; i < request.sites.size(); ++i) {
    const ParticipantSpec& site = request.sites[i];
    CertificateRequest cr;
    cr.subject = {site.name, site.organization, site.country};
    cr.not_before = now - kClockSkewAllowance;
    cr.not_after = now + absl::Hours(24 * request.validity_days);
    cr.client_auth = true;
    cr.dns_names = {site.name};
    ASSIGN_OR_RETURN(StartupKit kit,
                     MakeKit(ca, cr, request.key_type, "sites/" + site.name, "site.toml"));
    SiteConfigTemplate site_config;
    site_config.site = site.name;
    site_config.federation = request.federation;
    site_config.coordinator_address = coordinator_address;
    site_config.coordinator_fingerprint = coordinator_fingerprint;
    site_config.dataset_dir = request.dataset_dir;
    if (request.shard_shared_data) {
      site_config.shard_index = static_cast<int>(i);
      site_config.shard_count = static_cast<int>(request.sites.size());
    }
    kit.config = RenderSiteConfig(site_config);
    kits.push_back(std::move(kit));
  }
  return StartupKits{std::move(ca), std::move(coordinator_address), std::move(kits)};
}

StatusOr<ProvisionSummary> WriteStartupKits(const ProvisionRequest& request) {
  const std::string out = request.out_dir;
  if (out.empty()) return absl::InvalidArgumentError("no output folder given");
  const std::string ca_dir = out + "/ca";
  std::error_code ec;
  if (!request.force && (std::filesystem::exists(ca_dir + "/ca.pem", ec) ||
                         std::filesystem::exists(ca_dir + "/ca-key.pem", ec))) {
    return absl::FailedPreconditionError(
        absl::StrCat(ca_dir,
                     " already holds a federation CA; a new one would invalidate every certificate "
                     "it issued. Choose another --out, or pass --force to replace it"));
  }
  // Everything is generated in memory first, so a bad request writes nothing.
  ASSIGN_OR_RETURN(StartupKits issued, IssueStartupKits(request));
  const CertificateAuthority& ca = issued.ca;
  const std::vector<StartupKit>& kits = issued.kits;

  // Kits first, the CA last: if writing stops half-way, no CA exists yet and a rerun needs
  // no --force.
  RETURN_IF_ERROR(MakeDirs(out));
  for (const StartupKit& kit : kits) RETURN_IF_ERROR(WriteKit(out, kit, ca.certificate()));
  RETURN_IF_ERROR(MakeDirs(ca_dir));
  RETURN_IF_ERROR(WritePrivateKeyFile(ca_dir + "/ca-key.pem", ca.private_key()));
  RETURN_IF_ERROR(WriteFileAtomically(ca_dir + "/ca.pem", ca.certificate().ToPem(), 0644));

  ProvisionSummary summary;
  summary.federation = request.federation;
  summary.out_dir = out;
  summary.ca_key_path = ca_dir + "/ca-key.pem";
  summary.coordinator_address = issued.coordinator_address;
  summary.key_type = request.key_type;
  summary.certificates_expire = kits.front().certificate.NotAfter();
  summary.participants.push_back(
      {"CA", ca.certificate().Subject(), ca.certificate().Sha256Fingerprint(), "", ""});
  for (size_t i = 0; i < kits.size(); ++i) {
    const std::string dir = out + "/" + kits[i].dir;
    summary.participants.push_back({i == 0 ? "coordinator" : "site", kits[i].certificate.Subject(),
                                    kits[i].certificate.Sha256Fingerprint(), dir,
                                    dir + "/" + kits[i].config_name});
  }
  return summary;
}

std::string ProvisionSummary::ToText() const {
  size_t name_w = 4, org_w = 12;
  for (const auto& p : participants) {
    name_w = std::max(name_w, DisplayWidth(p.subject.common_name));
    org_w = std::max(org_w, DisplayWidth(p.subject.organization));
  }
  std::string text =
      absl::StrCat("Federation '", federation, "' provisioned in ", out_dir, " (",
                   KeyTypeName(key_type), " keys; participant certificates valid until ",
                   FormatCertificateTime(certificates_expire), ")\n\n");
  absl::StrAppend(&text, "  ", Pad("role", 13), Pad("name", name_w + 2), "country  ",
                  Pad("organisation", org_w + 2), "certificate SHA-256\n");
  for (const auto& p : participants) {
    absl::StrAppend(&text, "  ", Pad(p.role, 13), Pad(p.subject.common_name, name_w + 2),
                    Pad(p.subject.country, 9), Pad(p.subject.organization, org_w + 2),
                    p.fingerprint, "\n");
  }
  absl::StrAppend(&text, "\nStartup kits (copy each folder to its participant as a whole):\n");
  for (const auto& p : participants) {
    if (p.kit_dir.empty()) continue;
    const char* binary = p.role == "coordinator" ? "hansa-coordinator" : "hansa-client";
    absl::StrAppend(&text, "  ", Pad(p.subject.common_name, name_w + 2), binary, " --config ",
                    p.config_path, "\n");
  }
  absl::StrAppend(&text, "\nSites connect to ", coordinator_address,
                  " and accept only the coordinator certificate above.\n", "The CA key ",
                  ca_key_path, " stays with the federation operator: never copy it into a kit.\n",
                  "\nFor demos and tests only: hansa provision generated every participant's "
                  "private key here, at the operator.\nA real site makes its own key and request "
                  "(hansa enroll) and the operator signs it (hansa ca init, hansa ca sign).\n");
  return text;
}

}  // namespace hansa
