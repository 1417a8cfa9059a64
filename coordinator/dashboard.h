// The operator's dashboard: one read-only page the coordinator serves beside /metrics on its
// monitoring server (common/monitoring/http_server.h). Paths:
//   /               the page (static HTML, no inline script or style)
//   /dashboard.js   its script: reads /status.json every 2 s and draws everything as text nodes
//                   and SVG attributes, never as markup
//   /dashboard.css  its style
//   /status.json    the federation's snapshot (coordinator/federation_status.h) for the page
// The assets are compiled in (coordinator/dashboard_assets/, embedded at build time); nothing is
// read from disk or fetched from elsewhere, so the server's strict Content-Security-Policy holds.
//
// Access: the monitoring server serves plain HTTP on loopback only; bound elsewhere it speaks
// HTTPS with client certificates of the federation CA, and OperatorAuthorizer admits only an
// operator's (hansa ca sign --role operator: OU=operator), so a site's certificate never opens it.
//
// Threading: the handlers run on the server's threads; they read the board's snapshot (its own
// lock) and immutable facts, so any number may run at once. Functions here are thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/audit/audit_log.h"
#include "common/monitoring/http_server.h"
#include "common/net/tls.h"
#include "common/pki/certificate.h"
#include "common/status/status.h"
#include "coordinator/federation_status.h"
#include "nlohmann/json.hpp"

namespace hansa {

// What the page shows that never changes while the coordinator runs.
struct DashboardFacts {
  std::string ca_fingerprint;    // SHA-256 of the federation CA certificate
  std::string coordinator_name;  // CN of the coordinator's certificate
  std::string listen;            // where sites connect
};

// The facts from the federation CA, the coordinator's own certificate and where sites connect.
DashboardFacts MakeDashboardFacts(const Certificate& ca, const Certificate& coordinator,
                                  const std::string& listen);

// The document /status.json serves: federation and CA, round and stage, every site with its
// state, last seen and upload of the open round, the history of accuracy and loss, dropouts and
// refusals (counts, and the newest events first with a dropout's stage and a refusal's reason),
// privacy spent against each budget, the audit log's head, and the study's GDPR facts as
// StudyFactsJson gives them (common/plan/study_facts.h; left out when none is stated); times in UTC
// ISO 8601, NaN and never-seen times as null.
nlohmann::json DashboardStatusJson(const FederationStatus& status, const DashboardFacts& facts,
                                   absl::Time now);

// `document` serialized for a browser: invalid UTF-8 replaced, and '<', '>' and '&' written as
// \u003c, \u003e and \u0026 so that no string from a peer reads as markup anywhere it lands.
std::string SafeJsonText(const nlohmann::json& document);

// Registers the four paths on `server`. /status.json reads `board` and, when given, the audit
// log's head at each request; both are shared with the handlers, which may outlive the caller.
void RegisterDashboard(HttpServer& server, std::shared_ptr<const FederationStatusBoard> board,
                       std::shared_ptr<const AuditLog> audit, DashboardFacts facts);

// OK for an operator's certificate (OU=operator); PermissionDenied naming the certificate and
// what to do otherwise. The certificate is already checked against the federation CA.
Status CheckOperatorCertificate(const Certificate& client);

// HttpServerOptions::authorize for the coordinator's monitoring server beyond loopback:
// CheckOperatorCertificate, then, when `revocations` is given, its revocation list (a revoked
// operator is refused like a revoked site).
std::function<Status(const Certificate&)> OperatorAuthorizer(
    std::shared_ptr<ClientCertificatePolicy> revocations);

}  // namespace hansa
