#include "common/audit/jurisdiction.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hansa {
namespace {

const std::map<std::string, std::string>& Names() {
  static const auto* names = new std::map<std::string, std::string>{
      {"AT", "Austria"},     {"BE", "Belgium"},        {"BG", "Bulgaria"},
      {"HR", "Croatia"},     {"CY", "Cyprus"},         {"CZ", "Czechia"},
      {"DK", "Denmark"},     {"EE", "Estonia"},        {"FI", "Finland"},
      {"FR", "France"},      {"DE", "Germany"},        {"GR", "Greece"},
      {"HU", "Hungary"},     {"IE", "Ireland"},        {"IT", "Italy"},
      {"LV", "Latvia"},      {"LT", "Lithuania"},      {"LU", "Luxembourg"},
      {"MT", "Malta"},       {"NL", "Netherlands"},    {"PL", "Poland"},
      {"PT", "Portugal"},    {"RO", "Romania"},        {"SK", "Slovakia"},
      {"SI", "Slovenia"},    {"ES", "Spain"},          {"SE", "Sweden"},
      {"IS", "Iceland"},     {"LI", "Liechtenstein"},  {"NO", "Norway"},
      {"CH", "Switzerland"}, {"GB", "United Kingdom"}, {"US", "United States"},
      {"CA", "Canada"},      {"JP", "Japan"},          {"CN", "China"},
      {"IN", "India"},       {"AU", "Australia"},      {"IL", "Israel"},
      {"KR", "South Korea"}, {"BR", "Brazil"},         {"UA", "Ukraine"},
      {"RS", "Serbia"},      {"TR", "Türkiye"},        {"SG", "Singapore"},
      {"NZ", "New Zealand"}, {"ZA", "South Africa"},   {"AE", "United Arab Emirates"}};
  return *names;
}

bool IsCode(std::string_view s) {
  return s.size() == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

}  // namespace

const std::vector<std::string>& EuMemberStates() {
  static const auto* eu = new std::vector<std::string>{
      "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
      "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"};
  return *eu;
}

const std::vector<std::string>& DefaultAllowedCountries() {
  static const auto* eea = [] {
    auto* v = new std::vector<std::string>(EuMemberStates());
    v->insert(v->end(), {"IS", "LI", "NO"});
    std::sort(v->begin(), v->end());
    return v;
  }();
  return *eea;
}

StatusOr<std::vector<std::string>> ExpandCountryList(const std::vector<std::string>& entries) {
  if (entries.empty()) {
    return absl::InvalidArgumentError(
        "the list of allowed countries is empty, so no site could join; list ISO 3166 codes "
        "(\"DE\") or \"EU\" / \"EEA\"");
  }
  std::vector<std::string> out;
  for (const std::string& e : entries) {
    if (e == "EU") {
      out.insert(out.end(), EuMemberStates().begin(), EuMemberStates().end());
    } else if (e == "EEA") {
      out.insert(out.end(), DefaultAllowedCountries().begin(), DefaultAllowedCountries().end());
    } else if (IsCode(e)) {
      out.push_back(e);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "allowed country \"", e,
          "\" is neither a two-letter ISO 3166 code in capitals (\"DE\") nor \"EU\" or \"EEA\""));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status CheckJurisdiction(std::string_view participant, std::string_view country,
                         const std::vector<std::string>& allowed) {
  std::string c(country);
  if (std::find(allowed.begin(), allowed.end(), c) != allowed.end()) return absl::OkStatus();
  std::string shown = c.empty() ? std::string("(none)") : c;
  return absl::PermissionDeniedError(absl::StrCat(
      "country ", shown, " (", CountryName(c), ") of '", std::string(participant),
      "' is not an allowed jurisdiction of this federation (allowed: ", DescribeCountries(allowed),
      "); a site's jurisdiction is the country in its certificate: ask the federation operator"));
}

std::string CountryName(std::string_view code) {
  auto it = Names().find(std::string(code));
  return it == Names().end() ? std::string(code) : it->second;
}

std::string DescribeCountries(const std::vector<std::string>& allowed) {
  std::vector<std::string> sorted = allowed;
  std::sort(sorted.begin(), sorted.end());
  if (sorted == DefaultAllowedCountries()) return "EU and EEA member states";
  if (sorted == EuMemberStates()) return "EU member states";
  return absl::StrJoin(sorted, ", ");
}

}  // namespace hansa
