// Certificate revocation: X.509 v2 certificate revocation lists (RFC 5280 section 5) that the
// federation CA signs and the coordinator checks at every handshake.
//
// The operator revokes a participant certificate with `hansa ca revoke`, which issues a new list
// (a higher cRLNumber) holding every certificate revoked so far; the coordinator reads the list
// named in its config and refuses the listed serial numbers.
//
// A RevocationList is immutable and copyable; any thread may read it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/status/status.h"

namespace hansa {

// One revoked certificate.
struct RevokedEntry {
  std::string serial_hex;  // lowercase hex, as Certificate::SerialHex
  absl::Time revoked_at;
  // An RFC 5280 CRLReason name: "unspecified", "keyCompromise", "affiliationChanged",
  // "superseded", "cessationOfOperation" (Issue accepts these; a parsed list may also hold
  // "cACompromise", "certificateHold", "removeFromCRL", "privilegeWithdrawn", "aACompromise").
  std::string reason = "unspecified";
};

// The reason names Issue accepts, in RFC 5280 order.
const std::vector<std::string>& RevocationReasonNames();

class RevocationList {
 public:
  // Signs a CRL with the CA's key: version 2, issuer = the CA's subject, thisUpdate, nextUpdate,
  // one entry per revoked certificate (serial, revocationDate, reasonCode extension), and the
  // authorityKeyIdentifier and cRLNumber `number` extensions. InvalidArgument on a serial that
  // is not hex, an unknown reason, the same serial twice, or next_update <= this_update.
  static StatusOr<RevocationList> Issue(const CertificateAuthority& ca,
                                        std::vector<RevokedEntry> entries, uint64_t number,
                                        absl::Time this_update, absl::Time next_update);
  // Parses the first PEM "X509 CRL" in `pem` and checks that `ca` signed it (issuer name and
  // signature). InvalidArgument when there is no CRL or it does not decode; PermissionDenied
  // "the revocation list was not signed by the federation CA ..." when another key signed it
  // (or its bytes were changed) or another CA is named as its issuer.
  static StatusOr<RevocationList> FromPem(std::string_view pem, const Certificate& ca);
  // Reads and parses a PEM file; errors name the file.
  static StatusOr<RevocationList> FromFile(const std::string& path, const Certificate& ca);

  std::string ToPem() const { return pem_; }

  const std::vector<RevokedEntry>& entries() const { return entries_; }
  // The entry for `serial_hex` (any case, leading zeros ignored); nullptr when not revoked.
  const RevokedEntry* Find(std::string_view serial_hex) const;
  uint64_t number() const { return number_; }
  absl::Time this_update() const { return this_update_; }
  // absl::InfiniteFuture() when the list has no nextUpdate.
  absl::Time next_update() const { return next_update_; }

 private:
  RevocationList() = default;
  std::string pem_;
  std::vector<RevokedEntry> entries_;
  std::unordered_map<std::string, size_t> by_serial_;  // normalized serial -> index in entries_
  uint64_t number_ = 0;
  absl::Time this_update_;
  absl::Time next_update_ = absl::InfiniteFuture();
};

// Warnings before a certificate expires (the coordinator's own, the CA's, a joining site's):
// "certificate of 'x' expires on 2031-01-01 00:00:00 UTC (in 12 days): renew it with `hansa ca
// renew`" when `cert` expires within `within` of `now` (and has not expired yet); empty
// otherwise. `what` replaces "certificate of 'x'" when not empty.
std::string ExpiryWarning(const Certificate& cert, absl::Time now,
                          absl::Duration within = absl::Hours(24 * 30),
                          const std::string& what = std::string());

// Writes the list's PEM to `path` atomically (mode 0644: the list is public).
Status WriteRevocationListFile(const std::string& path, const RevocationList& list);

}  // namespace hansa
