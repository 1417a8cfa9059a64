// Offline verification of an audit.jsonl or egress.jsonl against the federation CA, for a
// reviewer who trusts nothing but the CA certificate.
//
// Checks that every line parses and is in canonical form, seq counts 0, 1, 2..., each prev is
// the SHA-256 of the line before, times never decrease, the first record's certificate chains
// to the CA and is valid at every record's time, every record names that certificate and its
// signature verifies. A changed byte, a removed, inserted or reordered record, and a record
// re-signed by any other key (even one the CA vouches for) all fail, naming the first bad
// record. Records cut off at the end of a log leave a valid, shorter chain: compare head()
// against an anchor kept elsewhere (expected_head) to detect that.
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
  std::string signer_fingerprint;
  std::string head;  // SHA-256 of the last line

  // Several lines for people: records, span, signer, counts per event, head.
  std::string ToText() const;
};

struct VerifyOptions {
  // Required usage of the signer certificate: kTlsServer for a coordinator's audit log,
  // kTlsClient for a site's egress ledger, kAny to accept either.
  CertificateUsage usage = CertificateUsage::kAny;
  // When set, the signer certificate's CN must be this ("berlin" for berlin's egress ledger).
  std::string expected_signer;
  // When set, the log's last line must hash to this (an anchor published elsewhere).
  std::string expected_head;
};

// Verifies the log at `path`. DataLoss "PATH: line N (seq S): ..." for the first bad record;
// FailedPrecondition for an empty log; NotFound when there is no file.
StatusOr<AuditSummary> VerifyAuditLog(const std::string& path, const Certificate& ca,
                                      const VerifyOptions& options = {});
// The same over the log's bytes; `name` stands for the path in messages.
StatusOr<AuditSummary> VerifyAuditLogContents(std::string_view contents, const Certificate& ca,
                                              const std::string& name,
                                              const VerifyOptions& options = {});

// Every record of a verified log, in order. Same errors as VerifyAuditLog.
StatusOr<std::vector<AuditRecord>> ReadVerifiedAuditLog(const std::string& path,
                                                        const Certificate& ca,
                                                        const VerifyOptions& options = {});
// The records of a log without checking anything but their syntax; lines that do not parse
// are skipped. For reports over a log whose verification failed, which say so beside them.
StatusOr<std::vector<AuditRecord>> ReadAuditRecordsUnverified(const std::string& path);

}  // namespace hansa
