// The pieces both compliance reports' HTML pages are made of (the coordinator's, html.cc, and a
// site's, site_report_html.cc): one style sheet, and the cell, table and identity formatting, so
// the two pages look and read alike. Internal to common/report.
//
// Threading: pure functions; any thread.
#pragma once

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace hansa::report_html {

// The inline style sheet (no fetches: the pages' Content-Security-Policy forbids them).
extern const char kStyle[];

// A JSON value as escaped HTML text: null as a dash, booleans as yes/no, numbers to 4 digits.
std::string Text(const nlohmann::json& v);
// A hex digest cut to `shown` characters, the whole in its title.
std::string Digest(const nlohmann::json& v, size_t shown = 16);
// An array's items as text, comma-separated; a dash when empty.
std::string List(const nlohmann::json& v);
// An object's members as "key value" pairs, comma-separated.
std::string Params(const nlohmann::json& object);
std::string Row(const std::vector<std::string>& cells);
std::string Table(const std::string& id, const std::vector<std::string>& head,
                  const std::vector<std::string>& rows);
// The banner that says whether a log verified: `log` is a report's {verified, records, error},
// `what` names it ("Audit log"), `id` is the banner's element id, and `if_altered` is added to
// the warning when it did not verify.
std::string Verdict(const nlohmann::json& log, const std::string& what, const std::string& id,
                    const std::string& if_altered = "");
// {name, organisation, country_name, fingerprint} as "name, organisation (country)" and the
// whole fingerprint.
std::string Identity(const nlohmann::json& id);

}  // namespace hansa::report_html
