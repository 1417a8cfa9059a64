#include "coordinator/federation_status.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/monitoring/prometheus_text.h"
#include "coordinator/round_stage.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hansa {

int64_t FederationStatus::SitesConnected(absl::Time now) const {
  int64_t n = 0;
  for (const auto& [name, site] : sites) {
    if (now - site.last_seen <= site_idle) ++n;
  }
  return n;
}

FederationStatus FederationStatusBoard::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void FederationStatusBoard::Update(const std::function<void(FederationStatus&)>& update) {
  absl::MutexLock lock(&mu_);
  update(status_);
}

void FederationStatusBoard::SiteJoined(const std::string& site, const std::string& organization,
                                       const std::string& country, absl::Time certificate_not_after,
                                       absl::Time now) {
  absl::MutexLock lock(&mu_);
  SiteStatus& s = status_.sites[site];
  if (s.name.empty()) s.joined = now;
  s.name = site;
  s.organization = organization;
  s.country = country;
  s.certificate_not_after = certificate_not_after;
  s.last_seen = now;
}

void FederationStatusBoard::SiteSeen(const std::string& site, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = status_.sites.find(site);
  if (it != status_.sites.end()) it->second.last_seen = now;
}

void FederationStatusBoard::CloseStage(absl::Time now) {
  if (status_.stage_started == absl::InfinitePast() || status_.stage == "idle" ||
      status_.stage == "done") {
    return;
  }
  open_round_.stage_seconds[status_.stage] += absl::ToDoubleSeconds(now - status_.stage_started);
}

void FederationStatusBoard::PlanOpened(int64_t round, const std::vector<std::string>& cohort,
                                       absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (round != open_round_.round || status_.round_started == absl::InfinitePast()) {
    open_round_ = RoundHistory();
    open_round_.round = round;
    status_.round_started = now;
  }
  status_.current_round = round;
  for (auto& [name, site] : status_.sites) {
    site.in_cohort = false;
    site.round_upload_bytes = 0;
    site.round_uploaded = false;
  }
  for (const std::string& name : cohort) {
    auto it = status_.sites.find(name);
    if (it != status_.sites.end()) it->second.in_cohort = true;
  }
}

void FederationStatusBoard::StageBegan(const std::string& stage, absl::Time now) {
  absl::MutexLock lock(&mu_);
  CloseStage(now);
  status_.stage = stage;
  status_.stage_started = now;
}

void FederationStatusBoard::UploadStarted() {
  absl::MutexLock lock(&mu_);
  ++status_.uploads_in_flight;
}

void FederationStatusBoard::UploadEnded() {
  absl::MutexLock lock(&mu_);
  if (status_.uploads_in_flight > 0) --status_.uploads_in_flight;
}

void FederationStatusBoard::BytesReceived(const std::string& site, int64_t bytes, bool complete) {
  absl::MutexLock lock(&mu_);
  open_round_.bytes_received += bytes;
  auto it = status_.sites.find(site);
  if (it == status_.sites.end()) return;
  it->second.bytes_received += bytes;
  if (complete) {
    ++it->second.uploads;
    it->second.round_upload_bytes += bytes;
    it->second.round_uploaded = true;
  }
}

void FederationStatusBoard::SiteDropped(const std::string& site, const std::string& stage) {
  absl::MutexLock lock(&mu_);
  ++status_.dropouts;
  auto it = status_.sites.find(site);
  if (it != status_.sites.end()) ++it->second.dropouts;
  AddEvent({status_.current_round, site, "dropped", stage, ""});
}

void FederationStatusBoard::SiteRefused(const std::string& site, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  ++status_.refusals;
  auto it = status_.sites.find(site);
  if (it != status_.sites.end()) ++it->second.refusals;
  AddEvent({status_.current_round, site, "refused", "consent", reason});
}

void FederationStatusBoard::AddEvent(SiteEvent event) {
  std::vector<SiteEvent>& events = status_.recent_events;
  if (events.size() >= kMaxRecentSiteEvents) events.erase(events.begin());
  events.push_back(std::move(event));
}

void FederationStatusBoard::RoundReleased(int64_t round, int64_t sites, int64_t bytes_received,
                                          absl::Time now) {
  absl::MutexLock lock(&mu_);
  CloseStage(now);
  status_.stage_started = now;
  RoundHistory done = std::move(open_round_);
  open_round_ = RoundHistory();
  done.round = round;
  done.sites = sites;
  if (bytes_received > 0) done.bytes_received = bytes_received;
  if (status_.round_started != absl::InfinitePast()) {
    done.seconds = absl::ToDoubleSeconds(now - status_.round_started);
  }
  auto train = done.stage_seconds.find("upload");
  if (train != done.stage_seconds.end() && train->second > 0) {
    done.aggregation_bytes_per_second = static_cast<double>(done.bytes_received) / train->second;
  }
  status_.round_started = absl::InfinitePast();
  status_.completed_rounds = round;
  if (!status_.history.empty() && status_.history.back().round == round) {
    status_.history.back() = std::move(done);
  } else {
    status_.history.push_back(std::move(done));
  }
}

