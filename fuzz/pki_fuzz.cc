// PEM and certificate loading (common/pki): the first byte picks what the rest is read as:
//   0  a certificate (Certificate::FromPem): every accessor, a PEM round trip, verification
//      against the seed federation's CA for each usage, and as a CA for that CA itself;
//   1  a private key (PrivateKey::FromPem): a signature that must verify with its public half;
//   2  a public key (PublicKey::FromPem), then the rest split at the first NUL as message and
//      signature;
//   3  the name checks of provisioning: participant specs, host names, IPs, countries, key types.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/pki/startup_kit.h"
#include "fuzz/federation_ca.h"

namespace {

void Certificate(std::string_view pem) {
  auto cert = hansa::Certificate::FromPem(pem);
  if (!cert.ok()) return;
  (void)cert->Subject();
  (void)cert->Issuer();
  (void)hansa::FormatCertificateTime(cert->NotBefore());
  (void)hansa::FormatCertificateTime(cert->NotAfter());
  (void)cert->SerialHex();
  (void)cert->SubjectAltNames();
  (void)cert->PublicKeyPem();
  (void)cert->GetPublicKey();
  const std::string fingerprint = cert->Sha256Fingerprint();
  auto again = hansa::Certificate::FromPem(cert->ToPem());
  if (!again.ok() || again->Sha256Fingerprint() != fingerprint) abort();
  const absl::Time at = absl::FromCivil(absl::CivilSecond(2027, 1, 1), absl::UTCTimeZone());
  for (auto usage : {hansa::CertificateUsage::kAny, hansa::CertificateUsage::kTlsServer,
                     hansa::CertificateUsage::kTlsClient}) {
    (void)hansa::VerifyCertificate(*cert, hansa::fuzz::FederationCa(), at, usage);
  }
  if (cert->IsCa()) (void)hansa::VerifyCertificate(hansa::fuzz::FederationCa(), *cert, at);
}

void Private(std::string_view pem) {
  auto key = hansa::PrivateKey::FromPem(pem);
  if (!key.ok()) return;
  auto sig = key->Sign("fuzz");
  if (!sig.ok() || !key->GetPublicKey().Verify("fuzz", *sig).ok()) abort();
  auto out = key->ToPem();
  if (!out.ok() || !hansa::PrivateKey::FromPem(*out).ok()) abort();
}

void Public(std::string_view bytes) {
  const size_t nul = bytes.find('\0');
  auto key = hansa::PublicKey::FromPem(bytes.substr(0, nul));
  if (!key.ok()) return;
  if (!hansa::PublicKey::FromPem(key->ToPem()).ok()) abort();
  if (nul == std::string_view::npos) return;
  const std::string_view rest = bytes.substr(nul + 1);
  const size_t split = rest.find('\0');
  (void)key->Verify(rest.substr(0, split),
                    split == std::string_view::npos ? "" : rest.substr(split + 1));
}

void Names(std::string_view text) {
  (void)hansa::ParseParticipantSpec(text);
  (void)hansa::ValidateParticipantName(text);
  (void)hansa::ValidateDnsName(text);
  (void)hansa::IsIpAddress(text);
  (void)hansa::ValidateCountryCode(text);
  (void)hansa::ParseKeyType(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      Certificate(rest);
      break;
    case 1:
      Private(rest);
      break;
    case 2:
      Public(rest);
      break;
    default:
      Names(rest);
      break;
  }
  return 0;
}
