// Membership of a federation at the coordinator: which sites may join (allowed names and
// countries), which joined with which certificate, and when each last asked for work.
//
// Not thread-safe: the round engine keeps one and calls it with its own mutex held, except
// CheckAdmission, which reads only what was given at construction (any thread).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/status/status.h"

namespace hansa {

struct SiteIdentity {
  std::string name;  // certificate CN
  std::string organisation;
  std::string country;
  std::string fingerprint;
  std::string certificate_pem{};  // malicious-coordinator mode binds signing keys to it
};

class Membership {
 public:
  Membership(std::string federation, std::vector<std::string> allowed_sites,
             std::vector<std::string> allowed_countries);

  // OK when `site` may join; else PermissionDenied (or CheckJurisdiction's error) saying why,
  // for the caller to record as the refusal's reason.
  Status CheckAdmission(const SiteIdentity& site) const;
  // Records an admitted site (again: its identity is replaced) as seen at `now`.
  void Admit(const SiteIdentity& site, absl::Time now);
  // Takes `site` off the list while it holds the certificate `fingerprint` (a certificate revoked
  // while the site was connected): it is no longer active or waited for, and may join again
  // only with another certificate. True when it was on the list.
  bool Forget(const std::string& site, const std::string& fingerprint);
  bool Joined(const std::string& site) const { return joined_.count(site) > 0; }
  void Seen(const std::string& site, absl::Time now) { last_seen_[site] = now; }
  // The sites seen within `idle` before `now`, by name.
  std::vector<std::string> Active(absl::Time now, absl::Duration idle) const;
  // The certificate `site` joined with; empty for a site that did not join.
  const std::string& Certificate(const std::string& site) const;
  size_t allowed() const { return allowed_sites_.size(); }
  // The federation is finished and `site` was told so.
  void ToldDone(const std::string& site) { told_done_.insert(site); }
  // Every site that joined was told the federation is finished (and at least one joined).
  bool AllToldDone() const { return !joined_.empty() && told_done_.size() == joined_.size(); }

 private:
  const std::string federation_;
  const std::vector<std::string> allowed_sites_;
  const std::vector<std::string> allowed_countries_;
  std::map<std::string, SiteIdentity> joined_;
  std::map<std::string, absl::Time> last_seen_;
  std::set<std::string> told_done_;  // joined sites only (NextTask refuses others)
};

}  // namespace hansa
