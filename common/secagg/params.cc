#include "common/secagg/params.h"

#include <cmath>

#include "common/crypto/chacha20.h"

namespace hansa {

namespace {

int DefaultDegree(uint32_t n) {
  if (n <= 32) return static_cast<int>(n) - 1;
  int k = std::max(32, static_cast<int>(std::ceil(6 * std::log2(static_cast<double>(n)))));
  if (k % 2 != 0) ++k;
  return std::min(k, static_cast<int>(n) - 1);
}

}  // namespace

StatusOr<SecAggParams> ResolveParams(SecAggParams p) {
  if (p.num_sites < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("secure aggregation needs at least 3 sites, got ", p.num_sites,
                     " (with 2, each site could subtract its own input from the sum)"));
  }
  if (p.num_sites > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("cohort of ", p.num_sites, " is too large"));
  }
  const int n = static_cast<int>(p.num_sites);
  if (p.degree == 0) p.degree = DefaultDegree(p.num_sites);
  if (p.degree < 2 || p.degree > n - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("degree ", p.degree, " must be in 2..", n - 1, " for ", n, " sites"));
  }
  if (p.degree < n - 1 && p.degree % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "degree ", p.degree, " must be even when below n - 1 = ", n - 1, " (Harary graph)"));
  }
  const int k = p.degree;
  if (p.threshold == 0) {
    p.threshold = std::max(k / 2 + 1, (2 * k + 2) / 3);
  }
  if (2 * p.threshold <= k) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold ", p.threshold, " must exceed degree/2 = ", k / 2.0,
                     ", or a coordinator could collect both kinds of share of one site"));
  }
  if (p.threshold > k) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold ", p.threshold, " exceeds the degree ", k,
                     ": no site's secrets could ever be reconstructed"));
  }
  if (p.min_survivors > p.num_sites) {
    return absl::InvalidArgumentError(absl::StrCat("a sum over at least ", p.min_survivors,
                                                   " sites cannot come from a cohort of ", n,
                                                   "; plan at least min_survivors sites"));
  }
  const uint64_t max_len = kChaCha20MaxStreamBytes / RingWordSize(p.ring);
  if (p.vector_length == 0 || p.vector_length > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("vector length ", p.vector_length, " must be in 1..", max_len));
  }
  if (p.malicious && p.signing_keys.size() != p.num_sites) {
    return absl::InvalidArgumentError(
        absl::StrCat("malicious-coordinator mode needs the signing key of every site: got ",
                     p.signing_keys.size(), " keys for ", n, " sites"));
  }
  return p;
}

Status CheckSecAggPolicy(const SecAggParams& params, int min_degree, int min_threshold) {
  if (params.degree < min_degree) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", params.round, ": the plan gives each site k = ", params.degree,
                     " neighbours, below this site's minimum of ", min_degree,
                     " (policy.min_secagg_degree); refused"));
  }
  if (params.threshold < min_threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", params.round, ": the plan's threshold t = ", params.threshold,
                     " is below this site's minimum of ", min_threshold,
                     " (policy.min_secagg_threshold); refused"));
  }
  return absl::OkStatus();
}

}  // namespace hansa
