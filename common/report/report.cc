#include "common/report/report.h"

#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/audit/events.h"
#include "common/audit/jurisdiction.h"
#include "common/audit/reconcile.h"
#include "common/audit/record.h"
#include "common/audit/verify.h"
#include "common/fileio/fileio.h"
#include "common/pki/certificate.h"
#include "common/report/data_flow.h"
#include "common/report/internal/report_files.h"

namespace hansa {
namespace {

namespace ev = audit_events;
namespace fs = std::filesystem;
using nlohmann::json;
using report_internal::Check;

json Get(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? json() : *it;
}

std::string Str(const json& object, const char* name) {
  json v = Get(object, name);
  return v.is_string() ? v.get<std::string>() : std::string();
}

int64_t Int(const json& object, const char* name, int64_t fallback = -1) {
  json v = Get(object, name);
  return v.is_number_integer() ? v.get<int64_t>() : fallback;
}

json Identity(const SubjectName& subject, const std::string& fingerprint) {
  return {{"name", subject.common_name},
          {"organisation", subject.organization},
          {"country", subject.country},
          {"country_name", CountryName(subject.country)},
          {"fingerprint", fingerprint}};
}

json EmptyRound(int64_t round) {
  return {{"round", round},
          {"attempts", 0},
          {"planned_at", nullptr},
          {"plan_sha256", nullptr},
          {"start_model_sha256", nullptr},
          {"cohort", json::array()},
          {"aggregation", nullptr},
          {"secure_aggregation", nullptr},
          {"privacy", nullptr},
          {"consented", json::array()},
          {"declined", json::array()},
          {"dropouts", json::array()},
          {"updates", json::array()},
          {"aggregated_sites", json::array()},
          {"model_sha256", nullptr},
          {"released_at", nullptr},
          {"epsilon", nullptr},
          {"delta", nullptr},
          {"record_privacy", nullptr},
          {"record_epsilon", nullptr},
          {"record_delta", nullptr},
          {"checkpoint", nullptr},
          {"accuracy", nullptr},
          {"loss", nullptr},
          {"seconds", nullptr},
          {"bytes_up", nullptr},
          {"bytes_down", nullptr}};
}

// Everything the audit records say, folded per round and per participant.
struct Folded {
  json federation = json::object();
  std::map<std::pair<std::string, std::string>, json> participants;  // (site, fingerprint)
  json refusals = json::array();
  json retention = json::array();  // retention_applied records: what was deleted, and when
  std::map<int64_t, json> rounds;
  std::map<std::pair<std::string, int64_t>, int64_t> bytes;  // (site, round)
  int64_t restarts = 0;
  bool finished = false;
};

json& Round(Folded& f, int64_t round) {
  auto it = f.rounds.find(round);
  if (it == f.rounds.end()) it = f.rounds.emplace(round, EmptyRound(round)).first;
  return it->second;
}

void Fold(const AuditRecord& r, Folded& f) {
  const json& x = r.fields;
  int64_t round = Int(x, "round");
  if (r.event == ev::kFederationStarted) {
    if (f.federation.empty()) {
      f.federation = x;
      f.federation["started_at"] = r.time;
    }
  } else if (r.event == ev::kCoordinatorResumed) {
    ++f.restarts;
  } else if (r.event == ev::kSiteAdmitted) {
    auto key = std::make_pair(Str(x, "site"), Str(x, "fingerprint"));
    if (!f.participants.count(key)) {
      f.participants[key] = {{"site", key.first},
                             {"organisation", Str(x, "organisation")},
                             {"country", Str(x, "country")},
                             {"country_name", CountryName(Str(x, "country"))},
                             {"fingerprint", key.second},
                             {"first_admitted", r.time},
                             {"rounds_contributed", 0}};
    }
  } else if (r.event == ev::kSiteRefused) {
    f.refusals.push_back({{"time", r.time},
                          {"site", Str(x, "site")},
                          {"organisation", Str(x, "organisation")},
                          {"country", Str(x, "country")},
                          {"fingerprint", Str(x, "fingerprint")},
                          {"reason", Str(x, "reason")}});
  } else if (r.event == ev::kRoundPlanned && round >= 0) {
    json& o = Round(f, round);
    o["attempts"] = o["attempts"].get<int64_t>() + 1;
    o["planned_at"] = r.time;
    o["plan_sha256"] = Get(x, "plan_sha256");
    o["start_model_sha256"] = Get(x, "model_sha256");
    o["cohort"] = Get(x, "cohort").is_array() ? x["cohort"] : json::array();
    o["aggregation"] = Get(x, "aggregation");
    o["secure_aggregation"] = Get(x, "secure_aggregation");
    o["privacy"] = Get(x, "privacy");
    o["record_privacy"] = Get(x, "record_privacy");
  } else if (r.event == ev::kSiteConsented && round >= 0) {
    Round(f, round)["consented"].push_back(Str(x, "site"));
  } else if (r.event == ev::kSiteDeclined && round >= 0) {
    Round(f, round)["declined"].push_back({{"site", Str(x, "site")}, {"reason", Str(x, "reason")}});
  } else if (r.event == ev::kUpdateReceived && round >= 0) {
    int64_t bytes = Int(x, "bytes", 0);
    Round(f, round)["updates"].push_back(
        {{"site", Str(x, "site")}, {"bytes", bytes}, {"sha256", Str(x, "sha256")}});
    f.bytes[{Str(x, "site"), round}] += bytes;
  } else if (r.event == ev::kSiteDropped && round >= 0) {
    Round(f, round)["dropouts"].push_back({{"site", Str(x, "site")}, {"stage", Str(x, "stage")}});
  } else if (r.event == ev::kAggregateReleased && round >= 0) {
    json& o = Round(f, round);
    o["model_sha256"] = Get(x, "model_sha256");
    o["released_at"] = r.time;
    o["aggregated_sites"] = Get(x, "sites").is_array() ? x["sites"] : json::array();
  } else if (r.event == ev::kPrivacySpent && round >= 0) {
    // Record-level DP-SGD says so; client-level records (and older ones) do not.
    const bool record = Str(x, "guarantee") == "record-level";
    Round(f, round)[record ? "record_epsilon" : "epsilon"] = Get(x, "epsilon");
    Round(f, round)[record ? "record_delta" : "delta"] = Get(x, "delta");
  } else if (r.event == ev::kCheckpointWritten && round >= 0) {
    Round(f, round)["checkpoint"] = {{"path", Get(x, "path")}, {"sha256", Get(x, "sha256")}};
  } else if (r.event == ev::kFederationFinished) {
    f.finished = true;
  } else if (r.event == ev::kRetentionApplied) {
    f.retention.push_back({{"time", r.time},
                           {"retention_days", Get(x, "retention_days")},
                           {"days_from", Get(x, "days_from")},
                           {"cutoff", Get(x, "cutoff")},
                           {"files", Get(x, "files")},
                           {"bytes", Get(x, "bytes")}});
  }
}

StatusOr<std::vector<json>> ReadMetrics(const std::string& path) {
  std::vector<json> lines;
  if (!fs::exists(path)) return lines;
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  size_t start = 0, number = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++number;
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    json m = json::parse(line.begin(), line.end(), nullptr, false);
    if (m.is_discarded() || !m.is_object() || !m["round"].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", number, " is not a JSON object with an integer \"round\""));
    }
    lines.push_back(std::move(m));
  }
  return lines;
}

