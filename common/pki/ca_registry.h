// The federation operator's CA folder: the CA made once, and the record of every certificate
// it issued, renewed and revoked.
//
// Layout of a CA folder (`hansa ca init --dir CA_DIR`):
//   ca.pem                 the federation CA certificate (public; in every participant's kit)
//   ca-key.pem (0600)      its private key: the only private key in the folder
//   crl.pem                the revocation list, re-signed at every revocation
//   index.tsv              one line per issued certificate: serial, name, role, not_after,
//                          status, revoked_at, reason, SHA-256 fingerprint
//   issued/<serial>.pem    every issued certificate
//   coordinator.address    HOST:PORT sites connect to (set when the coordinator is signed)
// No participant's private key ever enters the folder: certificates are issued from signing
// requests (common/pki/signing_request.h).
//
// Threading: a CaRegistry belongs to one thread. Between processes, an open registry holds an
// exclusive lock (flock on CA_DIR/lock) so two `hansa ca` commands never interleave writes: a
// second Init or Open of a folder while one is open fails at once with Unavailable.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/pki/signing_request.h"
#include "common/status/status.h"

namespace hansa {

// Warn about certificates that expire within this window (`hansa ca list`).
inline constexpr absl::Duration kExpiryWarning = absl::Hours(24 * 30);
// A revocation list is re-signed at every revocation; with none it stays current this long.
inline constexpr int kRevocationListValidityDays = 365;

// An operator is a person, not a participant: a TLS client certificate with OU=operator
// (kOperatorUnit) that opens the coordinator's dashboard when it is served beyond loopback, and
// joins no round (its name is in no [sites] allowed list).
enum class ParticipantRole { kSite, kCoordinator, kOperator };
// The subject's OU the CA writes into an operator's certificate, and only there.
inline constexpr char kOperatorUnit[] = "operator";
// "site" / "coordinator" / "operator".
std::string RoleName(ParticipantRole role);
StatusOr<ParticipantRole> ParseRole(std::string_view name);

struct IssuedRecord {
  std::string serial_hex;
  std::string name;  // the certificate's CN
  ParticipantRole role = ParticipantRole::kSite;
  absl::Time not_after;
  bool revoked = false;
  absl::Time revoked_at = absl::InfinitePast();  // when revoked
  std::string reason;                            // when revoked: an RFC 5280 reason name
  std::string fingerprint;                       // SHA-256 of the certificate

  // "valid", "expired" or "revoked" at time `now`.
  std::string Status(absl::Time now) const;
  bool ValidAt(absl::Time now) const { return !revoked && now <= not_after; }
};

struct SignOptions {
  ParticipantRole role = ParticipantRole::kSite;
  int days = kDefaultCertificateValidityDays;
  // Host names / IPs added to what a coordinator's request asks for (coordinator only).
  std::vector<std::string> extra_hosts;
  // What sites connect to; default: the first host name of the certificate, port 50051
  // (coordinator only).
  std::string address;
  absl::Time now = absl::Now();
};

class CaRegistry {
 public:
  // Creates the CA in `dir` (made if absent): ca.pem, ca-key.pem, an empty crl.pem, an empty
  // index. FailedPrecondition when `dir` already holds a CA: a CA is created once, and a new one
  // would invalidate every certificate the old one issued.
  static StatusOr<CaRegistry> Init(const std::string& dir, const CaOptions& options);
  // Opens an existing CA folder. NotFound "... holds no federation CA (run hansa ca init)".
  static StatusOr<CaRegistry> Open(const std::string& dir);

  CaRegistry(CaRegistry&&) noexcept;
  CaRegistry& operator=(CaRegistry&&) noexcept;
  ~CaRegistry();

  const std::string& dir() const { return dir_; }
  const CertificateAuthority& ca() const { return ca_; }
  const std::vector<IssuedRecord>& records() const { return records_; }

  // Issues a certificate from a verified request and records it. The subject is the request's
  // CN, O and C; an OU only the CA sets: kOperatorUnit for an operator, none otherwise, whatever
  // the request asked for. InvalidArgument on a bad name (ValidateParticipantName), country or
  // validity, or a coordinator request without any host name; AlreadyExists "... already holds a
  // valid certificate ... hansa ca renew" when `request`'s name holds an unrevoked, unexpired
  // certificate.
  StatusOr<Certificate> Sign(const SigningRequest& request, const SignOptions& options);
  // A new certificate for `name`'s newest certificate's key, subject, role and names, valid from
  // `now` for `days`; the old one stays valid until it expires. NotFound for an unknown name;
  // FailedPrecondition when its newest certificate is revoked.
  StatusOr<Certificate> Renew(std::string_view name, int days, absl::Time now = absl::Now());
  // Revokes every unrevoked certificate of a participant name, or the one certificate whose
  // serial is `name_or_serial`, and re-signs crl.pem with every revoked serial. NotFound when
  // nothing matches; FailedPrecondition when all that matches is revoked already. Returns the
  // records revoked now.
  StatusOr<std::vector<IssuedRecord>> Revoke(std::string_view name_or_serial,
                                             const std::string& reason,
                                             absl::Time now = absl::Now());

  // The newest valid coordinator certificate; nullopt when none is issued yet.
  std::optional<Certificate> CurrentCoordinator(absl::Time now = absl::Now()) const;
  // HOST:PORT sites connect to; empty before the coordinator is signed.
  std::string CoordinatorAddress() const;
  // The file of an issued certificate.
  std::string IssuedPath(const std::string& serial_hex) const;

 private:
  CaRegistry(std::string dir, CertificateAuthority ca, int lock_fd)
      : dir_(std::move(dir)), ca_(std::move(ca)), lock_fd_(lock_fd) {}
  Status Record(const Certificate& cert, ParticipantRole role);
  Status WriteIndex() const;
  Status WriteRevocationList(absl::Time now) const;

  std::string dir_;
  CertificateAuthority ca_;
  int lock_fd_ = -1;
  std::vector<IssuedRecord> records_;  // in issue order
};

// A `hansa ca list` table: name, role, serial, not_after, status, and "!" on a valid
// certificate that expires within kExpiryWarning of `now`, with a closing line saying how many.
std::string FormatIssuedTable(const std::vector<IssuedRecord>& records, absl::Time now);

}  // namespace hansa
