// The events of audit.jsonl (coordinator) and egress.jsonl (site), and their fields: the
// contract between the writers, `hansa audit reconcile` and `hansa report`. Build records with
// these functions rather than by hand, so the names and types stay the ones readers expect.
//
// Conventions: `round` is the round number (uint64 on the wire, int64 here); digests are
// lowercase hex SHA-256; sizes are bytes; `site` is the site's certificate CN; countries are
// ISO 3166-1 alpha-2. Fields marked optional are left out when absent. Writers may add fields;
// readers ignore fields they do not know.
//
// Coordinator, audit.jsonl:
//   federation_started   {federation, config_sha256, coordinator, coordinator_country,
//                         model, rounds, min_sites, aggregation, allowed_countries[],
//                         study?{id, purpose, legal_basis, controllers[], retention_days,
//                         dpia_reference}}  once, when a new state dir is created. `study`:
//                        the GDPR facts of coordinator.toml [federation] (empty text and
//                        retention_days 0 where not stated), as every plan carries them
//   coordinator_resumed  {after_round, torn_tail_bytes}  each restart over an existing state dir
//   site_admitted        {site, organisation, country, fingerprint}  each successful join
//   site_refused         {site, organisation, country, fingerprint, reason}  a refused join;
//                        refused in the TLS handshake (CertificateRefused), also {serial,
//                        certificate_problem: "revoked" | "expired" | "not_yet_valid" |
//                        "wrong_ca" | "invalid", stage: "tls_handshake" | "call"}, once per
//                        certificate and problem while the coordinator runs ("call": revoked
//                        while its connection was open, refused at its next call). May
//                        follow federation_finished (a coordinator still up after its last
//                        round refuses intruders on record) without reopening the log
//   round_planned        {round, attempt, plan_sha256, model_sha256, cohort[], aggregation,
//                         secure_aggregation?{...}, privacy?{...}}  before any site sees it
//   site_consented       {round, site}            the site accepted the plan (PlanResponse)
//   site_declined        {round, site, reason}    the site refused the plan (training, or
//                        the evaluation of `round`'s model), with its reason
//   update_received      {round, site, bytes, sha256}  a complete upload whose size and digest
//                        were checked (the masked payload in secure mode), before it is acked
//   site_dropped         {round, site, stage}     a cohort site that did not finish a stage
//   aggregate_released   {round, model_sha256, sites[]}  the new global model, and whose
//                        updates are in it
//   privacy_spent        {round, epsilon, delta}  the cumulative epsilon after `round`
//   checkpoint_written   {round, path, sha256}
//   federation_finished  {rounds, records, head}  the last round completed. The closing record:
//                        `records` is the number of records before it (its own seq) and `head`
//                        the SHA-256 of the line before it (its own prev). AuditLog::Append
//                        fills both, so a verifier can tell a log that ends here from one cut
//                        short; a log that ends anywhere else may have lost its tail.
//   retention_applied    {retention_days, days_from, cutoff, files[{path, bytes, sha256}],
//                         bytes}  `hansa retention --delete` removed these files of the state
//                        dir (paths relative to it) as made before `cutoff`, past the study's
//                        retention_days as `days_from` states them. May follow
//                        federation_finished: a log closed by it and followed only by
//                        retention_applied records is still complete (verify.h). A site's
//                        egress.jsonl takes the same record for its own state dir.
//   signer_renewed       {previous_signer, previous_not_after, not_after, serial}  either
//                        side, when the writer opens its log with a renewed certificate (the
//                        same key and subject, `hansa ca renew`) in place of the one that
//                        signed it so far (`previous_signer`, its fingerprint). The record
//                        embeds the renewed certificate in "certificate" and is signed, as
//                        every record after it, under it (record.h); the log goes on.
//
// Site, egress.jsonl (written before each message leaves, by hansa-client):
//   message_sent   {type, round, bytes, sha256}  type is one of kMessageTypes; bytes and sha256
//                  are of the message's payload (for "upload", of the whole update payload, the
//                  same values as the TransferHeader; for others, of the serialized request).
//                  "join" has round 0. Task polls carry only a wait time and are not recorded.
//                  values?{...}: the figures the message carries in the clear, so the site's
//                  own report can show what it said (client/egress.h): an evaluation's
//                  "metrics" (num_examples, loss, accuracy, seconds, classes, confusion[],
//                  positive_scores[], negative_scores[], regression?{...}), a plaintext
//                  "upload"'s num_examples, train_loss and train_seconds. Older ledgers lack it.
//   send_failed    {type, round, sha256, error}  the message above may not have arrived
//   federation_joined {federation, site, coordinator_country}  the coordinator's answer to a
//                  join (JoinReply), when it names another federation or site than the one
//                  this run of the site recorded last
//   plan_accepted  {round, plan_sha256, coordinator_audit_head?{records, sha256}}
//   plan_refused   {round, plan_sha256, reason, coordinator_audit_head?{records, sha256}}
//                  coordinator_audit_head: the coordinator's audit log as the task carrying the
//                  plan showed it (Task.audit_head); absent when it showed none. Reconcile
//                  checks that the coordinator's log still holds that record with that digest.
//   privacy_spent  {round, epsilon, delta}       the site's own accountant, when privacy is on
//   policy_applied {reason, sha256, policy{...}}  the site's [policy] (client/policy.h
//                  PolicyJson: site.toml's keys) it answers plans under from here on: reason
//                  "start" when the site starts, "reload" when SIGHUP replaced it; sha256 of
//                  the policy object's compact JSON
//   study_facts    {round, sha256, study{id, purpose, legal_basis, controllers[], retention_days,
//                  dpia_reference}}  the GDPR facts a plan carried (common/plan/study_facts.h),
//                  before the plan's answer, whenever they differ from those this run of the
//                  site recorded last (so once per study); sha256 names the facts as sent
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/pki/certificate.h"
#include "nlohmann/json.hpp"

