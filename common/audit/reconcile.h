// Cross-checks a coordinator's audit log against one site's egress ledger: what the
// coordinator says it received from the site against what the site says it sent.
//
// Both logs are verified first (coordinator's signer must hold a TLS-server certificate, the
// site's a TLS-client certificate, both from `ca`). The site is the egress ledger's signer
// (certificate CN and fingerprint). Then:
//   - every update_received {round, site, bytes, sha256} of the coordinator for that site must
//     match a message_sent {type "upload", round, bytes, sha256} of the ledger;
//   - every upload in the ledger must appear as an update_received, unless the ledger later
//     records a send_failed for it (the site knows it may not have arrived: counted as
//     unconfirmed, not as a difference);
//   - every site_admitted of that site name must carry the fingerprint of a certificate that
//     signed the ledger (the current one, or one it renewed);
//   - every coordinator_audit_head {records, sha256} the site kept with a plan answer (the
//     coordinator's log as the site was shown it) must still be in the coordinator's log: a
//     record at position records - 1 whose line hashes to sha256. A log that holds fewer
//     records was cut after the site saw it (kTruncated, reported once per site, for the
//     highest head); a record there with another digest means the log was rewritten, or the
//     site was shown another log (kHeadMismatch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/audit/record.h"
#include "common/pki/certificate.h"
#include "common/status/status.h"

namespace hansa {

struct ReconcileDifference {
  enum class Kind {
    kIdentity,          // the coordinator admitted the site under another certificate
    kNotInLedger,       // the coordinator recorded an update the site never sent
    kNotAtCoordinator,  // the site sent an update the coordinator did not record
    kSizeMismatch,      // same digest, different size
    kTruncated,         // the coordinator's log ends before a head the site was shown
    kHeadMismatch,      // the coordinator's log holds another record where the site saw a head
    kUnsignedHead,      // a head in the site's ledger without the coordinator's valid signature
  };
  Kind kind;
  int64_t round = -1;  // -1 when the difference is not about a round
  std::string description;
};

// "identity", "not_in_ledger", "not_at_coordinator", "size_mismatch", "truncated",
// "head_mismatch", "unsigned_head".
std::string ReconcileKindName(ReconcileDifference::Kind kind);

struct ReconcileResult {
  std::string site;
  std::string site_fingerprint;
  int64_t matched = 0;          // uploads found on both sides
  int64_t unconfirmed = 0;      // uploads the site marked send_failed that the coordinator lacks
  int64_t heads_shown = 0;      // coordinator_audit_head entries in the ledger
  int64_t heads_confirmed = 0;  // of those, found in the coordinator's log
  std::vector<ReconcileDifference> differences;

  bool ok() const { return differences.empty(); }
  std::string ToText() const;
};

// Verifies both files and compares them. Errors only when a log cannot be read or does not
// verify; differences are in the result.
StatusOr<ReconcileResult> Reconcile(const std::string& coordinator_audit,
                                    const std::string& site_egress, const Certificate& ca);

// The comparison alone, over records already verified.
ReconcileResult ReconcileRecords(const std::vector<AuditRecord>& coordinator,
                                 const std::vector<AuditRecord>& egress, const std::string& site,
                                 const std::string& site_fingerprint);

}  // namespace hansa
