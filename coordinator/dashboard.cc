#include "coordinator/dashboard.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/pki/ca_registry.h"
#include "common/plan/study_facts.h"
#include "coordinator/dashboard_assets/assets.h"

namespace hansa {
namespace {

using json = nlohmann::json;

json Time(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return nullptr;
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

json Number(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

json Seconds(absl::Time since, absl::Time now) {
  if (since == absl::InfinitePast()) return nullptr;
  return std::max(0.0, absl::ToDoubleSeconds(now - since));
}

// The size of a whole update this round: every site sends a vector of the same length, so the
// first completed upload tells the others' progress; 0 until one completes.
int64_t ExpectedUploadBytes(const FederationStatus& status) {
  int64_t expected = 0;
  for (const auto& [name, site] : status.sites) {
    if (site.in_cohort && site.round_uploaded) {
      expected = std::max(expected, site.round_upload_bytes);
    }
  }
  return expected;
}

json Sites(const FederationStatus& status, absl::Time now) {
  const int64_t expected = ExpectedUploadBytes(status);
  json sites = json::array();
  for (const auto& [name, site] : status.sites) {
    const bool connected = now - site.last_seen <= status.site_idle;
    json upload = {{"received_bytes", site.round_upload_bytes}, {"complete", site.round_uploaded}};
    if (site.round_uploaded) {
      upload["expected_bytes"] = site.round_upload_bytes;
    } else if (expected > 0) {
      upload["expected_bytes"] = expected;
    }
    sites.push_back({{"name", site.name},
                     {"country", site.country},
                     {"organization", site.organization},
                     {"state", connected ? "connected" : "disconnected"},
                     {"in_cohort", site.in_cohort},
                     {"joined", Time(site.joined)},
                     {"last_seen", Time(site.last_seen)},
                     {"last_seen_seconds_ago", Seconds(site.last_seen, now)},
                     {"certificate_not_after", Time(site.certificate_not_after)},
                     {"uploads", site.uploads},
                     {"bytes_received", site.bytes_received},
                     {"dropouts", site.dropouts},
                     {"refusals", site.refusals},
                     {"upload", std::move(upload)}});
  }
  return sites;
}

json History(const FederationStatus& status) {
  json history = json::array();
  for (const RoundHistory& r : status.history) {
    history.push_back({{"round", r.round},
                       {"sites", r.sites},
                       {"accuracy", Number(r.accuracy)},
                       {"loss", Number(r.loss)},
                       {"seconds", Number(r.seconds)},
                       {"bytes_received", r.bytes_received}});
  }
  return history;
}

json Privacy(const FederationStatus& status) {
  json privacy = json::array();
  for (const PrivacyStatus& p : status.privacy) {
    privacy.push_back({{"guarantee", p.guarantee},
                       {"epsilon_spent", Number(p.epsilon_spent)},
                       {"epsilon_budget", Number(p.epsilon_budget)},
                       {"delta", Number(p.delta)}});
  }
  return privacy;
}

// Newest first.
json Events(const FederationStatus& status) {
  json events = json::array();
  for (auto it = status.recent_events.rbegin(); it != status.recent_events.rend(); ++it) {
    events.push_back({{"round", it->round},
                      {"site", it->site},
                      {"kind", it->kind},
                      {"stage", it->stage},
                      {"reason", it->reason}});
  }
  return events;
}

HttpResponse Asset(const char* content_type, const char* body) {
  HttpResponse response;
  response.content_type = content_type;
  response.body = body;
  return response;
}

}  // namespace

DashboardFacts MakeDashboardFacts(const Certificate& ca, const Certificate& coordinator,
                                  const std::string& listen) {
  DashboardFacts facts;
  facts.ca_fingerprint = ca.Sha256Fingerprint();
  facts.coordinator_name = coordinator.Subject().common_name;
  facts.listen = listen;
  return facts;
}

json DashboardStatusJson(const FederationStatus& status, const DashboardFacts& facts,
                         absl::Time now) {
  json document = {
      {"generated_at", Time(now)},
      {"federation",
       {{"name", status.federation},
        {"started_at", Time(status.started)},
        {"ca",
         {{"subject", status.ca_subject},
          {"fingerprint", facts.ca_fingerprint},
          {"not_after", Time(status.ca_not_after)}}},
        {"coordinator",
         {{"name", facts.coordinator_name},
          {"listen", facts.listen},
          {"certificate_not_after", Time(status.coordinator_not_after)}}}}},
      {"round",
       {{"number", status.current_round},
        {"total", status.total_rounds},
        {"completed", status.completed_rounds},
        {"stage", status.stage},
        {"stage_seconds", Seconds(status.stage_started, now)},
        {"round_seconds", Seconds(status.round_started, now)},
        {"uploads_in_flight", status.uploads_in_flight}}},
      {"connected", status.SitesConnected(now)},
      {"sites", Sites(status, now)},
      {"history", History(status)},
      {"dropouts", status.dropouts},
      {"refusals", status.refusals},
      {"events", Events(status)},
      {"privacy", Privacy(status)},
      {"audit", {{"records", status.audit_records}, {"head_hash", status.audit_head}}},
  };
  // A message with no field set serializes to nothing: the configuration states no fact.
  if (status.study.ByteSizeLong() > 0) document["study"] = StudyFactsJson(status.study);
  return document;
}

std::string SafeJsonText(const json& document) {
  const std::string text = document.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size() + text.size() / 16);
  // Outside strings JSON has none of these characters, so each one is inside a string, where
  // the \u form reads back as the same character.
  for (char c : text) {
    switch (c) {
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void RegisterDashboard(HttpServer& server, std::shared_ptr<const FederationStatusBoard> board,
                       std::shared_ptr<const AuditLog> audit, DashboardFacts facts) {
  server.Handle("/", [](const HttpRequest&) {
    return Asset("text/html; charset=utf-8", dashboard_assets::kIndexHtml);
  });
  server.Handle("/dashboard.js", [](const HttpRequest&) {
    return Asset("text/javascript; charset=utf-8", dashboard_assets::kDashboardJs);
  });
  server.Handle("/dashboard.css", [](const HttpRequest&) {
    return Asset("text/css; charset=utf-8", dashboard_assets::kDashboardCss);
  });
  server.Handle("/status.json", [board = std::move(board), audit = std::move(audit),
                                 facts = std::move(facts)](const HttpRequest&) {
    FederationStatus status = board->Snapshot();
    if (audit != nullptr) {
      AuditAnchor anchor = audit->anchor();
      status.audit_records = anchor.records;
      status.audit_head = std::move(anchor.sha256);
    }
    HttpResponse response;
    response.content_type = "application/json";
    response.body = SafeJsonText(DashboardStatusJson(status, facts, absl::Now()));
    return response;
  });
}

Status CheckOperatorCertificate(const Certificate& client) {
  if (client.OrganizationalUnit() == kOperatorUnit) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "the certificate of '", client.Subject().common_name, "' (serial ", client.SerialHex(),
      ") is not an operator's: this coordinator's dashboard and metrics open beyond loopback only "
      "for a certificate the federation CA issued with hansa ca sign --role operator "
      "(OU=operator); a site's certificate never opens them"));
}

std::function<Status(const Certificate&)> OperatorAuthorizer(
    std::shared_ptr<ClientCertificatePolicy> revocations) {
  return [revocations = std::move(revocations)](const Certificate& client) -> Status {
    RETURN_IF_ERROR(CheckOperatorCertificate(client));
    if (revocations != nullptr) RETURN_IF_ERROR(revocations->CheckRevoked(client, absl::Now()));
    return absl::OkStatus();
  };
}

}  // namespace hansa
