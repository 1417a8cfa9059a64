// A snapshot of a running federation for people watching it: the operator's dashboard and the
// Prometheus metrics at /metrics. The round engine fills it at the points where it already
// records (joins, plans, stages, uploads, dropouts, refusals, releases, evaluations); readers take
// a copy.
//
// Threading: FederationStatusBoard is thread-safe. Every method holds its own small mutex only
// for the update or the copy, never while calling out, so the engine may call it with its own
// mutex held (the board's mutex is always taken last) and a reader never waits for a round.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit/audit_log.h"
#include "common/monitoring/http_server.h"
#include "common/pki/certificate.h"
#include "coordinator/engine_options.h"

namespace hansa {

struct SiteStatus {
  std::string name;  // certificate CN
  std::string country;
  std::string organization;
  absl::Time joined = absl::InfinitePast();
  absl::Time last_seen = absl::InfinitePast();
  absl::Time certificate_not_after = absl::InfiniteFuture();
  int64_t bytes_received = 0;  // over all rounds: updates and SecAgg messages
  int64_t uploads = 0;         // updates committed, over all rounds
  int64_t dropouts = 0;        // stages it did not answer in time
  int64_t refusals = 0;        // plans it refused
  // The open round: bytes of its update received so far and whether it is complete.
  int64_t round_upload_bytes = 0;
  bool round_uploaded = false;
  bool in_cohort = false;  // of the open plan
};

// One completed training round; accuracy and loss from the evaluation of its model (NaN until
// it is evaluated, or when no site reported).
struct RoundHistory {
  int64_t round = 0;
  int64_t sites = 0;
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  double loss = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0;                           // plan to release
  std::map<std::string, double> stage_seconds;  // by stage name: "upload", "unmask", ...
  int64_t bytes_received = 0;
  // Update bytes folded per second of the round's upload stage, 0 when unknown.
  double aggregation_bytes_per_second = 0;
};

// Privacy spent against the budget under one guarantee ("client_level", "record_level").
struct PrivacyStatus {
  std::string guarantee;
  double epsilon_spent = 0;
  double epsilon_budget = 0;
  double delta = 0;
};

// A site that dropped out of a stage or refused a plan, for the dashboard's list.
struct SiteEvent {
  int64_t round = 0;
  std::string site;
  std::string kind;    // "dropped" or "refused"
  std::string stage;   // a dropout's stage ("upload", "unmask", ...); "consent" for a refusal
  std::string reason;  // a refusal's reason, as the site gave it
};
// The dashboard lists this many of the newest events.
inline constexpr size_t kMaxRecentSiteEvents = 50;

struct FederationStatus {
  std::string federation;
  // The study's GDPR facts (coordinator.toml [federation]: purpose, legal_basis, controllers,
  // retention_days, dpia_reference), as every plan carries them; empty: none stated.
  v1::StudyFacts study;
  std::string ca_subject;  // "CN=demo CA, C=DE"
  absl::Time ca_not_after = absl::InfiniteFuture();
  absl::Time coordinator_not_after = absl::InfiniteFuture();
  absl::Time started = absl::InfinitePast();
  // A site counts as connected while it was seen within this long (the engine's site_idle).
  absl::Duration site_idle = absl::Seconds(90);
  std::map<std::string, SiteStatus> sites;  // by name
  int64_t total_rounds = 0;                 // configured
  int64_t completed_rounds = 0;             // training rounds released (the last one's number)
  int64_t current_round = 0;                // of the open or last plan
  // StageName (round_stage.h): "advertise_keys", "share_keys", "upload", "consistency",
  // "unmask"; or "idle", "evaluate", "done".
  std::string stage = "idle";
  absl::Time stage_started = absl::InfinitePast();
  absl::Time round_started = absl::InfinitePast();
  int64_t uploads_in_flight = 0;  // sinks open now
  int64_t dropouts = 0;
  int64_t refusals = 0;
  std::vector<RoundHistory> history;     // by round, ascending
  std::vector<SiteEvent> recent_events;  // newest last, at most kMaxRecentSiteEvents
  std::vector<PrivacyStatus> privacy;
  int64_t audit_records = 0;
  std::string audit_head;

  int64_t SitesConnected(absl::Time now) const;
};

class FederationStatusBoard {
 public:
  FederationStatusBoard() = default;

  // A copy of the current state.
  FederationStatus Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // Any other change: `update` runs under the board's mutex and must be quick and call nothing
  // that locks.
  void Update(const std::function<void(FederationStatus&)>& update) ABSL_LOCKS_EXCLUDED(mu_);

  // The engine's events.
  void SiteJoined(const std::string& site, const std::string& organization,
                  const std::string& country, absl::Time certificate_not_after, absl::Time now);
  void SiteSeen(const std::string& site, absl::Time now);
  void PlanOpened(int64_t round, const std::vector<std::string>& cohort, absl::Time now);
  void StageBegan(const std::string& stage, absl::Time now);
  void UploadStarted();
  void UploadEnded();
  // `complete`: a whole update was committed (else a SecAgg message of the stage).
  void BytesReceived(const std::string& site, int64_t bytes, bool complete);
  void SiteDropped(const std::string& site, const std::string& stage = "");
  void SiteRefused(const std::string& site, const std::string& reason = "");
  // A training round's model was released.
  void RoundReleased(int64_t round, int64_t sites, int64_t bytes_received, absl::Time now);
  // The evaluation of `round`'s model (NaN: not reported).
  void RoundEvaluated(int64_t round, double accuracy, double loss);
  void PrivacySpent(const std::string& guarantee, double epsilon_spent, double epsilon_budget,
                    double delta);
  void AuditState(int64_t records, const std::string& head);

 private:
  // Appends to recent_events, dropping the oldest beyond kMaxRecentSiteEvents.
  void AddEvent(SiteEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the open stage into the open round's stage_seconds.
  void CloseStage(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RoundHistory* OpenRound() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  FederationStatus status_ ABSL_GUARDED_BY(mu_);
  RoundHistory open_round_ ABSL_GUARDED_BY(mu_);  // the round being run
};

// The Prometheus text exposition (version 0.0.4) of `status` at time `now`, every series named
// hansa_*: see docs/operations.md "Monitoring with Prometheus".
std::string FederationMetricsText(const FederationStatus& status, absl::Time now);

// Fills the facts that do not change while the coordinator runs: the federation's name, the CA's
// subject and expiry, the coordinator's own certificate's expiry, the rounds configured and how
// long a silent site still counts as connected.
void DescribeFederation(FederationStatusBoard& board, const EngineOptions& options,
                        const Certificate& ca, const Certificate& own);

// Serves GET /metrics on `server` from `board`, with the audit log's record count and head read
// at each scrape (`audit` may be null). Both must outlive the server.
void ServeFederationMetrics(HttpServer& server, std::shared_ptr<FederationStatusBoard> board,
                            std::shared_ptr<AuditLog> audit);

}  // namespace hansa