json AuditSection(const std::string& path, const std::string& ca_path,
                  const std::optional<Certificate>& ca, const std::string& fingerprint,
                  std::vector<AuditRecord>* records) {
  json audit = {{"path", path},          {"present", fs::exists(path)},
                {"verified", false},     {"error", nullptr},
                {"records", 0},          {"events", json::object()},
                {"first_time", nullptr}, {"last_time", nullptr},
                {"signer", nullptr},     {"head", nullptr},
                {"closed", false}};
  if (!audit["present"].get<bool>()) {
    audit["error"] = absl::StrCat("no audit log at ", path);
    return audit;
  }
  auto unverified = ReadAuditRecordsUnverified(path);
  if (unverified.ok()) *records = *std::move(unverified);
  audit["records"] = records->size();
  if (!ca) {
    audit["error"] = absl::StrCat(
        "not verified: no federation CA certificate (give --ca; looked for ", ca_path, ")");
    return audit;
  }
  VerifyOptions options;
  options.usage = CertificateUsage::kTlsServer;
  options.expected_fingerprint = fingerprint;
  auto summary = VerifyAuditLog(path, *ca, options);
  if (!summary.ok()) {
    audit["error"] = std::string(summary.status().message());
    return audit;
  }
  audit["verified"] = true;
  audit["records"] = summary->records;
  audit["events"] = summary->events;
  audit["first_time"] = summary->first_time;
  audit["last_time"] = summary->last_time;
  audit["signer"] = Identity(summary->signer, summary->signer_fingerprint);
  audit["head"] = summary->head;
  audit["closed"] = summary->closed;
  return audit;
}

