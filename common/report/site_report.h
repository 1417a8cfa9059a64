// A site's own compliance report, built from its egress ledger alone (STATE_DIR/egress.jsonl,
// verified against the federation CA): the federation it joined, every plan it answered and
// why, what it sent per round (bytes, digests, the figures it sent in the clear), the privacy
// it spent, and the state of the ledger's chain. `hansa report --site` writes it as
// report.json and a self-contained report.html in the coordinator's report's style (no
// scripts, nothing fetched); the site's loopback page (client/site_page.h) renders the same.
//
// report.json ("schema": "hansa.site_report/1"):
//   generated_at, state_dir
//   site          {name, organisation, country, country_name, fingerprint}|null  (the ledger's
//                  signer: the certificate it is signed under now, signer_renewed included)
//   ca            {name, organisation, country, country_name, fingerprint}|null
//   federation    {name, site, coordinator_country, coordinator_country_name}|null: the last
//                  federation_joined record (ledgers written before it was recorded have none)
//   federations   [{federation, site, coordinator_country, first_joined, last_joined, joins}]
//   studies       [{study, time, round, sha256, facts{id, purpose, legal_basis, ...}}]
//                 (study_facts)
//   policies      [{time, reason ("start"|"reload"), sha256, policy{site.toml's [policy] keys}}]
//                 (policy_applied: the rules the plans after it were answered under)
//   plans         [{study, round, time, plan_sha256, accepted, reason, coordinator_audit_head}]
//   rounds        [{study, round, answer ("accepted"|"refused"|null), reason, plan_sha256,
//                   messages, bytes, failed_sends, update{bytes, sha256, values, failed}|null,
//                   metrics{the values of the round's last metrics message}|null,
//                   epsilon, record_epsilon (the site's cumulative, after the round)|null,
//                   sent[{time, type, bytes, sha256, values|null, failed (error)|null}]}]
//                  in ledger order. `study` counts the studies the ledger holds, from 1: a new
//                  one starts where the study's facts change or the round number goes back.
//                  Joins (round 0, type "join") are counted in totals only.
//   privacy       {enabled, epsilon_over_rounds[{study, round, epsilon, delta}], final_epsilon,
//                  delta, record_level{the same four}}  (client-level above; privacy_spent)
//   totals        {messages, bytes, joins, plans_accepted, plans_refused, failed_sends,
//                  by_type{type: {messages, bytes}}}
//   ledger        {path, present, verified, error, records, events{}, first_time, last_time,
//                  signer{...}, head}
//   checks        [{check, title, made, passed, detail}]: chain_and_signatures (against the
//                  CA), signer_role (a site's certificate), signer_fingerprint (the site's own,
//                  when given). `passed` is null when not made.
// Where the ledger does not verify, everything is still shown from the records that parse,
// beside a verdict that says so.
//
// Threading: pure functions over files; any thread.
#pragma once

#include <string>

#include "common/report/report.h"
#include "common/status/status.h"
#include "nlohmann/json.hpp"

namespace hansa {

struct SiteReportOptions {
  std::string state_dir;  // the site's state_dir (site.toml), holding egress.jsonl
  // The federation CA certificate; empty means STATE_DIR/../ca.pem (a startup kit's layout)
  // when that exists. Without a CA the report says the ledger was not verified.
  std::string ca_path;
  // SHA-256 fingerprint (hex) of the site's certificate that must have signed the ledger;
  // empty: not checked, and the report says so.
  std::string site_fingerprint = {};
  // Fixed "generated_at" for reproducible output (tests); empty means now.
  std::string generated_at = {};
  // The ledger is being written (the site's live page): a last line without its newline is a
  // record being appended, left out rather than reported as a cut.
  bool live = false;
};

// Reads and verifies the ledger. Errors only when the state dir is missing or the CA file given
// cannot be read; a missing, unverifiable or tampered ledger is reported inside.
StatusOr<nlohmann::json> BuildSiteReport(const SiteReportOptions& options);

struct SiteHtmlOptions {
  // The loopback page reloads itself every this many seconds; 0: a static report.
  int refresh_seconds = 0;
  // Where the page says it comes from ("hansa report --site", "hansa-client's page").
  std::string generator = "<code>hansa report --site</code>";
};

// The HTML page for a report built by BuildSiteReport.
std::string RenderSiteReportHtml(const nlohmann::json& report, const SiteHtmlOptions& html = {});

// Builds the report and writes out_dir/report.html and out_dir/report.json (atomically).
// audit_verified and audit_error say whether the egress ledger verified; failed_checks names
// each check made that failed.
StatusOr<WrittenReport> WriteSiteReport(const SiteReportOptions& options,
                                        const std::string& out_dir);

}  // namespace hansa
