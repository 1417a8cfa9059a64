// The site's egress ledger as the conversation writes it: every message that carries something
// of the site (join, plan answers, download requests, updates, metrics, secure-aggregation
// messages) is recorded, signed with the site's key, before it is sent, and a send that fails
// is recorded too. Task polls, which carry only a wait time, are not. Without a ledger (the
// simulator, benchmarks) nothing is recorded.
//
// Threading: one thread (the SiteSession's).
#pragma once

#include <cstdint>
#include <string>

#include "common/audit/audit_log.h"
#include "common/status/status.h"

namespace hansa {

class EgressRecorder {
 public:
  explicit EgressRecorder(AuditLog* ledger) : ledger_(ledger) {}

  // Records a message about to leave; returns its digest for Outcome. A ledger that cannot be
  // written stops the send (its error).
  StatusOr<std::string> Sending(const char* type, uint64_t round, const std::string& bytes) const;
  StatusOr<std::string> Sending(const char* type, uint64_t round, uint64_t bytes,
                                std::string sha256) const;
  // Returns `sent`; when it failed, records that the message may not have arrived.
  Status Outcome(const char* type, uint64_t round, const std::string& sha256,
                 const Status& sent) const;
  // Any other record (plan answers, privacy spent, contributions); OK without a ledger.
  Status Append(const AuditEvent& event) const;

  AuditLog* ledger() const { return ledger_; }

 private:
  AuditLog* const ledger_;
};

// At a site's start, over the ledger at `path` that `egress` now writes: a last record that is
// a message_sent was left by a site that stopped (killed, crashed, lost power) before it knew
// whether that message arrived, so the send_failed it could not write is written now. Reconcile
// then counts such an upload that the coordinator lacks as unconfirmed instead of a difference;
// one that the coordinator recorded still matches.
Status RecordSendCutShort(const std::string& path, const EgressRecorder& egress);

}  // namespace hansa