void FederationStatusBoard::RoundEvaluated(int64_t round, double accuracy, double loss) {
  absl::MutexLock lock(&mu_);
  for (auto it = status_.history.rbegin(); it != status_.history.rend(); ++it) {
    if (it->round == round) {
      it->accuracy = accuracy;
      it->loss = loss;
      return;
    }
  }
}

void FederationStatusBoard::PrivacySpent(const std::string& guarantee, double epsilon_spent,
                                         double epsilon_budget, double delta) {
  absl::MutexLock lock(&mu_);
  for (PrivacyStatus& p : status_.privacy) {
    if (p.guarantee == guarantee) {
      p = {guarantee, epsilon_spent, epsilon_budget, delta};
      return;
    }
  }
  status_.privacy.push_back({guarantee, epsilon_spent, epsilon_budget, delta});
}

void FederationStatusBoard::AuditState(int64_t records, const std::string& head) {
  absl::MutexLock lock(&mu_);
  status_.audit_records = records;
  status_.audit_head = head;
}

namespace {

double UnixSeconds(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return 0;
  return absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

}  // namespace

std::string FederationMetricsText(const FederationStatus& s, absl::Time now) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  prometheus::Registry registry;
  const std::map<std::string, std::string> fed = {{"federation", s.federation}};
  auto gauge = [&](const std::string& name,
                   const std::string& help) -> prometheus::Family<prometheus::Gauge>& {
    return BuildGauge().Name(name).Help(help).Register(registry);
  };
  auto counter = [&](const std::string& name,
                     const std::string& help) -> prometheus::Family<prometheus::Counter>& {
    return BuildCounter().Name(name).Help(help).Register(registry);
  };

  gauge("hansa_sites_connected", "Sites seen within the site idle time")
      .Add(fed)
      .Set(static_cast<double>(s.SitesConnected(now)));
  gauge("hansa_sites_joined", "Sites that joined since the coordinator started")
      .Add(fed)
      .Set(static_cast<double>(s.sites.size()));
  auto& last_seen = gauge("hansa_site_last_seen_timestamp_seconds",
                          "When each site last called the coordinator (Unix time)");
  auto& site_bytes = counter("hansa_site_received_bytes_total",
                             "Bytes received from each site: updates and SecAgg messages");
  auto& site_uploads = counter("hansa_site_uploads_total", "Updates committed by each site");
  auto& site_dropouts = counter("hansa_site_dropouts_total", "Stages each site did not answer");
  auto& site_refusals = counter("hansa_site_plan_refusals_total", "Plans each site refused");
  auto& site_round_bytes = gauge("hansa_site_round_upload_bytes",
                                 "Bytes of each site's update in the open round so far");
  auto& site_cert = gauge("hansa_site_certificate_expiry_timestamp_seconds",
                          "When each site's certificate expires (Unix time)");
  for (const auto& [name, site] : s.sites) {
    const std::map<std::string, std::string> l = {{"site", name}, {"country", site.country}};
    last_seen.Add(l).Set(UnixSeconds(site.last_seen));
    site_bytes.Add(l).Increment(static_cast<double>(site.bytes_received));
    site_uploads.Add(l).Increment(static_cast<double>(site.uploads));
    site_dropouts.Add(l).Increment(static_cast<double>(site.dropouts));
    site_refusals.Add(l).Increment(static_cast<double>(site.refusals));
    site_round_bytes.Add(l).Set(static_cast<double>(site.round_upload_bytes));
    if (site.certificate_not_after != absl::InfiniteFuture()) {
      site_cert.Add(l).Set(UnixSeconds(site.certificate_not_after));
    }
  }
  counter("hansa_rounds_completed_total", "Training rounds whose model was released")
      .Add(fed)
      .Increment(static_cast<double>(s.completed_rounds));
  gauge("hansa_rounds_configured", "Training rounds the federation runs")
      .Add(fed)
      .Set(static_cast<double>(s.total_rounds));
  gauge("hansa_round", "The round of the open or last plan")
      .Add(fed)
      .Set(static_cast<double>(s.current_round));
  auto& stage = gauge("hansa_round_stage", "1 for the stage the round is in");
  bool known = false;
  for (RoundPhase phase : AllRoundPhases()) {
    const std::string name = StageName(phase);
    stage.Add({{"stage", name}}).Set(s.stage == name ? 1 : 0);
    known = known || s.stage == name;
  }
  if (!known) stage.Add({{"stage", s.stage}}).Set(1);
  gauge("hansa_stage_elapsed_seconds", "Seconds since the current stage began")
      .Add(fed)
      .Set(s.stage_started == absl::InfinitePast() ? 0
                                                   : absl::ToDoubleSeconds(now - s.stage_started));
  gauge("hansa_uploads_in_flight", "Update uploads open now")
      .Add(fed)
      .Set(static_cast<double>(s.uploads_in_flight));
  counter("hansa_dropouts_total", "Stages that sites did not answer in time")
      .Add(fed)
      .Increment(static_cast<double>(s.dropouts));
  counter("hansa_plan_refusals_total", "Plans that sites refused")
      .Add(fed)
      .Increment(static_cast<double>(s.refusals));

