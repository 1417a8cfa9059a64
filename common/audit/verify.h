// Offline verification of an audit.jsonl or egress.jsonl against the federation CA, for a
// reviewer who trusts nothing but the CA certificate.
//
// Checks that every line parses and is in canonical form, seq counts 0, 1, 2..., each prev is
// the SHA-256 of the line before, times never decrease, the first record's certificate chains
// to the CA and is valid at every record's time, every record names that certificate and its
// signature verifies. A signer_renewed record (record.h) hands the log over to a renewed
// certificate, also from the CA, for the same key and subject. A changed byte, a removed,
// inserted or reordered record, and a record re-signed by any other key (even one the CA
// vouches for) all fail, naming the first bad record. By default the signer must hold a
// coordinator's (TLS server) certificate, so a whole log re-signed with a site's key fails too; a
// pinned fingerprint (expected_fingerprint) ties it to one coordinator. Records cut off at the end
// of a log leave a valid, shorter chain: a coordinator's log that ends in its closing record
// (federation_finished, events.h) is complete; one that does not may have lost its tail (or the
// federation is still running). Sites' ledgers (reconcile.h) and an anchor kept elsewhere
// (expected_head) catch a cut below a point someone else saw.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/audit/record.h"
#include "common/pki/certificate.h"
#include "common/status/status.h"

namespace hansa {

struct AuditSummary {
  std::string path;
  int64_t records = 0;
  std::map<std::string, int64_t> events;  // event name -> count
  std::string first_time;
  std::string last_time;
  SubjectName signer;
  std::string signer_fingerprint;  // the current (last) signer certificate
  // Certificates that signed before it, oldest first: renewals of the same key (record.h).
  std::vector<std::string> earlier_signers;
  std::string head;                                 // SHA-256 of the last line
  CertificateUsage usage = CertificateUsage::kAny;  // the signer role that was required
  bool fingerprint_checked = false;                 // expected_fingerprint was given (and held)
  // The last record is a closing federation_finished whose count and head match the log, or
  // only retention_applied and site_refused records (events.h) follow that record.
  bool closed = false;
  int64_t closing_record = -1;  // the closing record's seq when closed

  // Several lines for people: records, span, signer, role, pin, closing, counts per event.
  std::string ToText() const;
};

struct VerifyOptions {
  // Required usage of the signer certificate: kTlsServer for a coordinator's audit log (the
  // default), kTlsClient for a site's egress ledger, kAny to accept either.
  CertificateUsage usage = CertificateUsage::kTlsServer;
  // When set, the signer certificate's CN must be this ("berlin" for berlin's egress ledger).
  std::string expected_signer{};
  // When set, the SHA-256 fingerprint of the signer's certificate, or of one it renewed, must
  // be this (hex, any case, colons allowed): the coordinator's, from its startup kit or a
  // site's pin.
  std::string expected_fingerprint{};
  // When set, the log's last line must hash to this (an anchor published elsewhere).
  std::string expected_head{};
};

// Verifies the log at `path`. DataLoss "PATH: line N (seq S): ..." for the first bad record,
// including a federation_finished whose record count or head is not the record's own seq or
// prev; DataLoss for a signer other than the expected one; FailedPrecondition for an empty log;
// NotFound when there is no file. A log without a closing record verifies (closed = false).
StatusOr<AuditSummary> VerifyAuditLog(const std::string& path, const Certificate& ca,
                                      const VerifyOptions& options = {});
// The same over the log's bytes; `name` stands for the path in messages.
StatusOr<AuditSummary> VerifyAuditLogContents(std::string_view contents, const Certificate& ca,
                                              const std::string& name,
                                              const VerifyOptions& options = {});
// The same, also appending every record, in order, to `records` as it is checked (the
// records before the first bad one when it fails): one pass for a reader that needs both.
StatusOr<AuditSummary> VerifyAuditLogContents(std::string_view contents, const Certificate& ca,
                                              const std::string& name, const VerifyOptions& options,
                                              std::vector<AuditRecord>* records);

// OK when `summary`'s signer certificate, or one it renewed, has `fingerprint` (hex, any case,
// colons allowed); DataLoss naming both otherwise.
Status CheckSignerFingerprint(const AuditSummary& summary, const std::string& fingerprint);
// OK when every certificate that `records` embed (the first record's and each renewal's)
// holds `usage` from `ca` at its record's time: the signer's role over a log that verified
// with kAny, without checking its chain again. DataLoss naming the record otherwise.
Status CheckSignerUsage(const std::vector<AuditRecord>& records, const Certificate& ca,
                        CertificateUsage usage);

// Every record of a verified log, in order. Same errors as VerifyAuditLog.
StatusOr<std::vector<AuditRecord>> ReadVerifiedAuditLog(const std::string& path,
                                                        const Certificate& ca,
                                                        const VerifyOptions& options = {});
// The records of a log without checking anything but their syntax; lines that do not parse
// are skipped. For reports over a log whose verification failed, which say so beside them.
StatusOr<std::vector<AuditRecord>> ReadAuditRecordsUnverified(const std::string& path);

}  // namespace hansa