// The audit log's checks one by one, so a failure names the one that failed: the chain alone
// (any signer from the CA), then the signer's role, then its fingerprint, then the end.
json AuditChecks(const std::string& path, const std::optional<Certificate>& ca,
                 const std::string& fingerprint) {
  json checks = json::array();
  std::string missing;
  if (!fs::exists(path)) missing = absl::StrCat("no audit log at ", path);
  if (missing.empty() && !ca) missing = "no federation CA certificate given (--ca)";
  StatusOr<AuditSummary> base = absl::UnknownError("not checked");
  if (missing.empty()) {
    VerifyOptions chain;
    chain.usage = CertificateUsage::kAny;
    base = VerifyAuditLog(path, *ca, chain);
  }
  checks.push_back(report_internal::ChainCheck(missing, base));
  const std::string unchecked = missing.empty() ? "the chain did not verify" : missing;
  if (!base.ok()) {
    checks.push_back(Check("signer_role", "Signer is a coordinator", false, false, unchecked));
  } else {
    VerifyOptions role;
    Status st = VerifyAuditLog(path, *ca, role).status();
    checks.push_back(Check("signer_role", "Signer is a coordinator", true, st.ok(),
                           st.ok() ? "signed with a coordinator's certificate (TLS server "
                                     "authentication), not a site's"
                                   : std::string(st.message())));
  }
  if (!base.ok() || fingerprint.empty()) {
    checks.push_back(Check("signer_fingerprint", "Signer is this federation's coordinator", false,
                           false,
                           base.ok() ? "no coordinator fingerprint given (--coordinator-"
                                       "fingerprint or --certificate)"
                                     : unchecked));
  } else {
    VerifyOptions pinned;
    pinned.usage = CertificateUsage::kAny;
    pinned.expected_fingerprint = fingerprint;
    Status st = VerifyAuditLog(path, *ca, pinned).status();
    checks.push_back(Check("signer_fingerprint", "Signer is this federation's coordinator", true,
                           st.ok(),
                           st.ok() ? absl::StrCat("certificate SHA-256 ", base->signer_fingerprint)
                                   : std::string(st.message())));
  }
  checks.push_back(Check(
      "closing_record", "Log ends in its closing record", base.ok(), base.ok() && base->closed,
      !base.ok() ? unchecked
      : base->closed
          ? absl::StrCat("complete: closed by federation_finished at record ", base->closing_record)
          : std::string("no closing record: the log may be truncated, or the "
                        "federation is still running")));
  return checks;
}

