// The site's egress ledger as the conversation writes it: every message that carries something
// of the site (join, plan answers, download requests, updates, metrics, secure-aggregation
// messages) is recorded, signed with the site's key, before it is sent, and a send that fails
// is recorded too. Task polls, which carry only a wait time, are not. Without a ledger (the
// simulator, benchmarks) nothing is recorded. A message's clear-text figures (an evaluation's
// metrics, a plaintext upload's example count and loss) are recorded with it as "values", so
// the site's own report (common/report/site_report.h) can show what the site said.
//
// Threading: one thread (the SiteSession's).
#pragma once

#include <cstdint>
#include <string>

#include "common/audit/audit_log.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"
#include "nlohmann/json.hpp"

namespace hansa {

class EgressRecorder {
 public:
  explicit EgressRecorder(AuditLog* ledger) : ledger_(ledger) {}

  // Records a message about to leave; returns its digest for Outcome. A ledger that cannot be
  // written stops the send (its error).
  // `values`: the figures the message carries in the clear (EgressValues); null: none.
  StatusOr<std::string> Sending(const char* type, uint64_t round, const std::string& bytes,
                                nlohmann::json values = nullptr) const;
  StatusOr<std::string> Sending(const char* type, uint64_t round, uint64_t bytes,
                                std::string sha256, nlohmann::json values = nullptr) const;
  // Returns `sent`; when it failed, records that the message may not have arrived.
  Status Outcome(const char* type, uint64_t round, const std::string& sha256,
                 const Status& sent) const;
  // Any other record (plan answers, privacy spent, contributions); OK without a ledger.
  Status Append(const AuditEvent& event) const;

  // After a join: records the federation and site name the coordinator answered with, unless
  // they are the ones this recorder recorded last (a rejoin of the same federation).
  Status Joined(const v1::JoinReply& reply);

  AuditLog* ledger() const { return ledger_; }

 private:
  AuditLog* const ledger_;
  std::string joined_;  // the last federation_joined recorded: federation and site
};

// The clear-text figures of an evaluation report: num_examples, loss, accuracy, seconds, and
// classes, confusion[], positive_scores[], negative_scores[] and regression{count,
// squared_error, absolute_error, target, target_squared} where it carries them. A figure that
// is not finite is null.
nlohmann::json EgressValues(const v1::MetricsReport& report);
// A plaintext upload's: num_examples, train_loss, train_seconds. Null for a masked upload's
// header, which carries no example count (the weight travels inside the masked vector).
nlohmann::json EgressValues(const v1::TransferHeader& header);

// At a site's start, over the ledger at `path` that `egress` now writes: a last record that is
// a message_sent was left by a site that stopped (killed, crashed, lost power) before it knew
// whether that message arrived, so the send_failed it could not write is written now. Reconcile
// then counts such an upload that the coordinator lacks as unconfirmed instead of a difference;
// one that the coordinator recorded still matches.
Status RecordSendCutShort(const std::string& path, const EgressRecorder& egress);

}  // namespace hansa
