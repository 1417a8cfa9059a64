// The compliance report of a federation, built from a coordinator's state directory alone:
// audit.jsonl (verified against the federation CA), metrics.jsonl, and the CA certificate.
// `hansa report` writes it as report.json and as a self-contained report.html (inline CSS and
// SVG, no scripts, nothing fetched).
//
// report.json ("schema": "hansa.report/1"):
//   generated_at, state_dir
//   federation    {name, config_sha256, model, rounds_configured, min_sites, aggregation,
//                  allowed_countries[], allowed_countries_text, coordinator{name, organisation,
//                  country, country_name, fingerprint}, ca{name, organisation, country,
//                  fingerprint}|null, started_at, finished, restarts}
//   study         {recorded, id, purpose, purpose_sha256, legal_basis, controllers[],
//                  retention_days, dpia_reference}: the study's identifier and GDPR facts from
//                  federation_started (null each, recorded false, when the log holds none)
//   participants  [{site, organisation, country, country_name, fingerprint, first_admitted,
//                   rounds_contributed}]
//   refusals      [{time, site, organisation, country, fingerprint, reason}]
//   rounds        [{round, attempts, planned_at, plan_sha256, start_model_sha256, cohort[],
//                   aggregation, secure_aggregation|null, privacy|null,
//                   record_privacy|null, consented[],
//                   declined[{site, reason}], dropouts[{site, stage}],
//                   updates[{site, bytes, sha256}], aggregated_sites[], model_sha256,
//                   released_at, epsilon, delta, record_epsilon, record_delta,
//                   checkpoint{path, sha256}|null,
//                   accuracy, loss, seconds, bytes_up, bytes_down}]   (absent values are null)
//                  and, only where metrics.jsonl has them (kClinicalMetrics), the federation's
//                  balanced_accuracy, macro_f1 (classification), auc (binary), mse, mae, r2
//                  (regression)
//   privacy       {enabled, epsilon_over_rounds[{round, epsilon, delta}], final_epsilon, delta,
//                  record_level{the same four, for record-level DP-SGD}}  (client-level above)
//   accuracy_over_rounds [{round, accuracy, loss}]     (metrics.jsonl, round 0 = initial model)
//   bytes_received [{site, round, bytes}]              (update_received, summed over attempts)
//   audit         {path, present, verified, error, records, events{}, first_time, last_time,
//                  signer{name, organisation, country, fingerprint}, head, closed}
//   checks        [{check, title, made, passed, detail}]: what the report could check, in this
//                  order: chain_and_signatures (against the CA), signer_role (a coordinator's
//                  certificate), signer_fingerprint (the coordinator's own, when given),
//                  closing_record (the log ends in federation_finished), site_ledgers (the
//                  egress ledgers given, reconciled). `passed` is null when not made, and
//                  `detail` says why not (no CA, no fingerprint, no ledgers given).
//   site_ledgers  [{path, site, reconciled, error, matched, heads_shown, heads_confirmed,
//                   differences[{kind, round, description}]}]   (reconcile.h, one per ledger)
//   data_flow     {title, paragraphs[{heading, text}]} (data_flow.h)
#pragma once

#include <string>
#include <vector>

#include "common/status/status.h"
#include "nlohmann/json.hpp"

namespace hansa {

// The clinical figures a round of metrics.jsonl may carry (coordinator/round_metrics.h), in the
// order the report shows them, with their column titles.
struct ClinicalMetric {
  const char* key;
  const char* title;
};
inline constexpr ClinicalMetric kClinicalMetrics[] = {{"balanced_accuracy", "Balanced accuracy"},
                                                      {"macro_f1", "Macro F1"},
                                                      {"auc", "AUC"},
                                                      {"mse", "MSE"},
                                                      {"mae", "MAE"},
                                                      {"r2", "R&sup2;"}};

struct ReportOptions {
  std::string state_dir;
  // The federation CA certificate; empty means STATE_DIR/../ca.pem when that exists. Without a
  // CA the report says the audit log was not verified.
  std::string ca_path;
  // Fixed "generated_at" for reproducible output (tests); empty means now.
  std::string generated_at;
  // SHA-256 fingerprint (hex) of the coordinator's certificate that must have signed the audit
  // log; empty: not checked, and the report says so.
  std::string coordinator_fingerprint = {};
  // Sites' egress.jsonl files to reconcile with the audit log; none: not checked, and the
  // report says so.
  std::vector<std::string> egress_ledgers = {};
};

// Reads the state dir. Errors only when the state dir itself is unusable (missing, or a
// metrics.jsonl line that is not JSON); a missing or failing audit log is reported inside.
StatusOr<nlohmann::json> BuildReport(const ReportOptions& options);

// The HTML page for a report built by BuildReport.
std::string RenderReportHtml(const nlohmann::json& report);

struct WrittenReport {
  std::string html_path;
  std::string json_path;
  bool audit_verified = false;
  std::string audit_error;  // why not, when !audit_verified
  // "check: detail" for each check made that failed (the closing record aside: a running
  // federation has none yet).
  std::vector<std::string> failed_checks;
};

// Builds the report and writes out_dir/report.html and out_dir/report.json (atomically).
StatusOr<WrittenReport> WriteReport(const ReportOptions& options, const std::string& out_dir);

}  // namespace hansa
