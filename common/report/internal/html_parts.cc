#include "common/report/internal/html_parts.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/report/svg.h"

namespace hansa::report_html {

using nlohmann::json;

const char kStyle[] = R"css(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:24px;color:#1d1d1f;line-height:1.45}
h1{font-size:1.7em;margin-bottom:4px}h2{border-bottom:2px solid #e5e5e5;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;width:100%;font-size:.92em;margin:8px 0}
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8}tbody tr:nth-child(even){background:#fafbfc}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.ok{background:#e6f4ea;color:#0b5e25;border:1px solid #9ed3ad}
.bad{background:#fde7e9;color:#8a1020;border:1px solid #f0a3ab}
.muted{color:#666}dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}
dt{font-weight:600}dd{margin:0}.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{width:100%;max-width:640px;height:auto;border:1px solid #e5e5e5;border-radius:4px}
svg .chart-title{font-size:14px;font-weight:600}svg .tick,svg .legend{font-size:11px}
svg .axis-label{font-size:12px}.statement p{max-width:80ch}
@media print{body{max-width:none}h2{page-break-after:avoid}}
)css";

std::string Text(const json& v) {
  if (v.is_null()) return "&mdash;";
  if (v.is_string()) return HtmlEscape(v.get<std::string>());
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_integer()) return absl::StrCat(v.get<int64_t>());
  if (v.is_number()) return absl::StrFormat("%.4g", v.get<double>());
  return HtmlEscape(v.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string Digest(const json& v, size_t shown) {
  if (!v.is_string() || v.get<std::string>().empty()) return "&mdash;";
  std::string d = v.get<std::string>();
  return absl::StrCat("<code title=\"", HtmlEscape(d), "\">",
                      HtmlEscape(d.size() > shown ? d.substr(0, shown) + "…" : d), "</code>");
}

std::string List(const json& v) {
  if (!v.is_array() || v.empty()) return "&mdash;";
  std::vector<std::string> items;
  for (const json& x : v) items.push_back(Text(x));
  return absl::StrJoin(items, ", ");
}

std::string Params(const json& object) {
  std::vector<std::string> parts;
  for (auto it = object.begin(); it != object.end(); ++it) {
    parts.push_back(absl::StrCat(HtmlEscape(it.key()), "&nbsp;", Text(it.value())));
  }
  return absl::StrJoin(parts, ", ");
}

std::string Row(const std::vector<std::string>& cells) {
  return absl::StrCat("<tr><td>", absl::StrJoin(cells, "</td><td>"), "</td></tr>");
}

std::string Table(const std::string& id, const std::vector<std::string>& head,
                  const std::vector<std::string>& rows) {
  return absl::StrCat("<table id=\"", id, "\"><thead><tr><th>", absl::StrJoin(head, "</th><th>"),
                      "</th></tr></thead><tbody>", absl::StrJoin(rows, ""), "</tbody></table>");
}

std::string Identity(const json& id) {
  if (!id.is_object()) return "&mdash;";
  return absl::StrCat(
      Text(id["name"]),
      id["organisation"].is_string() && !id["organisation"].get<std::string>().empty()
          ? absl::StrCat(", ", Text(id["organisation"]))
          : "",
      " (", Text(id["country_name"]), ")<br>", Digest(id["fingerprint"], 64));
}

std::string Verdict(const json& log, const std::string& what, const std::string& id,
                    const std::string& if_altered) {
  if (log.value("verified", false)) {
    return absl::StrCat("<div class=\"verdict ok\" id=\"", id, "\">", what,
                        " verified: ", Text(log["records"]),
                        " records, hash chain and every signature checked against the "
                        "federation CA.</div>");
  }
  return absl::StrCat(
      "<div class=\"verdict bad\" id=\"", id, "\">", what, " NOT verified: ", Text(log["error"]),
      ". Everything below rests on records that could not be verified", if_altered, ".</div>");
}

}  // namespace hansa::report_html