// Each egress ledger reconciled with the audit log (reconcile.h), and the check that sums them.
json SiteLedgers(const std::string& path, const std::optional<Certificate>& ca,
                 const std::vector<std::string>& ledgers, json& checks) {
  json out = json::array();
  if (ledgers.empty() || !ca) {
    checks.push_back(Check("site_ledgers", "Site ledgers reconciled", false, false,
                           ledgers.empty() ? "no site egress ledgers given (--egress)"
                                           : "no federation CA certificate given (--ca)"));
    return out;
  }
  int64_t reconciled = 0, differences = 0;
  std::vector<std::string> problems;
  for (const std::string& ledger : ledgers) {
    json entry = {{"path", ledger},       {"site", nullptr},
                  {"reconciled", false},  {"error", nullptr},
                  {"matched", 0},         {"heads_shown", 0},
                  {"heads_confirmed", 0}, {"differences", json::array()}};
    auto result = Reconcile(path, ledger, *ca);
    if (!result.ok()) {
      entry["error"] = std::string(result.status().message());
      problems.push_back(absl::StrCat(ledger, ": ", result.status().message()));
      out.push_back(std::move(entry));
      continue;
    }
    entry["site"] = result->site;
    entry["reconciled"] = result->ok();
    entry["matched"] = result->matched;
    entry["heads_shown"] = result->heads_shown;
    entry["heads_confirmed"] = result->heads_confirmed;
    for (const ReconcileDifference& d : result->differences) {
      entry["differences"].push_back({{"kind", ReconcileKindName(d.kind)},
                                      {"round", d.round},
                                      {"description", d.description}});
      problems.push_back(
          absl::StrCat(result->site, ": ", ReconcileKindName(d.kind), ": ", d.description));
    }
    reconciled += result->ok() ? 1 : 0;
    differences += static_cast<int64_t>(result->differences.size());
    out.push_back(std::move(entry));
  }
  const bool passed = reconciled == static_cast<int64_t>(ledgers.size());
  std::string detail =
      absl::StrCat(reconciled, " of ", ledgers.size(),
                   " site ledgers reconciled with the audit log, ", differences, " differences");
  if (!passed) absl::StrAppend(&detail, ": ", absl::StrJoin(problems, "; "));
  checks.push_back(
      Check("site_ledgers", "Site ledgers reconciled", true, passed, std::move(detail)));
  return out;
}

json FederationSection(const Folded& f, const std::vector<AuditRecord>& records,
                       const std::optional<Certificate>& ca) {
  const json& s = f.federation;
  json fed = {{"name", Get(s, "federation")},
              {"config_sha256", Get(s, "config_sha256")},
              {"model", Get(s, "model")},
              {"rounds_configured", Get(s, "rounds")},
              {"min_sites", Get(s, "min_sites")},
              {"aggregation", Get(s, "aggregation")},
              {"allowed_countries", Get(s, "allowed_countries")},
              {"allowed_countries_text", nullptr},
              {"coordinator", nullptr},
              {"ca", nullptr},
              {"started_at", Get(s, "started_at")},
              {"finished", f.finished},
              {"restarts", f.restarts}};
  if (fed["allowed_countries"].is_array()) {
    std::vector<std::string> allowed;
    for (const json& c : fed["allowed_countries"]) {
      if (c.is_string()) allowed.push_back(c.get<std::string>());
    }
    fed["allowed_countries_text"] = DescribeCountries(allowed);
  }
  if (!CurrentSignerCertificate(records).empty()) {
    auto cert = Certificate::FromPem(CurrentSignerCertificate(records));
    if (cert.ok()) fed["coordinator"] = Identity(cert->Subject(), cert->Sha256Fingerprint());
  }
  if (fed["coordinator"].is_object() && Str(s, "coordinator_country") != "") {
    fed["coordinator"]["declared_country"] = Str(s, "coordinator_country");
  }
  if (ca) fed["ca"] = Identity(ca->Subject(), ca->Sha256Fingerprint());
  return fed;
}

// The study's GDPR facts as federation_started recorded them (coordinator.toml [federation]);
// `recorded` false, and every fact null, for a log without them.
json StudySection(const Folded& f) {
  const json s = Get(f.federation, "study");
  const bool recorded = s.is_object();
  json out = {{"recorded", recorded}};
  for (const char* key : {"id", "purpose", "purpose_sha256", "legal_basis", "controllers",
                          "retention_days", "dpia_reference"}) {
    out[key] = recorded ? Get(s, key) : json();
  }
  return out;
}

void MergeMetrics(const std::vector<json>& metrics, Folded& f, json& report) {
  json accuracy = json::array();
  for (const json& m : metrics) {
    int64_t round = m["round"].get<int64_t>();
    accuracy.push_back(
        {{"round", round}, {"accuracy", Get(m, "accuracy")}, {"loss", Get(m, "loss")}});
    if (round < 1) continue;  // round 0 evaluates the initial model
    json& o = Round(f, round);
    for (const char* key : {"accuracy", "loss", "seconds", "bytes_up", "bytes_down"}) {
      o[key] = Get(m, key);
    }
    for (const ClinicalMetric& c : kClinicalMetrics) {
      if (m.contains(c.key)) o[c.key] = m[c.key];
    }
    for (const char* key : {"epsilon", "record_epsilon"}) {
      if (o[key].is_null() && m.contains(key)) o[key] = m[key];
    }
    if (o["model_sha256"].is_null() && m.contains("model_sha256")) {
      o["model_sha256"] = m["model_sha256"];
    }
  }
  report["accuracy_over_rounds"] = accuracy;
}

