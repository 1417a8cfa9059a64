#include "common/audit/events.h"

#include "absl/strings/escaping.h"

namespace hansa {

using nlohmann::json;
namespace ev = audit_events;

AuditEvent FederationStarted(const FederationStartedFields& f) {
  AuditEvent started{ev::kFederationStarted,
                     {{"federation", f.federation},
                      {"config_sha256", f.config_sha256},
                      {"coordinator", f.coordinator},
                      {"coordinator_country", f.coordinator_country},
                      {"model", f.model},
                      {"rounds", f.rounds},
                      {"min_sites", f.min_sites},
                      {"aggregation", f.aggregation},
                      {"allowed_countries", f.allowed_countries}}};
  if (!f.study.is_null()) started.fields["study"] = f.study;
  return started;
}

AuditEvent CoordinatorResumed(int64_t after_round, int64_t torn_tail_bytes) {
  return {ev::kCoordinatorResumed,
          {{"after_round", after_round}, {"torn_tail_bytes", torn_tail_bytes}}};
}

static json Participant(const ParticipantFields& p) {
  return {{"site", p.site},
          {"organisation", p.organisation},
          {"country", p.country},
          {"fingerprint", p.fingerprint}};
}

AuditEvent SiteAdmitted(const ParticipantFields& p) { return {ev::kSiteAdmitted, Participant(p)}; }

AuditEvent SiteRefused(const ParticipantFields& p, const std::string& reason) {
  json fields = Participant(p);
  fields["reason"] = reason;
  return {ev::kSiteRefused, std::move(fields)};
}

AuditEvent CertificateRefused(const ParticipantFields& p, const std::string& serial,
                              const std::string& problem, const std::string& reason,
                              const std::string& stage) {
  json fields = Participant(p);
  fields["reason"] = reason;
  fields["serial"] = serial;
  fields["certificate_problem"] = problem;
  fields["stage"] = stage;
  return {ev::kSiteRefused, std::move(fields)};
}

AuditEvent RoundPlanned(const RoundPlannedFields& f) {
  json fields = {{"round", f.round},
                 {"attempt", f.attempt},
                 {"plan_sha256", f.plan_sha256},
                 {"model_sha256", f.model_sha256},
                 {"cohort", f.cohort},
                 {"aggregation", f.aggregation}};
  if (f.secure_aggregation) {
    const SecureAggregationFields& s = *f.secure_aggregation;
    fields["secure_aggregation"] = {{"num_sites", s.num_sites},
                                    {"degree", s.degree},
                                    {"threshold", s.threshold},
                                    {"malicious", s.malicious},
                                    {"ring_bits", s.ring_bits},
                                    {"clip", s.clip},
                                    {"quantization_bits", s.quantization_bits},
                                    {"min_survivors", s.min_survivors}};
  }
  if (f.privacy) fields["privacy"] = *f.privacy;
  if (f.record_privacy) fields["record_privacy"] = *f.record_privacy;
  return {ev::kRoundPlanned, std::move(fields)};
}

AuditEvent SiteConsented(int64_t round, const std::string& site) {
  return {ev::kSiteConsented, {{"round", round}, {"site", site}}};
}

AuditEvent SiteDeclined(int64_t round, const std::string& site, const std::string& reason) {
  return {ev::kSiteDeclined, {{"round", round}, {"site", site}, {"reason", reason}}};
}

AuditEvent UpdateReceived(int64_t round, const std::string& site, uint64_t bytes,
                          const std::string& sha256) {
  return {ev::kUpdateReceived,
          {{"round", round}, {"site", site}, {"bytes", bytes}, {"sha256", sha256}}};
}

AuditEvent SiteDropped(int64_t round, const std::string& site, const std::string& stage) {
  return {ev::kSiteDropped, {{"round", round}, {"site", site}, {"stage", stage}}};
}

AuditEvent AggregateReleased(int64_t round, const std::string& model_sha256,
                             const std::vector<std::string>& sites) {
  return {ev::kAggregateReleased,
          {{"round", round}, {"model_sha256", model_sha256}, {"sites", sites}}};
}

AuditEvent PrivacySpentEvent(int64_t round, double epsilon, double delta) {
  return {ev::kPrivacySpent, {{"round", round}, {"epsilon", epsilon}, {"delta", delta}}};
}

AuditEvent CheckpointWritten(int64_t round, const std::string& path, const std::string& sha256) {
  return {ev::kCheckpointWritten, {{"round", round}, {"path", path}, {"sha256", sha256}}};
}

AuditEvent FederationFinished(int64_t rounds) {
  return {ev::kFederationFinished, {{"rounds", rounds}}};
}

AuditEvent MessageSent(const std::string& type, int64_t round, uint64_t bytes,
                       const std::string& sha256) {
  return {ev::kMessageSent,
          {{"type", type}, {"round", round}, {"bytes", bytes}, {"sha256", sha256}}};
}

AuditEvent SendFailed(const std::string& type, int64_t round, const std::string& sha256,
                      const std::string& error) {
  return {ev::kSendFailed,
          {{"type", type}, {"round", round}, {"sha256", sha256}, {"error", error}}};
}

AuditEvent FederationJoined(const std::string& federation, const std::string& site,
                            const std::string& coordinator_country) {
  return {
      ev::kFederationJoined,
      {{"federation", federation}, {"site", site}, {"coordinator_country", coordinator_country}}};
}

static bool IsDigest(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

static void AddCoordinatorHead(const std::optional<AuditAnchor>& head, json& fields) {
  if (!head) return;
  std::string sha256 = head->sha256;
  if (!IsDigest(sha256)) {
    sha256 = "invalid:" + absl::BytesToHexString(sha256.substr(0, 64));
  }
  fields[ev::kCoordinatorAuditHead] = {{"records", head->records}, {"sha256", sha256}};
  if (!head->signature.empty()) {
    // Kept as shown; a signature that is not hex is kept visibly so and fails reconcile.
    const bool hex = head->signature.size() <= 1024 &&
                     head->signature.find_first_not_of("0123456789abcdef") == std::string::npos;
    fields[ev::kCoordinatorAuditHead]["signature"] =
        hex ? head->signature : "invalid:" + absl::BytesToHexString(head->signature.substr(0, 64));
  }
}

std::string AuditAnchorStatement(int64_t records, const std::string& sha256) {
  return absl::StrCat("hansa/audit-head/v1\n", records, "\n", sha256);
}

AuditEvent PlanAccepted(int64_t round, const std::string& plan_sha256,
                        const std::optional<AuditAnchor>& coordinator_head) {
  json fields = {{"round", round}, {"plan_sha256", plan_sha256}};
  AddCoordinatorHead(coordinator_head, fields);
  return {ev::kPlanAccepted, std::move(fields)};
}

AuditEvent PlanRefused(int64_t round, const std::string& plan_sha256, const std::string& reason,
                       const std::optional<AuditAnchor>& coordinator_head) {
  json fields = {{"round", round}, {"plan_sha256", plan_sha256}, {"reason", reason}};
  AddCoordinatorHead(coordinator_head, fields);
  return {ev::kPlanRefused, std::move(fields)};
}

AuditEvent UploadRefused(int64_t round, const std::string& site, const std::string& reason) {
  return {ev::kUploadRefused, {{"round", round}, {"site", site}, {"reason", reason}}};
}

AuditEvent RoundAbandoned(int64_t round, int64_t attempts, const std::string& reason) {
  return {ev::kRoundAbandoned, {{"round", round}, {"attempts", attempts}, {"reason", reason}}};
}

AuditEvent StudyFactsSeen(int64_t round, const std::string& sha256, json study) {
  return {ev::kStudyFacts, {{"round", round}, {"sha256", sha256}, {"study", std::move(study)}}};
}

AuditEvent RetentionApplied(int64_t retention_days, const std::string& days_from,
                            const std::string& cutoff,
                            const std::vector<RetentionDeletedFile>& files) {
  json listed = json::array();
  uint64_t bytes = 0;
  for (const RetentionDeletedFile& f : files) {
    listed.push_back({{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
    bytes += f.bytes;
  }
  return {ev::kRetentionApplied,
          {{"retention_days", retention_days},
           {"days_from", days_from},
           {"cutoff", cutoff},
           {"files", std::move(listed)},
           {"bytes", bytes}}};
}

AuditEvent SignerRenewed(const Certificate& previous, const Certificate& renewed) {
  return {ev::kSignerRenewed,
          {{ev::kPreviousSigner, previous.Sha256Fingerprint()},
           {"previous_not_after", FormatCertificateTime(previous.NotAfter())},
           {"not_after", FormatCertificateTime(renewed.NotAfter())},
           {"serial", renewed.SerialHex()}}};
}

AuditEvent ContributionSpent(int64_t round, int64_t attempt, const std::string& plan_sha256,
                             const std::string& update_key) {
  return {ev::kContributionSpent,
          {{"round", round},
           {"attempt", attempt},
           {"plan_sha256", plan_sha256},
           {"update", update_key}}};
}

}  // namespace hansa