namespace hansa {

struct AuditEvent {
  std::string name;
  nlohmann::json fields;
};

// A point in a log: how many records it held and the SHA-256 of its last line (kGenesisPrev,
// 64 zeros, for an empty log). AuditLog::anchor() gives one; a site keeps the coordinator's.
struct AuditAnchor {
  int64_t records = 0;
  std::string sha256;
  // Lowercase hex: the log writer's signature over AuditAnchorStatement(records, sha256), so a
  // site that keeps the anchor can show it was the coordinator's, and cannot make one up.
  // Empty when not signed.
  std::string signature{};
};

// What the writer of a log signs when it shows its head (AuditLog::SignedAnchor).
std::string AuditAnchorStatement(int64_t records, const std::string& sha256);

namespace audit_events {

inline constexpr char kFederationStarted[] = "federation_started";
inline constexpr char kCoordinatorResumed[] = "coordinator_resumed";
inline constexpr char kSiteAdmitted[] = "site_admitted";
inline constexpr char kSiteRefused[] = "site_refused";
inline constexpr char kRoundPlanned[] = "round_planned";
inline constexpr char kSiteConsented[] = "site_consented";
inline constexpr char kSiteDeclined[] = "site_declined";
inline constexpr char kUpdateReceived[] = "update_received";
inline constexpr char kSiteDropped[] = "site_dropped";
inline constexpr char kAggregateReleased[] = "aggregate_released";
inline constexpr char kPrivacySpent[] = "privacy_spent";
inline constexpr char kCheckpointWritten[] = "checkpoint_written";
inline constexpr char kFederationFinished[] = "federation_finished";
inline constexpr char kUploadRefused[] = "upload_refused";
inline constexpr char kRoundAbandoned[] = "round_abandoned";

inline constexpr char kMessageSent[] = "message_sent";
inline constexpr char kSendFailed[] = "send_failed";
inline constexpr char kPlanAccepted[] = "plan_accepted";
inline constexpr char kPlanRefused[] = "plan_refused";
inline constexpr char kFederationJoined[] = "federation_joined";
// A site's update became part of an attempt (every chunk of it sent): it is never sent again.
inline constexpr char kContributionSpent[] = "contribution_spent";
inline constexpr char kStudyFacts[] = "study_facts";
inline constexpr char kRetentionApplied[] = "retention_applied";
inline constexpr char kSignerRenewed[] = "signer_renewed";
inline constexpr char kPolicyApplied[] = "policy_applied";
inline constexpr char kPreviousSigner[] = "previous_signer";

// Field names of the closing record and of the head a site was shown.
inline constexpr char kClosingRecords[] = "records";
inline constexpr char kClosingHead[] = "head";
inline constexpr char kCoordinatorAuditHead[] = "coordinator_audit_head";

// message_sent types.
inline constexpr char kMessageJoin[] = "join";
inline constexpr char kMessagePlanResponse[] = "plan_response";
inline constexpr char kMessageDownloadRequest[] = "download_request";
inline constexpr char kMessageUpload[] = "upload";
inline constexpr char kMessageMetrics[] = "metrics";
inline constexpr char kMessageSecAgg[] = "secagg";  // one per SecAggSubmission (any stage)

// Values of `aggregation`.
inline constexpr char kAggregationSecure[] = "secure";
inline constexpr char kAggregationPlaintext[] = "plaintext";

}  // namespace audit_events

// What a coordinator knows about a participant from its certificate.
struct ParticipantFields {
  std::string site;  // CN
  std::string organisation;
  std::string country;
  std::string fingerprint;
};

struct FederationStartedFields {
  std::string federation;
  std::string config_sha256;  // of coordinator.toml as read
  std::string coordinator;    // the coordinator's CN
  std::string coordinator_country;
  std::string model;
  int64_t rounds = 0;
  int64_t min_sites = 0;
  std::string aggregation;  // audit_events::kAggregationSecure or kAggregationPlaintext
  std::vector<std::string> allowed_countries;
  // The study's GDPR facts as StudyFactsJson (common/plan/study_facts.h) gives them; null: none.
  nlohmann::json study = nullptr;
};

// SecAgg+ parameters of one round, as resolved for its cohort.
struct SecureAggregationFields {
  int64_t num_sites = 0;  // n
  int64_t degree = 0;     // k
  int64_t threshold = 0;  // t
  bool malicious = false;
  int64_t ring_bits = 0;
  double clip = 0;
  int64_t quantization_bits = 0;
  int64_t min_survivors = 0;  // the fewest inputs the plan lets a sum be unmasked over
};

struct RoundPlannedFields {
  int64_t round = 0;
  int64_t attempt = 0;  // 0 for the first plan of a round, 1, 2... for retries
  std::string plan_sha256;
  std::string model_sha256;  // the global model the cohort starts from
  std::vector<std::string> cohort;
  std::string aggregation;
  std::optional<SecureAggregationFields> secure_aggregation{};
  // Privacy parameters as the privacy module names them, e.g. {"mechanism":
  // "distributed_discrete_gaussian", "noise_multiplier": 1.1, "clip": 1.0, "delta": 1e-5,
  // "target_epsilon": 8}. A JSON object; left out when privacy is off.
  std::optional<nlohmann::json> privacy{};
  // Record-level DP-SGD at every site, the same way ({"mechanism": "dp_sgd", "clip": ...,
  // "noise_multiplier": ..., "sampling_rate": ..., "steps": ..., "delta": ...}).
  std::optional<nlohmann::json> record_privacy = std::nullopt;
};

AuditEvent FederationStarted(const FederationStartedFields& f);
AuditEvent CoordinatorResumed(int64_t after_round, int64_t torn_tail_bytes = 0);
AuditEvent SiteAdmitted(const ParticipantFields& p);
AuditEvent SiteRefused(const ParticipantFields& p, const std::string& reason);
// A site_refused record for a client certificate refused in the TLS handshake (see above).
AuditEvent CertificateRefused(const ParticipantFields& p, const std::string& serial,
                              const std::string& problem, const std::string& reason,
                              const std::string& stage = "tls_handshake");
AuditEvent RoundPlanned(const RoundPlannedFields& f);
AuditEvent SiteConsented(int64_t round, const std::string& site);
AuditEvent SiteDeclined(int64_t round, const std::string& site, const std::string& reason);
AuditEvent UpdateReceived(int64_t round, const std::string& site, uint64_t bytes,
                          const std::string& sha256);
// `stage`: "consent", "advertise_keys", "share_keys", "upload", "consistency", "unmask",
// "evaluate" (the phase the site did not finish).
AuditEvent SiteDropped(int64_t round, const std::string& site, const std::string& stage);
AuditEvent AggregateReleased(int64_t round, const std::string& model_sha256,
                             const std::vector<std::string>& sites);
AuditEvent PrivacySpentEvent(int64_t round, double epsilon, double delta);
AuditEvent CheckpointWritten(int64_t round, const std::string& path, const std::string& sha256);
AuditEvent FederationFinished(int64_t rounds);

AuditEvent MessageSent(const std::string& type, int64_t round, uint64_t bytes,
                       const std::string& sha256);
AuditEvent SendFailed(const std::string& type, int64_t round, const std::string& sha256,
                      const std::string& error);
AuditEvent FederationJoined(const std::string& federation, const std::string& site,
                            const std::string& coordinator_country);
// `coordinator_head`: the coordinator's audit head shown with the plan, when it showed one. A
// digest that is not 64 lowercase hex digits is kept hex-encoded after "invalid:" (the ledger
// stays valid UTF-8, and reconcile reports it as not matching).
AuditEvent PlanAccepted(int64_t round, const std::string& plan_sha256,
                        const std::optional<AuditAnchor>& coordinator_head = std::nullopt);
AuditEvent PlanRefused(int64_t round, const std::string& plan_sha256, const std::string& reason,
                       const std::optional<AuditAnchor>& coordinator_head = std::nullopt);
// Coordinator: an upload refused before anything of it was folded (a second one at once, or
// after the site's update was committed).
AuditEvent UploadRefused(int64_t round, const std::string& site, const std::string& reason);
// Coordinator: the round ended without an aggregate after `attempts` plans of this run (0 when
// too few sites connected to plan one within wait_for_sites); training stops.
AuditEvent RoundAbandoned(int64_t round, int64_t attempts, const std::string& reason);
// Site: the GDPR facts `study` (StudyFactsJson) that a plan of `round` carried, named by
// `sha256` (StudyFactsSha256).
AuditEvent StudyFactsSeen(int64_t round, const std::string& sha256, nlohmann::json study);
// Either side: files deleted by `hansa retention` (see above).
struct RetentionDeletedFile {
  std::string path;
  uint64_t bytes = 0;
  std::string sha256;
};
// `cutoff`: the record time before which a file counted as past retention.
AuditEvent RetentionApplied(int64_t retention_days, const std::string& days_from,
                            const std::string& cutoff,
                            const std::vector<RetentionDeletedFile>& files);
// Either side: the log's signer certificate `previous` gave way to its renewal `renewed`.
AuditEvent SignerRenewed(const Certificate& previous, const Certificate& renewed);
// Site: the update named `update_key` (client/contributions.h: model, global model, training
// settings and seed) is leaving under plan `plan_sha256`, attempt `attempt` of `round`; no
// other plan gets that update from the site.
AuditEvent ContributionSpent(int64_t round, int64_t attempt, const std::string& plan_sha256,
                             const std::string& update_key);

}  // namespace hansa
