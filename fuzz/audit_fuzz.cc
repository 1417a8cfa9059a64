// A coordinator's audit.jsonl and a site's egress.jsonl as a reviewer checks them
// (common/audit/verify.h, reconcile.h): both logs verified against a CA, then reconciled.
//
// Input: one flags byte, the audit log, a NUL byte, the egress ledger. The flags pick how the
// logs are checked:
//   bit 0 clear: against the CA of the federation that wrote the seed logs (kFederationCa), so
//                the seeds verify as they are and mutations probe parsing, canonical form, the
//                chain and the signatures;
//   bit 0 set:   every line that parses as a record is first re-signed (and, with bit 1, its
//                seq and prev rewritten into a valid chain) by a coordinator and a site of a CA
//                made at start-up, so that mutated contents (events, fields, counts, heads)
//                get past the signatures into the chain rules and reconciliation. A
//                signer_renewed record (after the first) embeds a renewed certificate of the
//                same signer, which signs from there on (record.h), and gets previous_signer
//                when it has none.
// Either way the records that parse are reconciled as they are. Everything is in memory.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/audit/reconcile.h"
#include "common/audit/record.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/pki/authority.h"
#include "fuzz/federation_ca.h"

namespace {

struct Signer {
  hansa::PrivateKey key;
  hansa::Certificate certificate;
  std::string fingerprint;
  std::string pem;
  // The same key and subject under a certificate issued a day later (hansa ca renew).
  std::string renewed_fingerprint;
  std::string renewed_pem;
};

// A CA valid from 2000 to 2099 (records of any plausible time verify) and two participants.
struct World {
  hansa::Certificate federation_ca;
  hansa::CertificateAuthority ca;
  Signer coordinator;
  Signer site;
};

Signer Issue(const hansa::CertificateAuthority& ca, const std::string& name, bool server) {
  auto key = hansa::PrivateKey::Generate();
  if (!key.ok()) abort();
  hansa::CertificateRequest request;
  request.subject = {name, "Fuzz", "DE"};
  request.not_before = absl::FromCivil(absl::CivilSecond(2000, 1, 2), absl::UTCTimeZone());
  request.not_after = absl::FromCivil(absl::CivilSecond(2099, 1, 1), absl::UTCTimeZone());
  request.server_auth = server;
  request.client_auth = !server;
  auto certificate = ca.Issue(request, key->GetPublicKey());
  request.not_before += absl::Hours(24);
  auto renewed = ca.Issue(request, key->GetPublicKey());
  if (!certificate.ok() || !renewed.ok()) abort();
  std::string fingerprint = certificate->Sha256Fingerprint();
  std::string pem = certificate->ToPem();
  return {*std::move(key), *std::move(certificate),      std::move(fingerprint),
          std::move(pem),  renewed->Sha256Fingerprint(), renewed->ToPem()};
}

const World& GetWorld() {
  static const World* world = [] {
    auto federation_ca = hansa::Certificate::FromPem(hansa::fuzz::kFederationCa);
    hansa::CaOptions options;
    options.federation = "fuzz";
    options.country = "DE";
    options.not_before = absl::FromCivil(absl::CivilSecond(2000, 1, 1), absl::UTCTimeZone());
    options.not_after = absl::FromCivil(absl::CivilSecond(2100, 1, 1), absl::UTCTimeZone());
    auto ca = hansa::CertificateAuthority::Create(options);
    if (!federation_ca.ok() || !ca.ok()) abort();
    Signer coordinator = Issue(*ca, "coordinator", true);
    Signer site = Issue(*ca, "alpha", false);
    return new World{*std::move(federation_ca), *std::move(ca), std::move(coordinator),
                     std::move(site)};
  }();
  return *world;
}

std::vector<std::string_view> Lines(std::string_view log) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string_view::npos) end = log.size();
    lines.push_back(log.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The log with every parsing record signed by `signer`; `rechain` also fixes seq and prev.
std::string Resign(std::string_view log, const Signer& signer, bool rechain) {
  std::string out;
  std::string prev = hansa::kGenesisPrev;
  int64_t seq = 0;
  bool renewed = false;
  for (std::string_view line : Lines(log)) {
    auto record = hansa::ParseRecordLine(line);
    std::string text(line);
    if (record.ok()) {
      const bool handover = seq > 0 && !renewed && record->event == "signer_renewed";
      if (handover && record->fields.find("previous_signer") == record->fields.end()) {
        record->fields["previous_signer"] = signer.fingerprint;
      }
      renewed = renewed || handover;
      record->signer = renewed ? signer.renewed_fingerprint : signer.fingerprint;
      record->certificate_pem = seq == 0 ? signer.pem : handover ? signer.renewed_pem : "";
      if (rechain) {
        record->seq = seq;
        record->prev = prev;
      }
      auto canonical = hansa::CanonicalRecordBytes(*record);
      auto sig = canonical.ok() ? signer.key.Sign(*canonical) : canonical.status();
      if (sig.ok()) {
        record->sig = hansa::ToHex(reinterpret_cast<const uint8_t*>(sig->data()), sig->size());
        auto formatted = hansa::FormatRecordLine(*record);
        if (formatted.ok()) text = *std::move(formatted);
      }
    }
    prev = hansa::LineDigest(text);
    ++seq;
    out += text;
    out += '\n';
  }
  if (!log.empty() && log.back() != '\n' && !out.empty()) out.pop_back();  // keep a torn tail
  return out;
}

std::vector<hansa::AuditRecord> Records(std::string_view log) {
  std::vector<hansa::AuditRecord> records;
  for (std::string_view line : Lines(log)) {
    auto record = hansa::ParseRecordLine(line);
    if (record.ok()) records.push_back(*std::move(record));
  }
  return records;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const World& world = GetWorld();
  const uint8_t flags = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nul = rest.find('\0');
  std::string audit(rest.substr(0, nul));
  std::string egress(nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1));
  const hansa::Certificate* ca = &world.federation_ca;
  if (flags & 1) {
    audit = Resign(audit, world.coordinator, flags & 2);
    egress = Resign(egress, world.site, flags & 2);
    ca = &world.ca.certificate();
  }

  hansa::VerifyOptions server;
  server.expected_head = (flags & 4) ? std::string(hansa::kGenesisPrev) : "";
  auto coordinator = hansa::VerifyAuditLogContents(audit, *ca, "audit.jsonl", server);
  hansa::VerifyOptions client;
  client.usage = hansa::CertificateUsage::kTlsClient;
  client.expected_signer = (flags & 8) ? "alpha" : "";
  auto site = hansa::VerifyAuditLogContents(egress, *ca, "egress.jsonl", client);
  // Each signer_renewed a verified log holds is one handover to another certificate.
  for (const auto* summary : {&coordinator, &site}) {
    if (!summary->ok()) continue;
    (void)(*summary)->ToText();
    auto renewals = (*summary)->events.find("signer_renewed");
    const size_t handovers = renewals == (*summary)->events.end() ? 0 : renewals->second;
    if (handovers != (*summary)->earlier_signers.size()) abort();
  }

  const std::string name = site.ok() ? site->signer.common_name : "alpha";
  const std::string fingerprint = site.ok() ? site->signer_fingerprint : "";
  hansa::ReconcileResult result =
      hansa::ReconcileRecords(Records(audit), Records(egress), name, fingerprint);
  (void)result.ToText();
  if (result.heads_confirmed > result.heads_shown) abort();
  return 0;
}
