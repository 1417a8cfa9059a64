// The site's Prometheus metrics at /metrics of its monitoring server ([monitoring] listen in
// site.toml): what left the site (bytes and messages by type), plans accepted and refused by
// reason, training throughput (from the figures a plaintext upload carries in the clear; a
// masked upload carries none), and its local privacy budget left. All of it is read from the site's
// own records, the egress ledger and the privacy ledgers in its state folder, so the session needs
// no hooks and the figures are exactly what the ledger holds: the ledger's new lines are read at
// each scrape (only those appended since the last one).
//
// Threading: SiteMetrics is thread-safe (one mutex around the tally; scrapes are serialised).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "client/policy.h"
#include "common/monitoring/http_server.h"

namespace hansa {

class SiteMetrics {
 public:
  // `state_dir` holds egress.jsonl, privacy.json and record_privacy.json; `policy` gives the
  // budgets (0: no budget of the site's own, no series).
  SiteMetrics(std::string site, std::string state_dir, double max_epsilon, double delta,
              double max_record_epsilon, double record_delta);

  // The Prometheus text exposition now.
  std::string Text() ABSL_LOCKS_EXCLUDED(mu_);

  // Serves GET /metrics on `server`; `metrics` must outlive it.
  static void Serve(HttpServer& server, std::shared_ptr<SiteMetrics> metrics);

  // The label for a refusal's reason: the policy key it names ("policy.min_cohort" ->
  // "min_cohort"), else "other".
  static std::string ReasonLabel(const std::string& reason);

 private:
  void ReadNewRecords() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string site_;
  const std::string state_dir_;
  const double max_epsilon_, delta_, max_record_epsilon_, record_delta_;
  absl::Mutex mu_;
  int64_t offset_ ABSL_GUARDED_BY(mu_) = 0;  // of egress.jsonl read so far (whole lines)
  std::map<std::string, int64_t> bytes_by_type_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> messages_by_type_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> refused_by_reason_ ABSL_GUARDED_BY(mu_);
  int64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t contributions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t records_ ABSL_GUARDED_BY(mu_) = 0;
  // From the figures a plaintext upload carries in the clear (a masked one carries none).
  int64_t trained_examples_ ABSL_GUARDED_BY(mu_) = 0;
  double training_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double last_examples_per_second_ ABSL_GUARDED_BY(mu_) = -1;  // -1: none yet
};

}  // namespace hansa
