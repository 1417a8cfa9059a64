#include "coordinator/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/audit/jurisdiction.h"
#include "common/logging/logging.h"
#include "spdlog/spdlog.h"

namespace hansa {

Membership::Membership(std::string federation, std::vector<std::string> allowed_sites,
                       std::vector<std::string> allowed_countries)
    : federation_(std::move(federation)),
      allowed_sites_(std::move(allowed_sites)),
      allowed_countries_(std::move(allowed_countries)) {}

Status Membership::CheckAdmission(const SiteIdentity& site) const {
  if (std::find(allowed_sites_.begin(), allowed_sites_.end(), site.name) == allowed_sites_.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "site '", site.name, "' is not part of federation '", federation_,
        "'; the federation operator must add it to [sites] allowed in coordinator.toml"));
  }
  Status jurisdiction = CheckJurisdiction(site.name, site.country, allowed_countries_);
  if (!jurisdiction.ok()) spdlog::warn("refused site {}: {}", site.name, jurisdiction.message());
  return jurisdiction;
}

bool Membership::Forget(const std::string& site, const std::string& fingerprint) {
  auto it = joined_.find(site);
  if (it == joined_.end() || it->second.fingerprint != fingerprint) return false;
  joined_.erase(it);
  last_seen_.erase(site);
  told_done_.erase(site);
  spdlog::warn("site {} is no longer part of the federation: its certificate was refused", site);
  return true;
}

void Membership::Admit(const SiteIdentity& site, absl::Time now) {
  if (joined_.count(site.name) == 0) {
    spdlog::info("site {} joined ({}, {}, certificate {})", site.name, site.organisation,
                 site.country, site.fingerprint.substr(0, 16));
  }
  joined_[site.name] = site;
  last_seen_[site.name] = now;
}

std::vector<std::string> Membership::Active(absl::Time now, absl::Duration idle) const {
  std::vector<std::string> active;
  for (const auto& [name, seen] : last_seen_) {
    if (now - seen <= idle) active.push_back(name);
  }
  return active;
}

const std::string& Membership::Certificate(const std::string& site) const {
  static const std::string kNone;
  auto it = joined_.find(site);
  return it == joined_.end() ? kNone : it->second.certificate_pem;
}

}  // namespace hansa
