// X.509 certificates of a federation: loading, identity fields, fingerprints, and verification
// against the federation CA.
//
// A participant's identity is its certificate: the subject's CN is its name, O its
// organisation and C the ISO 3166 country of its jurisdiction. A Certificate is immutable and
// copyable (copies share the OpenSSL object); any thread may read it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/pki/key.h"
#include "common/status/status.h"

typedef struct x509_st X509;

namespace hansa {

// The identity fields of a subject. Empty strings stand for absent fields.
struct SubjectName {
  std::string common_name;   // CN: the participant's name ("berlin"), or "<federation> CA"
  std::string organization;  // O
  std::string country;       // C: ISO 3166-1 alpha-2, two uppercase letters

  bool operator==(const SubjectName& o) const {
    return common_name == o.common_name && organization == o.organization && country == o.country;
  }
};

// InvalidArgument unless `country` is two uppercase ASCII letters ("DE").
Status ValidateCountryCode(std::string_view country);

// What a certificate will be used for, checked against its extendedKeyUsage.
enum class CertificateUsage { kAny, kTlsServer, kTlsClient };

class Certificate {
 public:
  // Parses the first PEM "CERTIFICATE" in `pem`; InvalidArgument when there is none, or when
  // its public key or its validity times do not decode.
  static StatusOr<Certificate> FromPem(std::string_view pem);
  // Reads and parses a PEM file; errors name the file.
  static StatusOr<Certificate> FromFile(const std::string& path);

  std::string ToPem() const;
  std::string ToDer() const;
  // SHA-256 over the DER encoding, lowercase hex without separators (64 characters); the same
  // value as `openssl x509 -fingerprint -sha256` prints, without colons.
  std::string Sha256Fingerprint() const;
  SubjectName Subject() const;
  SubjectName Issuer() const;
  // The subject's OU; empty when absent. The CA writes one only for a role it grants
  // (ca_registry.h: "operator").
  std::string OrganizationalUnit() const;
  absl::Time NotBefore() const;
  absl::Time NotAfter() const;
  // The serial number as lowercase hex.
  std::string SerialHex() const;
  // subjectAltName entries as "DNS:localhost", "IP:127.0.0.1" (in certificate order).
  std::vector<std::string> SubjectAltNames() const;
  // True when basicConstraints says CA:TRUE.
  bool IsCa() const;

  // InvalidArgument when the key is neither Ed25519 nor ECDSA P-256.
  StatusOr<PublicKey> GetPublicKey() const;
  // SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----"), for any key type.
  std::string PublicKeyPem() const;
  // OK when `key` is the private half of this certificate's public key.
  Status CheckPrivateKeyMatches(const PrivateKey& key) const;

  // The OpenSSL certificate, owned by this object.
  X509* get() const { return x509_.get(); }

 private:
  explicit Certificate(std::shared_ptr<X509> x509) : x509_(std::move(x509)) {}
  friend class CertificateAuthority;
  std::shared_ptr<X509> x509_;
};

// Checks that `cert` was issued by `ca` (signature and names), that both are valid at time
// `at`, that `cert` is not itself a CA, and that its extendedKeyUsage allows `usage`.
// Errors (all PermissionDenied, naming the subject's CN):
//   "certificate of 'x' was not signed by the federation CA (...)"
//   "certificate of 'x' expired on 2031-01-01 00:00:00 UTC"
//   "certificate of 'x' is not yet valid: valid from ... (check this machine's clock)"
//   "the federation CA certificate expired on ..." / "is not yet valid ..."
//   "certificate of 'x' is not allowed for TLS client authentication"
// REQUIRES: `ca` is a CA certificate (IsCa()); InvalidArgument otherwise.
Status VerifyCertificate(const Certificate& cert, const Certificate& ca, absl::Time at,
                         CertificateUsage usage = CertificateUsage::kAny);

// A participant's look at its own certificate before it connects (and before each
// reconnection), so that an expired or early certificate is named instead of failing as a bare
// TLS handshake error. OK when `at` lies within [NotBefore, NotAfter]; else, naming the CN:
//   PermissionDenied    "certificate of 'x' expired at 2031-01-01 00:00:00 UTC (now ...)": it
//                       never becomes valid again
//   FailedPrecondition  "certificate of 'x' is not valid until ... (now ... by this machine's
//                       clock, which may be behind)": it may, once the clock gets there
Status CheckCertificateTime(const Certificate& cert, absl::Time at);

// "2031-01-01 00:00:00 UTC": how certificate times appear in messages and summaries.
std::string FormatCertificateTime(absl::Time t);

}  // namespace hansa
