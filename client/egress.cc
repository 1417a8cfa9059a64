#include "client/egress.h"

#include <utility>

#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/logging/logging.h"
#include "spdlog/spdlog.h"

namespace hansa {

StatusOr<std::string> EgressRecorder::Sending(const char* type, uint64_t round,
                                              const std::string& bytes) const {
  if (ledger_ == nullptr) return std::string();
  return Sending(type, round, bytes.size(), ToHex(Sha256(bytes)));
}

StatusOr<std::string> EgressRecorder::Sending(const char* type, uint64_t round, uint64_t bytes,
                                              std::string sha256) const {
  // Nothing leaves unrecorded: a ledger that cannot be written stops the send.
  RETURN_IF_ERROR(Append(MessageSent(type, static_cast<int64_t>(round), bytes, sha256)));
  return sha256;
}

Status EgressRecorder::Outcome(const char* type, uint64_t round, const std::string& sha256,
                               const Status& sent) const {
  if (sent.ok() || ledger_ == nullptr) return sent;
  auto recorded = ledger_->Append(
      SendFailed(type, static_cast<int64_t>(round), sha256, std::string(sent.message())));
  if (!recorded.ok()) spdlog::error("egress ledger: {}", recorded.status().message());
  return sent;
}

Status EgressRecorder::Append(const AuditEvent& event) const {
  if (ledger_ == nullptr) return absl::OkStatus();
  return Annotate(ledger_->Append(event).status(), "egress ledger");
}

Status RecordSendCutShort(const std::string& path, const EgressRecorder& egress) {
  if (egress.ledger() == nullptr || egress.ledger()->size() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<AuditRecord> records, ReadAuditRecordsUnverified(path));
  if (records.empty() || records.back().event != audit_events::kMessageSent) {
    return absl::OkStatus();
  }
  const nlohmann::json& f = records.back().fields;
  const std::string type = f.value("type", "");
  return egress.Append(
      SendFailed(type, f.value("round", int64_t{0}), f.value("sha256", ""),
                 absl::StrCat("the site stopped before it knew whether this ", type, " arrived")));
}

}  // namespace hansa
