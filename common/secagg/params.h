// Parameters of one SecAgg+ round, shared by the coordinator and every site (they arrive in
// the RoundPlan), and their validation.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/crypto/ed25519.h"
#include "common/secagg/ring.h"
#include "common/status/status.h"

namespace hansa {

// Sites of a round are numbered 1..num_sites (plan order); the number is also the site's
// Shamir evaluation point.
using SiteId = uint32_t;

struct SecAggParams {
  uint64_t round = 0;
  uint32_t num_sites = 0;  // cohort size n >= 3
  // k: neighbours per site. 0 = default: n - 1 (every other site) when n <= 32, otherwise an
  // even number from max(32, 6 log2 n), capped at n - 1. When k < n - 1 it must be even
  // (the Harary graph H(k, n)).
  int degree = 0;
  // t: shares needed to reconstruct a site's secrets, k/2 < t <= k. 0 = default:
  // max(floor(k/2) + 1, ceil(2k/3)). t - 1 colluding neighbours learn nothing. A dropped
  // site's mask key is rebuilt from t of its k neighbours. A survivor's self-mask seed is
  // rebuilt from t shares of its k neighbours and, without the malicious-coordinator checks,
  // its own: then after key sharing it outlives k + 1 - t of its neighbours dropping (3 sites,
  // k = t = 2: any one site), otherwise k - t. The malicious mode keeps the stricter rule
  // because with its own share a coordinator that shows two survivor lists, each signed by t
  // sites, needs one honest signer fewer to rebuild both secrets of one site.
  int threshold = 0;
  // Malicious-coordinator mode: advertised keys are signed and the survivor set goes through
  // a signed consistency check.
  bool malicious = false;
  RingWidth ring = RingWidth::k32;
  uint64_t vector_length = 0;  // ring elements per site input (including the weight element)
  // The fewest inputs the sum may be unmasked over (the plan's minimum): the server session
  // does not start unmasking below it and a site refuses to sign a survivor list or answer an
  // unmask request naming fewer. 0: no minimum beyond the threshold. At most num_sites.
  uint32_t min_survivors = 0;
  // Public randomness of the attempt (from the plan, fresh for each attempt): bound into the
  // session id and every signed advertisement; the distributed discrete Gaussian's rotation
  // also draws on it. It does not seed the neighbour graph (see graph.h).
  std::array<uint8_t, 32> round_seed{};
  // The coordinator's commitment to its secret share of the neighbour-graph seed
  // (CommitGraphSeed, graph.h), from the plan. The coordinator reveals the seed in the
  // KeyDirectory and every site checks it against this before building the graph.
  // ServerSession::Create draws the seed and sets this; sites take it from the plan.
  std::array<uint8_t, 32> graph_seed_commitment{};
  // Ed25519 keys of sites 1..n (from their certificates), index id - 1. Required in
  // malicious mode, ignored otherwise.
  std::vector<Ed25519PublicKey> signing_keys;
};

// Fills in the defaults for degree and threshold and checks everything; InvalidArgument with
// the rule that was broken (e.g. "threshold 2 must exceed degree/2 = 2").
StatusOr<SecAggParams> ResolveParams(SecAggParams params);

// A site's own floor under the coordinator's choice of k and t (its policy keys
// [policy] min_secagg_degree and min_secagg_threshold): a plan with fewer neighbours or a lower
// threshold would let fewer colluding sites learn the site's input. InvalidArgument, as the
// site's other plan refusals, naming the policy key that the plan falls short of. Reads only
// round, degree and threshold, as the plan states them (resolved).
Status CheckSecAggPolicy(const SecAggParams& params, int min_degree, int min_threshold);

}  // namespace hansa