  const prometheus::Histogram::BucketBoundaries seconds = {0.5, 1,   2,   5,   10,   30,
                                                           60,  120, 300, 600, 1800, 3600};
  auto& round_seconds = BuildHistogram()
                            .Name("hansa_round_duration_seconds")
                            .Help("Training rounds from plan to release")
                            .Register(registry)
                            .Add(fed, seconds);
  auto& stage_seconds = BuildHistogram()
                            .Name("hansa_stage_duration_seconds")
                            .Help("Stages of the training rounds")
                            .Register(registry);
  std::map<std::string, prometheus::Histogram*> by_stage;
  for (const RoundHistory& r : s.history) {
    round_seconds.Observe(r.seconds);
    for (const auto& [name, secs] : r.stage_seconds) {
      auto& h = by_stage[name];
      if (h == nullptr) h = &stage_seconds.Add({{"stage", name}}, seconds);
      h->Observe(secs);
    }
  }
  if (!s.history.empty()) {
    const RoundHistory& last = s.history.back();
    gauge("hansa_aggregation_throughput_bytes_per_second",
          "Update bytes folded per second of the last round's upload stage")
        .Add(fed)
        .Set(last.aggregation_bytes_per_second);
    gauge("hansa_last_round_seconds", "Duration of the last released round")
        .Add(fed)
        .Set(last.seconds);
  }
  auto& accuracy = gauge("hansa_model_accuracy", "Accuracy of the last evaluated model");
  auto& loss = gauge("hansa_model_loss", "Loss of the last evaluated model");
  for (auto it = s.history.rbegin(); it != s.history.rend(); ++it) {
    if (std::isnan(it->accuracy) && std::isnan(it->loss)) continue;
    if (!std::isnan(it->accuracy)) accuracy.Add(fed).Set(it->accuracy);
    if (!std::isnan(it->loss)) loss.Add(fed).Set(it->loss);
    break;
  }
  auto& spent = gauge("hansa_privacy_epsilon_spent", "Epsilon spent under each guarantee");
  auto& budget = gauge("hansa_privacy_epsilon_budget", "Epsilon budget of each guarantee");
  for (const PrivacyStatus& p : s.privacy) {
    spent.Add({{"guarantee", p.guarantee}}).Set(p.epsilon_spent);
    budget.Add({{"guarantee", p.guarantee}}).Set(p.epsilon_budget);
  }
  counter("hansa_audit_records_total", "Records in the coordinator's audit log")
      .Add(fed)
      .Increment(static_cast<double>(s.audit_records));
  auto& expiry = gauge("hansa_certificate_expiry_timestamp_seconds",
                       "When the federation CA's and the coordinator's certificates expire");
  if (s.ca_not_after != absl::InfiniteFuture()) {
    expiry.Add({{"certificate", "ca"}}).Set(UnixSeconds(s.ca_not_after));
  }
  if (s.coordinator_not_after != absl::InfiniteFuture()) {
    expiry.Add({{"certificate", "coordinator"}}).Set(UnixSeconds(s.coordinator_not_after));
  }
  return PrometheusText(registry);
}

void DescribeFederation(FederationStatusBoard& board, const EngineOptions& options,
                        const Certificate& ca, const Certificate& own) {
  const SubjectName subject = ca.Subject();
  std::string ca_subject = absl::StrCat("CN=", subject.common_name);
  if (!subject.organization.empty()) absl::StrAppend(&ca_subject, ", O=", subject.organization);
  if (!subject.country.empty()) absl::StrAppend(&ca_subject, ", C=", subject.country);
  board.Update([&](FederationStatus& s) {
    s.federation = options.federation;
    s.study = options.study;
    s.ca_subject = std::move(ca_subject);
    s.ca_not_after = ca.NotAfter();
    s.coordinator_not_after = own.NotAfter();
    s.started = absl::Now();
    s.total_rounds = options.rounds;
    s.site_idle = options.site_idle;
  });
}

void ServeFederationMetrics(HttpServer& server, std::shared_ptr<FederationStatusBoard> board,
                            std::shared_ptr<AuditLog> audit) {
  server.Handle("/metrics",
                [board = std::move(board), audit = std::move(audit)](const HttpRequest&) {
                  if (audit) {
                    const AuditAnchor anchor = audit->anchor();
                    board->AuditState(anchor.records, anchor.sha256);
                  }
                  HttpResponse response;
                  response.content_type = kPrometheusContentType;
                  response.body = FederationMetricsText(board->Snapshot(), absl::Now());
                  return response;
                });
}

}  // namespace hansa
