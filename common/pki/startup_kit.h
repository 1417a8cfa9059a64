// `hansa provision`: a federation CA and one startup kit per participant, for demos and tests
// only: it generates every participant's private key at the operator. Real sites make their own
// key and request (`hansa enroll`, common/pki/signing_request.h) and the operator signs it
// (`hansa ca sign`, common/pki/ca_registry.h); both write configs with the renderers below.
//
// Layout written under ProvisionRequest::out_dir:
//   ca/ca.pem, ca/ca-key.pem (0600)         stays with the federation operator, never in a kit
//   coordinator/{cert.pem, key.pem (0600), ca.pem, coordinator.toml}
//   sites/<name>/{cert.pem, key.pem (0600), ca.pem, site.toml}
// Config paths are relative to the config file's own folder, so a kit can be moved as a whole.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/status/status.h"

namespace hansa {

struct ParticipantSpec {
  std::string name;          // [a-z0-9-]{1,63}; the certificate's CN
  std::string country;       // ISO 3166-1 alpha-2; the certificate's C
  std::string organization;  // the certificate's O; defaults to the name when empty
};

// Parses "NAME:COUNTRY[:ORG]" ("berlin:DE:Charité Berlin"); ORG may itself contain ':'.
StatusOr<ParticipantSpec> ParseParticipantSpec(std::string_view spec);
// InvalidArgument unless `name` matches [a-z0-9-]{1,63}.
Status ValidateParticipantName(std::string_view name);

struct ProvisionRequest {
  std::string out_dir;
  std::string federation;  // letters, digits, ' ', '.', '_', '-'; 1 to 60 characters
  ParticipantSpec coordinator;
  std::vector<ParticipantSpec> sites;  // at least one
  // Extra subjectAltNames for the coordinator besides localhost and 127.0.0.1 (DNS or IP).
  std::vector<std::string> coordinator_hosts;
  // Where the coordinator listens; sites connect here (or to the first coordinator host when
  // this is a wildcard such as 0.0.0.0:50051).
  std::string listen = "127.0.0.1:50051";
  int validity_days = kDefaultCertificateValidityDays;  // participant certificates
  int ca_validity_days = kDefaultCaValidityDays;
  KeyType key_type = KeyType::kEd25519;
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";  // for the site.toml template
  // The sites share the one data set at dataset_dir (the demo, tests): each site.toml then
  // trains on a disjoint shard of it (shard_index / shard_count). Off, a site trains on all of
  // the files it names: a real site's own data.
  bool shard_shared_data = false;
  bool force = false;  // replace an existing CA in out_dir
};

// What a site.toml template says; written by provision and by `hansa enroll accept`.
struct SiteConfigTemplate {
  std::string site;
  std::string federation;
  std::string coordinator_address;      // HOST:PORT
  std::string coordinator_fingerprint;  // SHA-256 of the coordinator's certificate, hex
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";
  // >= 0: the site trains on shard shard_index of shard_count of shared files (a demo).
  int shard_index = -1;
  int shard_count = 0;
  std::string written_by = "hansa provision";
};
std::string RenderSiteConfig(const SiteConfigTemplate& config);

// What a coordinator.toml template says.
struct CoordinatorConfigTemplate {
  std::string federation;
  std::string listen;
  std::vector<std::string> allowed_sites;
  std::string written_by = "hansa provision";
  // Non-empty: [pki] revocation_list, relative to the config's folder.
  std::string revocation_list;
};
std::string RenderCoordinatorConfig(const CoordinatorConfigTemplate& config);

struct ProvisionedParticipant {
  std::string role;  // "CA", "coordinator" or "site"
  SubjectName subject;
  std::string fingerprint;  // SHA-256 of the certificate, hex
  std::string kit_dir;      // empty for the CA
  std::string config_path;  // empty for the CA
};

struct ProvisionSummary {
  std::string federation;
  std::string out_dir;
  std::string ca_key_path;
  std::string coordinator_address;  // what site.toml's coordinator says
  KeyType key_type = KeyType::kEd25519;
  absl::Time certificates_expire;
  std::vector<ProvisionedParticipant> participants;  // CA, coordinator, then sites in order

  // A short human-readable report: participants, countries, fingerprints, kit folders.
  std::string ToText() const;
};

// One participant's kit, in memory: what WriteStartupKits writes to out_dir/<dir>/ as
// cert.pem, key.pem, ca.pem and the config file.
struct StartupKit {
  std::string dir;          // "coordinator" or "sites/<name>", relative to out_dir
  std::string config_name;  // "coordinator.toml" or "site.toml"
  std::string config;
  Certificate certificate;
  PrivateKey key;
};

struct StartupKits {
  CertificateAuthority ca;
  std::string coordinator_address;  // what the site configs say
  std::vector<StartupKit> kits;     // the coordinator's, then one per site in request order
};

// Validates the request, creates the CA and issues every certificate, in memory only (out_dir
// and force are not looked at): the provisioning of WriteStartupKits, and a federation made
// on the fly (the simulator's loopback transport).
StatusOr<StartupKits> IssueStartupKits(const ProvisionRequest& request);

// Creates the CA, issues every certificate and writes all kits. Nothing is written unless the
// whole request is valid. FailedPrecondition when out_dir already holds a CA and !force.
StatusOr<ProvisionSummary> WriteStartupKits(const ProvisionRequest& request);

}  // namespace hansa
