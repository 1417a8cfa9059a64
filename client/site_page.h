// The site's own page for its staff, on the site's monitoring HTTP server: "/" renders the
// site report (common/report/site_report.h) of its egress ledger, "/report.json" its data. Both
// are rebuilt from the ledger, and the ledger verified against the federation CA, on every
// request, so what the page shows is what the ledger says now (a ledger of 3,000 records takes
// about 0.3 s on one core). Served on loopback only: the ledger is the site's business, and a
// server bound beyond loopback admits any certificate of the federation CA, so it gets no page.
//
// Threading: the handlers read files only and share nothing; the server's workers may call
// them concurrently.
#pragma once

#include <string>

#include "common/monitoring/http_server.h"
#include "common/status/status.h"

namespace hansa {

struct SitePageOptions {
  std::string state_dir;       // holds egress.jsonl
  std::string ca_certificate;  // the federation CA (site.toml's)
  std::string certificate;     // the site's own: the ledger must be signed with it; "" unchecked
  int refresh_seconds = 10;    // the page reloads itself this often
  // The site's own budgets (site.toml's policy.max_epsilon, max_record_epsilon; 0: none), shown
  // beside what was spent: the ledger records spending, the policy the limit.
  double max_epsilon = 0;
  double max_record_epsilon = 0;
};

// One request to "/" or "/report.json": 200 with the page or JSON, or 500 naming why the
// report could not be built (no state dir, an unreadable CA). A ledger that does not verify is
// a 200 page that says so.
HttpResponse ServeSitePage(const SitePageOptions& options, const HttpRequest& request);

// Registers "/" and "/report.json" on `server`. FailedPrecondition, registering nothing, when
// the server speaks TLS (it is bound beyond loopback).
Status RegisterSitePage(HttpServer& server, SitePageOptions options);

}  // namespace hansa
