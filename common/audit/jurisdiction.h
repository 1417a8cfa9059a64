// Which jurisdictions may take part in a federation. A participant's jurisdiction is the
// country (C) of its certificate; coordinator.toml lists the allowed ones, by default the EU
// member states and the other EEA states (Iceland, Liechtenstein, Norway). Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status/status.h"

namespace hansa {

// The 27 EU member states, ISO 3166-1 alpha-2 (Greece is "GR"), sorted.
const std::vector<std::string>& EuMemberStates();
// EuMemberStates() plus IS, LI, NO, sorted: the default allowed list.
const std::vector<std::string>& DefaultAllowedCountries();

// Expands a configured list: "EU" and "EEA" stand for their member states, anything else must
// be a two-letter code. Sorted, without duplicates. InvalidArgument names a bad entry; an
// empty list is an error too (nobody could join).
StatusOr<std::vector<std::string>> ExpandCountryList(const std::vector<std::string>& entries);

// OK when `country` is in `allowed`; PermissionDenied otherwise, with a message for the site
// operator and the audit record: "country US of 'boston' is not an allowed jurisdiction of
// this federation (allowed: EU and EEA member states); ask the federation operator".
Status CheckJurisdiction(std::string_view participant, std::string_view country,
                         const std::vector<std::string>& allowed);

// English short name of a country code ("DE" -> "Germany"); the code itself when unknown.
std::string CountryName(std::string_view code);

// "EU and EEA member states" when `allowed` is exactly the default list, "EU member states"
// for exactly the EU, else the comma-separated codes.
std::string DescribeCountries(const std::vector<std::string>& allowed);

}  // namespace hansa
