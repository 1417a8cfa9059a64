// A site's report.html, and the site's loopback page: one self-contained page in the
// coordinator's report's style (internal/html_parts.h), no scripts, nothing fetched.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/report/internal/html_parts.h"
#include "common/report/site_report.h"
#include "common/report/svg.h"

namespace hansa {
namespace {

using nlohmann::json;
using report_html::Digest;
using report_html::Identity;
using report_html::kStyle;
using report_html::List;
using report_html::Row;
using report_html::Table;
using report_html::Text;

std::string Verdict(const json& ledger) {
  return report_html::Verdict(ledger, "Egress ledger", "ledger-verdict",
                              ": the ledger may have been altered");
}

std::string ChecksSection(const json& r) {
  std::vector<std::string> rows;
  for (const json& c : r["checks"]) {
    const bool made = c.value("made", false);
    const bool passed = made && c["passed"].is_boolean() && c["passed"].get<bool>();
    rows.push_back(Row({Text(c["title"]),
                        !made    ? "<span class=\"muted\">not made</span>"
                        : passed ? "<span class=\"ok\">passed</span>"
                                 : "<span class=\"bad\">FAILED</span>",
                        Text(c["detail"])}));
  }
  return absl::StrCat("<section id=\"checks-section\"><h2>Checks made</h2>",
                      Table("checks", {"Check", "Result", "Detail"}, rows), "</section>");
}

std::string SiteSection(const json& r) {
  const json& f = r["federation"];
  std::vector<std::string> joined;
  for (const json& x : r["federations"]) {
    joined.push_back(Row({Text(x["federation"]), Text(x["site"]), Text(x["coordinator_country"]),
                          Text(x["first_joined"]), Text(x["last_joined"]), Text(x["joins"])}));
  }
  std::string out = absl::StrCat(
      "<section id=\"site\"><h2>Site and federation</h2><dl><dt>Site</dt><dd>", Identity(r["site"]),
      "</dd><dt>Federation</dt><dd id=\"federation-name\">",
      f.is_object() ? Text(f["name"]) : "&mdash; (no join recorded)",
      "</dd><dt>Known to the coordinator as</dt><dd>", f.is_object() ? Text(f["site"]) : "&mdash;",
      "</dd><dt>Coordinator's country</dt><dd>",
      f.is_object() ? Text(f["coordinator_country_name"]) : "&mdash;",
      "</dd><dt>Certificate authority</dt><dd>", Identity(r["ca"]),
      "</dd><dt>State directory</dt><dd><code>", Text(r["state_dir"]), "</code></dd></dl>");
  if (!joined.empty()) {
    absl::StrAppend(&out, "<h3>Joins</h3>",
                    Table("federations",
                          {"Federation", "Site name", "Coordinator country", "First joined",
                           "Last joined", "Joins"},
                          joined));
  }
  return absl::StrCat(out, "</section>");
}

std::string StudiesSection(const json& r) {
  if (r["studies"].empty()) return "";
  std::vector<std::string> rows;
  for (const json& s : r["studies"]) {
    const json& f = s["facts"];
    const bool facts = f.is_object();
    rows.push_back(Row({Text(s["study"]), facts ? Text(f.value("id", json())) : "&mdash;",
                        Text(s["time"]), facts ? Text(f.value("purpose", json())) : "&mdash;",
                        facts ? Text(f.value("legal_basis", json())) : "&mdash;",
                        facts ? List(f.value("controllers", json())) : "&mdash;",
                        facts ? Text(f.value("retention_days", json())) : "&mdash;",
                        facts ? Text(f.value("dpia_reference", json())) : "&mdash;"}));
  }
  return absl::StrCat("<section id=\"studies-section\"><h2>Studies: what the plans said</h2>",
                      Table("studies",
                            {"Study", "Identifier", "First seen", "Purpose", "Legal basis",
                             "Controllers", "Retention (days)", "DPIA"},
                            rows),
                      "</section>");
}

// The policies the site answered plans under (policy_applied), with the settings a reviewer
// asks about first; the SHA-256 names the whole policy as the ledger records it.
std::string PoliciesSection(const json& r) {
  if (!r.contains("policies") || r["policies"].empty()) return "";
  std::vector<std::string> rows;
  for (const json& p : r["policies"]) {
    const json& k = p["policy"];
    const bool known = k.is_object();
    const auto key = [&](const char* name) {
      return known ? Text(k.value(name, json())) : "&mdash;";
    };
    rows.push_back(Row({Text(p["time"]),
                        p.value("reason", "") == "reload" ? "reloaded (SIGHUP)" : "site started",
                        known ? List(k.value("allowed_models", json())) : "&mdash;",
                        key("require_secure_aggregation"), key("min_cohort"), key("study"),
                        key("require_legal_basis"), key("max_epsilon"), key("max_record_epsilon"),
                        Digest(p["sha256"])}));
  }
  return absl::StrCat("<section id=\"policies-section\"><h2>Policies the site answered under</h2>",
                      Table("policies",
                            {"From", "Why", "Allowed models", "Secure aggregation required",
                             "Smallest cohort", "Study", "Legal basis required", "Client ε budget",
                             "Record ε budget", "Policy SHA-256"},
                            rows),
                      "</section>");
}

std::string PlansSection(const json& r) {
  std::vector<std::string> rows;
  for (const json& p : r["plans"]) {
    const bool accepted = p.value("accepted", false);
    rows.push_back(
        Row({Text(p["study"]), Text(p["round"]), Text(p["time"]),
             accepted ? "<span class=\"ok\">accepted</span>" : "<span class=\"bad\">refused</span>",
             Text(p["reason"]), Digest(p["plan_sha256"])}));
  }
  std::string out = absl::StrCat(
      "<section id=\"plans-section\"><h2>Plans received</h2><p>",
      Text(r["totals"]["plans_accepted"]), " accepted, ", Text(r["totals"]["plans_refused"]),
      " refused under the site's policy.</p>",
      Table("plans", {"Study", "Round", "Answered", "Answer", "Why refused", "Plan SHA-256"},
            rows));
  if (rows.empty()) absl::StrAppend(&out, "<p class=\"muted\">No plan is recorded.</p>");
  return absl::StrCat(out, "</section>");
}

// "accuracy 0.91, loss 0.23 on 600 examples": the headline figures; the rest in the title.
std::string Figures(const json& values) {
  if (!values.is_object()) return "&mdash;";
  std::vector<std::string> parts;
  for (const char* key : {"accuracy", "loss", "train_loss", "num_examples"}) {
    if (values.contains(key)) parts.push_back(absl::StrCat(key, "&nbsp;", Text(values[key])));
  }
  return absl::StrCat("<span title=\"", Text(values), "\">", absl::StrJoin(parts, ", "), "</span>");
}

std::string Messages(const json& sent) {
  std::vector<std::string> lines;
  for (const json& m : sent) {
    lines.push_back(absl::StrCat(
        Text(m["type"]), " ", FormatBytes(m["bytes"].get<double>()), " ", Digest(m["sha256"], 12),
        m["failed"].is_null() ? ""
                              : absl::StrCat(" <span class=\"bad\">may not have arrived: ",
                                             Text(m["failed"]), "</span>")));
  }
  return lines.empty() ? "&mdash;" : absl::StrJoin(lines, "<br>");
}

std::string RoundsSection(const json& r) {
  std::vector<std::string> rows;
  for (const json& o : r["rounds"]) {
    const json& u = o["update"];
    rows.push_back(Row(
        {Text(o["study"]), Text(o["round"]),
         o["answer"].is_null() ? "&mdash;"
         : o["answer"] == "accepted"
             ? "<span class=\"ok\">accepted</span>"
             : absl::StrCat("<span class=\"bad\">refused</span>: ", Text(o["reason"])),
         Text(o["messages"]), FormatBytes(o["bytes"].get<double>()),
         u.is_object()
             ? absl::StrCat(FormatBytes(u["bytes"].get<double>()), " ", Digest(u["sha256"]), "<br>",
                            u["values"].is_null()
                                ? "<span class=\"muted\">no figures in the clear</span>"
                                : Figures(u["values"]))
             : "&mdash;",
         Figures(o["metrics"]), Text(o["epsilon"]), Text(o["record_epsilon"]),
         Messages(o["sent"])}));
  }
  std::string out = absl::StrCat(
      "<section id=\"rounds-section\"><h2>What the site sent, per round</h2><p>",
      Text(r["totals"]["messages"]), " messages, ", FormatBytes(r["totals"]["bytes"].get<double>()),
      " in all (", Text(r["totals"]["joins"]), " joins); ", Text(r["totals"]["failed_sends"]),
      " sends may not have arrived.</p>",
      Table("rounds",
            {"Study", "Round", "Plan", "Messages", "Bytes", "Update", "Metrics sent",
             "Site &epsilon;", "Record &epsilon;", "Messages (type, size, SHA-256)"},
            rows));
  if (rows.empty()) absl::StrAppend(&out, "<p class=\"muted\">Nothing but joins was sent.</p>");
  return absl::StrCat(out, "</section>");
}

// " of at most B (policy.KEY)" when the report carries the site's budget B (its live page).
std::string BudgetText(const json& guarantee, const char* key) {
  if (!guarantee.contains("budget") || !guarantee["budget"].is_number()) return "";
  return absl::StrCat(" of at most ", Text(guarantee["budget"]), " (the site's policy.", key, ")");
}

std::string PrivacySection(const json& r) {
  const json& p = r["privacy"];
  if (!p.value("enabled", false)) {
    return absl::StrCat(
        "<section id=\"privacy-section\"><h2>Privacy spent</h2><p class=\"muted\">No "
        "differential privacy was booked by this site: no privacy_spent record.",
        p.contains("budget") ? absl::StrCat(" Client-level budget: ", Text(p["budget"]), ".") : "",
        "</p></section>");
  }
  const json& rec = p["record_level"];
  return absl::StrCat(
      "<section id=\"privacy-section\"><h2>Privacy spent</h2><dl><dt>Client-level &epsilon; "
      "(cumulative)</dt><dd>",
      Text(p["final_epsilon"]), BudgetText(p, "max_epsilon"), " at &delta; ", Text(p["delta"]),
      "</dd><dt>Record-level &epsilon; (cumulative)</dt><dd>", Text(rec["final_epsilon"]),
      BudgetText(rec, "max_record_epsilon"), " at &delta; ", Text(rec["delta"]),
      "</dd></dl><p class=\"muted\">As the site's own accountant booked it before each update "
      "left (privacy_spent records).</p></section>");
}

std::string Charts(const json& r) {
  std::string out = "<section id=\"charts\"><h2>Charts</h2><div class=\"charts\">";
  std::set<std::string> types;
  std::vector<std::string> categories;
  std::vector<std::map<std::string, double>> per_round;
  LineChart accuracy{
      "chart-accuracy", "Local accuracy of the global model", "round", "accuracy", {}, true, 0, 1};
  ChartSeries acc{"accuracy", {}};
  for (const json& o : r["rounds"]) {
    categories.push_back(absl::StrCat(
        o["study"].get<int64_t>() > 1 ? absl::StrCat(o["study"].get<int64_t>(), ":") : "",
        o["round"].get<int64_t>()));
    std::map<std::string, double> bytes;
    for (const json& m : o["sent"]) {
      types.insert(m["type"].get<std::string>());
      bytes[m["type"].get<std::string>()] += m["bytes"].get<double>();
    }
    per_round.push_back(std::move(bytes));
    if (o["metrics"].is_object() && o["metrics"].value("accuracy", json()).is_number()) {
      acc.points.emplace_back(static_cast<double>(acc.points.size()),
                              o["metrics"]["accuracy"].get<double>());
    }
  }
  if (!categories.empty()) {
    BarChart chart;
    chart.id = "chart-bytes";
    chart.title = "Bytes sent per round";
    chart.x_label = "round";
    chart.y_label = "bytes";
    chart.bytes = true;
    chart.categories = categories;
    for (const std::string& type : types) {
      chart.series_names.push_back(type);
      std::vector<double> row;
      for (auto& bytes : per_round) row.push_back(bytes[type]);
      chart.values.push_back(std::move(row));
    }
    absl::StrAppend(&out, RenderBarChart(chart));
  }
  if (!acc.points.empty()) {
    accuracy.x_label = "evaluation";
    accuracy.series.push_back(std::move(acc));
    absl::StrAppend(&out, RenderLineChart(accuracy));
  }
  if (r["privacy"].value("enabled", false)) {
    LineChart eps{"chart-epsilon", "Privacy spent", "record of the ledger", "epsilon", {}};
    for (const json* g : {&r["privacy"], &r["privacy"]["record_level"]}) {
      ChartSeries s{g == &r["privacy"] ? "client-level" : "record-level", {}};
      for (const json& p : (*g)["epsilon_over_rounds"]) {
        if (p["epsilon"].is_number()) {
          s.points.emplace_back(static_cast<double>(s.points.size()), p["epsilon"].get<double>());
        }
      }
      if (!s.points.empty()) eps.series.push_back(std::move(s));
    }
    absl::StrAppend(&out, RenderLineChart(eps));
  }
  return absl::StrCat(out, "</div></section>");
}

std::string LedgerSection(const json& r) {
  const json& l = r["ledger"];
  std::vector<std::string> rows;
  for (auto it = l["events"].begin(); it != l["events"].end(); ++it) {
    rows.push_back(Row({report_html::Text(it.key()), Text(it.value())}));
  }
  return absl::StrCat(
      "<section id=\"ledger\"><h2>Egress ledger</h2>", Verdict(l), "<dl><dt>File</dt><dd><code>",
      Text(l["path"]), "</code></dd><dt>Records</dt><dd id=\"ledger-records\">", Text(l["records"]),
      "</dd><dt>Signed by</dt><dd>", Identity(l["signer"]), "</dd><dt>First record</dt><dd>",
      Text(l["first_time"]), "</dd><dt>Last record</dt><dd>", Text(l["last_time"]),
      "</dd><dt>Head (SHA-256 of the last record)</dt><dd id=\"ledger-head\">",
      Digest(l["head"], 64), "</dd></dl>",
      rows.empty() ? "" : Table("ledger-events", {"Event", "Records"}, rows),
      "<p class=\"muted\">Check it yourself: <code>hansa audit verify ", Text(l["path"]),
      " --ca ca.pem --role site</code></p></section>");
}

}  // namespace

std::string RenderSiteReportHtml(const json& r, const SiteHtmlOptions& html) {
  const std::string site =
      r["site"].is_object() ? r["site"]["name"].get<std::string>() : std::string("(unknown site)");
  const std::string federation = r["federation"].is_object()
                                     ? r["federation"]["name"].get<std::string>()
                                     : std::string("(no federation joined)");
  const std::string title = absl::StrCat("Site report: ", site, " in ", federation);
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'unsafe-inline'\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
      html.refresh_seconds > 0
          ? absl::StrCat("<meta http-equiv=\"refresh\" content=\"", html.refresh_seconds, "\">")
          : "",
      "<title>", report_html::Text(title), "</title><style>", kStyle,
      "</style></head><body><header><h1>", report_html::Text(title),
      "</h1><p class=\"muted\">Generated ", Text(r["generated_at"]), " by ", html.generator,
      " from the site's own egress ledger alone; report.json holds the same content.</p>",
      Verdict(r["ledger"]), "</header>", ChecksSection(r), SiteSection(r), StudiesSection(r),
      PoliciesSection(r), PlansSection(r), RoundsSection(r), PrivacySection(r), Charts(r),
      LedgerSection(r), "<footer class=\"muted\"><p>Hansa site report, schema ", Text(r["schema"]),
      ".</p></footer></body></html>\n");
}

}  // namespace hansa
