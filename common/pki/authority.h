// The federation's certificate authority: a self-signed root that issues one certificate per
// participant. Its private key stays with the federation operator and never enters a kit.
//
// Immutable after construction; Issue() may be called from several threads.
#pragma once

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/status/status.h"

namespace hansa {

// Certificates start an hour in the past so that a participant whose clock is slightly behind
// the operator's does not reject a certificate that was just issued.
inline constexpr absl::Duration kClockSkewAllowance = absl::Hours(1);
inline constexpr int kDefaultCaValidityDays = 3652;  // ten years
inline constexpr int kDefaultCertificateValidityDays = 365;

struct CaOptions {
  std::string federation;    // the CA's CN becomes "<federation> CA"
  std::string organization;  // O; may be empty
  std::string country;       // C; ISO 3166-1 alpha-2
  KeyType key_type = KeyType::kEd25519;
  absl::Time not_before = absl::Now() - kClockSkewAllowance;
  absl::Time not_after = absl::Now() + absl::Hours(24 * kDefaultCaValidityDays);
};

// What a participant certificate says. At least one of server_auth / client_auth is set.
struct CertificateRequest {
  SubjectName subject;  // CN required (at most 64 bytes), O optional, C required
  // OU, optional (at most 64 bytes): a role the CA grants, never one a request asks for
  // (ca_registry.h's kOperatorUnit).
  std::string organizational_unit;
  absl::Time not_before = absl::Now() - kClockSkewAllowance;
  absl::Time not_after = absl::Now() + absl::Hours(24 * kDefaultCertificateValidityDays);
  bool server_auth = false;               // extendedKeyUsage serverAuth: the coordinator
  bool client_auth = false;               // extendedKeyUsage clientAuth: sites
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries (IPv4 or IPv6 literals)
};

class CertificateAuthority {
 public:
  // Generates a CA key and its self-signed certificate: basicConstraints CA:TRUE (critical),
  // keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier.
  static StatusOr<CertificateAuthority> Create(const CaOptions& options);
  // Loads an existing CA (ca.pem + ca-key.pem); checks that the key belongs to the certificate.
  static StatusOr<CertificateAuthority> Load(const std::string& certificate_path,
                                             const std::string& private_key_path);

  const Certificate& certificate() const { return certificate_; }
  const PrivateKey& private_key() const { return key_; }

  // Issues a certificate for `subject_key`: random 127-bit serial, basicConstraints CA:FALSE
  // (critical), keyUsage digitalSignature (critical), the requested extendedKeyUsage and
  // subjectAltName, subject and authority key identifiers. InvalidArgument on a bad request
  // (bad country, empty CN, validity outside the CA's, malformed host name or IP).
  StatusOr<Certificate> Issue(const CertificateRequest& request,
                              const PublicKey& subject_key) const;

 private:
  CertificateAuthority(Certificate certificate, PrivateKey key)
      : certificate_(std::move(certificate)), key_(std::move(key)) {}
  Certificate certificate_;
  PrivateKey key_;
};

// InvalidArgument unless the subject's CN has 1 to 64 characters, O at most 64, neither holds a
// control character, and C is a country code: the subjects the CA issues certificates for.
Status ValidateSubjectName(const SubjectName& subject);
// InvalidArgument unless `name` is a DNS host name (letters, digits, '-' and '.'; labels of
// 1 to 63 characters not starting or ending with '-'; 253 characters at most).
Status ValidateDnsName(std::string_view name);
// True for an IPv4 or IPv6 literal ("127.0.0.1", "::1").
bool IsIpAddress(std::string_view host);

}  // namespace hansa