// One guarantee's cumulative epsilon over rounds: `prefix` "" (client-level) or "record_".
json GuaranteeSection(const Folded& f, const std::string& prefix) {
  json points = json::array();
  bool planned = false;
  json last_delta;
  const std::string plan = prefix.empty() ? "privacy" : prefix + "privacy";
  for (const auto& [round, o] : f.rounds) {
    planned = planned || o[plan].is_object();
    if (o[prefix + "epsilon"].is_number()) {
      points.push_back(
          {{"round", round}, {"epsilon", o[prefix + "epsilon"]}, {"delta", o[prefix + "delta"]}});
      if (!o[prefix + "delta"].is_null()) last_delta = o[prefix + "delta"];
    }
  }
  return {{"enabled", planned || !points.empty()},
          {"epsilon_over_rounds", points},
          {"final_epsilon", points.empty() ? json() : points.back()["epsilon"]},
          {"delta", last_delta}};
}

json PrivacySection(const Folded& f) {
  json out = GuaranteeSection(f, "");
  out["record_level"] = GuaranteeSection(f, "record_");
  return out;
}

}  // namespace

StatusOr<json> BuildReport(const ReportOptions& options) {
  ASSIGN_OR_RETURN(const report_internal::StateDir state,
                   report_internal::OpenStateDir(options.state_dir, options.ca_path,
                                                 "give the coordinator's state_dir"));
  json report = report_internal::ReportHead("hansa.report/1", options.generated_at, state.dir);

  std::vector<AuditRecord> records;
  const std::string audit_path = (fs::path(state.dir) / "audit.jsonl").string();
  report["audit"] =
      AuditSection(audit_path, state.ca_path, state.ca, options.coordinator_fingerprint, &records);
  json checks = AuditChecks(audit_path, state.ca, options.coordinator_fingerprint);
  report["site_ledgers"] = SiteLedgers(audit_path, state.ca, options.egress_ledgers, checks);
  report["checks"] = checks;
  Folded folded;
  for (const AuditRecord& r : records) Fold(r, folded);
  ASSIGN_OR_RETURN(std::vector<json> metrics,
                   ReadMetrics((fs::path(state.dir) / "metrics.jsonl").string()));
  MergeMetrics(metrics, folded, report);

  report["federation"] = FederationSection(folded, records, state.ca);
  report["study"] = StudySection(folded);
  json participants = json::array();
  for (auto& [key, p] : folded.participants) {
    int64_t contributed = 0;
    for (const auto& [round, o] : folded.rounds) {
      for (const json& s : o["aggregated_sites"]) contributed += s == key.first ? 1 : 0;
    }
    p["rounds_contributed"] = contributed;
    participants.push_back(p);
  }
  report["participants"] = participants;
  report["refusals"] = folded.refusals;
  report["retention"] = folded.retention;
  json rounds = json::array();
  for (const auto& [round, o] : folded.rounds) rounds.push_back(o);
  report["rounds"] = rounds;
  json bytes = json::array();
  for (const auto& [key, b] : folded.bytes) {
    bytes.push_back({{"site", key.first}, {"round", key.second}, {"bytes", b}});
  }
  report["bytes_received"] = bytes;
  report["privacy"] = PrivacySection(folded);
  report["data_flow"] = DataFlowStatement(report);
  return report;
}

StatusOr<WrittenReport> WriteReport(const ReportOptions& options, const std::string& out_dir) {
  ASSIGN_OR_RETURN(json report, BuildReport(options));
  // A running federation has no closing record yet: not a failure of the report.
  return report_internal::WriteReportFiles(report, RenderReportHtml(report), out_dir, "audit",
                                           "closing_record");
}

}  // namespace hansa
