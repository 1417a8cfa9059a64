// report.html: one self-contained page. A Content-Security-Policy forbids scripts and every
// fetch, so the page shows the same thing offline, in a mail attachment or in an archive.
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/report/internal/html_parts.h"
#include "common/report/report.h"
#include "common/report/svg.h"

namespace hansa {
namespace {

using nlohmann::json;
using report_html::Digest;
using report_html::Identity;
using report_html::kStyle;
using report_html::List;
using report_html::Params;
using report_html::Row;
using report_html::Table;
using report_html::Text;

std::string Verdict(const json& audit) {
  return report_html::Verdict(audit, "Audit log", "audit-verdict");
}

std::string FederationSection(const json& r) {
  const json& f = r["federation"];
  std::string dl = absl::StrCat(
      "<dl><dt>Federation</dt><dd>", Text(f["name"]), "</dd><dt>Coordinator</dt><dd>",
      Identity(f["coordinator"]), "</dd><dt>Certificate authority</dt><dd>", Identity(f["ca"]),
      "</dd><dt>Allowed jurisdictions</dt><dd>", Text(f["allowed_countries_text"]),
      "</dd><dt>Model</dt><dd>", Text(f["model"]), "</dd><dt>Aggregation</dt><dd>",
      Text(f["aggregation"]), "</dd><dt>Rounds configured</dt><dd>", Text(f["rounds_configured"]),
      "</dd><dt>Minimum sites per round</dt><dd>", Text(f["min_sites"]),
      "</dd><dt>Configuration SHA-256</dt><dd>", Digest(f["config_sha256"], 64),
      "</dd><dt>Started</dt><dd>", Text(f["started_at"]), "</dd><dt>Finished</dt><dd>",
      Text(f["finished"]), "</dd><dt>Coordinator restarts</dt><dd>", Text(f["restarts"]),
      "</dd><dt>State directory</dt><dd><code>", Text(r["state_dir"]), "</code></dd></dl>");
  return absl::StrCat("<section id=\"federation\"><h2>Federation</h2>", dl, "</section>");
}

// The study's GDPR facts, as the signed federation_started record states them.
std::string StudySection(const json& r) {
  const json study = r.value("study", json::object());
  std::string out = "<section id=\"study\"><h2>The study: purpose and legal basis</h2>";
  if (!study.value("recorded", false)) {
    return absl::StrCat(out,
                        "<p class=\"bad\">The audit log records no purpose, legal basis or "
                        "controllers of this study (its federation_started record has none).</p>"
                        "</section>");
  }
  const auto fact = [&](const char* key) {
    const json v = study.value(key, json());
    return v.is_null() || v == "" || v == 0 ? std::string("<span class=\"bad\">not stated</span>")
                                            : Text(v);
  };
  const json controllers = study.value("controllers", json());
  return absl::StrCat(
      out, "<dl><dt>Study (what a site's policy.study pins)</dt><dd>", fact("id"),
      "</dd><dt>Purpose</dt><dd style=\"white-space: pre-line\">", fact("purpose"),
      "</dd><dt>Legal basis</dt><dd>", fact("legal_basis"), "</dd><dt>Controllers</dt><dd>",
      controllers.is_array() && !controllers.empty() ? List(controllers)
                                                     : "<span class=\"bad\">not stated</span>",
      "</dd><dt>Retention (days)</dt><dd>", fact("retention_days"),
      "</dd><dt>DPIA reference</dt><dd>", fact("dpia_reference"),
      "</dd><dt>Purpose SHA-256 (what a site's policy.purpose_sha256 pins)</dt><dd>",
      Digest(study.value("purpose_sha256", json()), 64),
      "</dd></dl><p class=\"muted\">As recorded in the signed federation_started record. Every "
      "plan carried these facts, so each site's consent (the plan's SHA-256) covers them.</p>"
      "</section>");
}

std::string ParticipantsSection(const json& r) {
  std::vector<std::string> rows;
  for (const json& p : r["participants"]) {
    rows.push_back(Row({Text(p["site"]), Text(p["organisation"]),
                        absl::StrCat(Text(p["country_name"]), " (", Text(p["country"]), ")"),
                        Digest(p["fingerprint"], 64), Text(p["first_admitted"]),
                        Text(p["rounds_contributed"])}));
  }
  std::string out = absl::StrCat("<section id=\"participants-section\"><h2>Participants</h2>",
                                 Table("participants",
                                       {"Site", "Organisation", "Country", "Certificate SHA-256",
                                        "First admitted", "Rounds contributed"},
                                       rows));
  if (rows.empty()) absl::StrAppend(&out, "<p class=\"muted\">No site admission is recorded.</p>");
  if (!r["refusals"].empty()) {
    std::vector<std::string> refused;
    for (const json& x : r["refusals"]) {
      refused.push_back(Row({Text(x["time"]), Text(x["site"]), Text(x["organisation"]),
                             Text(x["country"]), Digest(x["fingerprint"]), Text(x["reason"])}));
    }
    absl::StrAppend(
        &out, "<h3>Refused join attempts</h3>",
        Table("refusals", {"Time", "Site", "Organisation", "Country", "Certificate", "Reason"},
              refused));
  }
  return absl::StrCat(out, "</section>");
}

std::string Protection(const json& round) {
  std::string out = round["aggregation"].is_string() ? Text(round["aggregation"]) : "&mdash;";
  if (round["secure_aggregation"].is_object()) {
    absl::StrAppend(&out, "<br><span class=\"muted\">SecAgg+ ", Params(round["secure_aggregation"]),
                    "</span>");
  }
  if (round["privacy"].is_object()) {
    absl::StrAppend(&out, "<br><span class=\"muted\">DP ", Params(round["privacy"]), "</span>");
  }
  return out;
}

std::string RoundsSection(const json& r) {
  // A column per clinical figure that some round has: AUC for a binary task, MSE, MAE and R²
  // for a regression, none that does not apply.
  std::vector<const ClinicalMetric*> clinical;
  for (const ClinicalMetric& c : kClinicalMetrics) {
    for (const json& o : r["rounds"]) {
      if (o.contains(c.key)) {
        clinical.push_back(&c);
        break;
      }
    }
  }
  std::vector<std::string> rows;
  for (const json& o : r["rounds"]) {
    std::vector<std::string> lost;
    for (const json& d : o["dropouts"]) {
      lost.push_back(absl::StrCat(Text(d["site"]), " dropped at ", Text(d["stage"])));
    }
    for (const json& d : o["declined"]) {
      lost.push_back(absl::StrCat(Text(d["site"]), " declined: ", Text(d["reason"])));
    }
    std::vector<std::string> cells = {Text(o["round"]),
                                      List(o["cohort"]),
                                      Protection(o),
                                      lost.empty() ? "&mdash;" : absl::StrJoin(lost, "<br>"),
                                      List(o["aggregated_sites"]),
                                      Digest(o["model_sha256"]),
                                      Text(o["accuracy"])};
    for (const ClinicalMetric* c : clinical) cells.push_back(Text(o.value(c->key, json())));
    cells.push_back(Text(o["epsilon"]));
    cells.push_back(Text(o["record_epsilon"]));
    rows.push_back(Row(cells));
  }
  std::vector<std::string> head = {
      "Round",         "Cohort",  "Protection", "Dropouts and refusals", "In the aggregate",
      "Model SHA-256", "Accuracy"};
  for (const ClinicalMetric* c : clinical) head.push_back(c->title);
  head.push_back("Site &epsilon; (cumulative)");
  head.push_back("Record &epsilon; (cumulative)");
  std::string out =
      absl::StrCat("<section id=\"rounds-section\"><h2>Rounds</h2>", Table("rounds", head, rows));
  if (rows.empty()) absl::StrAppend(&out, "<p class=\"muted\">No rounds are recorded.</p>");
  return absl::StrCat(out, "</section>");
}

std::string Charts(const json& r) {
  std::string out = "<section id=\"charts\"><h2>Charts</h2><div class=\"charts\">";
  LineChart accuracy{"chart-accuracy", "Accuracy over rounds", "round", "accuracy", {}, true, 0, 1};
  ChartSeries acc{"accuracy", {}};
  for (const json& p : r["accuracy_over_rounds"]) {
    if (p["accuracy"].is_number()) {
      acc.points.emplace_back(p["round"].get<double>(), p["accuracy"].get<double>());
    }
  }
  accuracy.series.push_back(acc);
  absl::StrAppend(&out, RenderLineChart(accuracy));

  if (r["privacy"].value("enabled", false)) {
    LineChart eps{"chart-epsilon", "Privacy cost over rounds", "round", "epsilon (cumulative)", {}};
    ChartSeries s{"epsilon", {}};
    for (const json& p : r["privacy"]["epsilon_over_rounds"]) {
      s.points.emplace_back(p["round"].get<double>(), p["epsilon"].get<double>());
    }
    eps.series.push_back(s);
    absl::StrAppend(&out, RenderLineChart(eps));
  }

  std::set<int64_t> rounds;
  std::set<std::string> sites;
  std::map<std::pair<std::string, int64_t>, double> bytes;
  for (const json& b : r["bytes_received"]) {
    rounds.insert(b["round"].get<int64_t>());
    sites.insert(b["site"].get<std::string>());
    bytes[{b["site"].get<std::string>(), b["round"].get<int64_t>()}] = b["bytes"].get<double>();
  }
  if (!bytes.empty()) {
    BarChart chart;
    chart.id = "chart-bytes";
    chart.title = "Bytes received per site per round";
    chart.x_label = "round";
    chart.y_label = "bytes";
    chart.bytes = true;
    for (int64_t round : rounds) chart.categories.push_back(absl::StrCat(round));
    for (const std::string& site : sites) {
      chart.series_names.push_back(site);
      std::vector<double> row;
      for (int64_t round : rounds) row.push_back(bytes[{site, round}]);
      chart.values.push_back(row);
    }
    absl::StrAppend(&out, RenderBarChart(chart));
  }
  absl::StrAppend(&out, "</div>");
  if (!r["privacy"].value("enabled", false)) {
    absl::StrAppend(&out,
                    "<p class=\"muted\">No differential privacy: no privacy cost to chart.</p>");
  }
  if (bytes.empty()) {
    absl::StrAppend(&out, "<p class=\"muted\">No update receipts are recorded.</p>");
  }
  return absl::StrCat(out, "</section>");
}

std::string DataFlowSection(const json& r) {
  const json& d = r["data_flow"];
  std::string out =
      absl::StrCat("<section id=\"data-flow\" class=\"statement\"><h2>", Text(d["title"]), "</h2>");
  for (const json& p : d["paragraphs"]) {
    absl::StrAppend(&out, "<p><strong>", Text(p["heading"]), ".</strong> ", Text(p["text"]),
                    "</p>");
  }
  return absl::StrCat(out, "</section>");
}

// What the report could check, and what it could not (with why), one row per check.
std::string ChecksSection(const json& r) {
  std::vector<std::string> rows;
  for (const json& c : r.value("checks", json::array())) {
    const bool made = c.value("made", false);
    const bool passed = made && c["passed"].is_boolean() && c["passed"].get<bool>();
    std::string result = !made    ? "<span class=\"muted\">not made</span>"
                         : passed ? "<span class=\"ok\">passed</span>"
                                  : "<span class=\"bad\">FAILED</span>";
    rows.push_back(Row({Text(c["title"]), result, Text(c["detail"])}));
  }
  if (rows.empty()) return "";
  return absl::StrCat("<section id=\"checks-section\"><h2>Checks made</h2>",
                      Table("checks", {"Check", "Result", "Detail"}, rows), "</section>");
}

std::string AuditSection(const json& r) {
  const json& a = r["audit"];
  std::vector<std::string> rows;
  if (a["events"].is_object()) {
    for (auto it = a["events"].begin(); it != a["events"].end(); ++it) {
      rows.push_back(Row({HtmlEscape(it.key()), Text(it.value())}));
    }
  }
  std::string signer = a["signer"].is_object() ? Identity(a["signer"]) : "&mdash;";
  return absl::StrCat(
      "<section id=\"audit\"><h2>Audit log</h2>", Verdict(a), "<dl><dt>File</dt><dd><code>",
      Text(a["path"]), "</code></dd><dt>Records</dt><dd>", Text(a["records"]),
      "</dd><dt>Signed by</dt><dd>", signer, "</dd><dt>First record</dt><dd>",
      Text(a["first_time"]), "</dd><dt>Last record</dt><dd>", Text(a["last_time"]),
      "</dd><dt>Head (SHA-256 of the last record)</dt><dd>", Digest(a["head"], 64), "</dd></dl>",
      rows.empty() ? "" : Table("audit-events", {"Event", "Records"}, rows),
      "<p class=\"muted\">Check it yourself: <code>hansa audit verify ", Text(a["path"]),
      " --ca ca.pem --role coordinator</code></p></section>");
}

}  // namespace

std::string RenderReportHtml(const json& r) {
  std::string name = r["federation"]["name"].is_string()
                         ? r["federation"]["name"].get<std::string>()
                         : std::string("(unnamed federation)");
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'unsafe-inline'\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>Compliance report: ",
      HtmlEscape(name), "</title><style>", kStyle, "</style></head><body><header><h1>",
      "Compliance report: ", HtmlEscape(name), "</h1><p class=\"muted\">Generated ",
      Text(r["generated_at"]),
      " by <code>hansa report</code> from the coordinator's state directory; report.json "
      "beside this file holds the same content.</p>",
      Verdict(r["audit"]), "</header>", StudySection(r), ChecksSection(r), FederationSection(r),
      ParticipantsSection(r), RoundsSection(r), Charts(r), DataFlowSection(r), AuditSection(r),
      "<footer class=\"muted\"><p>Hansa compliance report, schema ", Text(r["schema"]),
      ".</p></footer></body></html>\n");
}

}  // namespace hansa
