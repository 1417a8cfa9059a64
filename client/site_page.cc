#include "client/site_page.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/pki/certificate.h"
#include "common/report/site_report.h"
#include "nlohmann/json.hpp"

namespace hansa {

HttpResponse ServeSitePage(const SitePageOptions& options, const HttpRequest& request) {
  SiteReportOptions report;
  report.state_dir = options.state_dir;
  report.ca_path = options.ca_certificate;
  report.live = true;
  HttpResponse response;
  if (!options.certificate.empty()) {
    auto cert = Certificate::FromFile(options.certificate);
    if (!cert.ok()) {
      response.status = 500;
      response.body = absl::StrCat("site page: ", cert.status().message(), "\n");
      return response;
    }
    report.site_fingerprint = cert->Sha256Fingerprint();
  }
  StatusOr<nlohmann::json> built = BuildSiteReport(report);
  if (!built.ok()) {
    response.status = 500;
    response.body = absl::StrCat("site page: ", built.status().message(), "\n");
    return response;
  }
  // The budgets live in the policy, not the ledger: the page adds them (the offline report,
  // which has only the ledger, leaves them out).
  if (options.max_epsilon > 0) (*built)["privacy"]["budget"] = options.max_epsilon;
  if (options.max_record_epsilon > 0) {
    (*built)["privacy"]["record_level"]["budget"] = options.max_record_epsilon;
  }
  if (request.path == "/report.json") {
    response.content_type = "application/json";
    response.body = built->dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return response;
  }
  SiteHtmlOptions html;
  html.refresh_seconds = options.refresh_seconds;
  html.generator = "<code>hansa-client</code>";
  response.content_type = "text/html; charset=utf-8";
  // The page's own inline style sheet, and nothing else: no scripts, no fetches.
  response.content_security_policy =
      "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; "
      "form-action 'none'";
  response.body = RenderSiteReportHtml(*built, html);
  return response;
}

Status RegisterSitePage(HttpServer& server, SitePageOptions options) {
  if (server.tls()) {
    return absl::FailedPreconditionError(
        "the site's page is served on loopback only, and [monitoring] listen is not a loopback "
        "address: the page is off (its metrics stay served)");
  }
  auto shared = std::make_shared<const SitePageOptions>(std::move(options));
  HttpHandler handler = [shared](const HttpRequest& request) {
    return ServeSitePage(*shared, request);
  };
  server.Handle("/", handler);
  server.Handle("/report.json", handler);
  return absl::OkStatus();
}

}  // namespace hansa
