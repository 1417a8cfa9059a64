// The SecAgg+ neighbour graph: a random k-regular Harary graph H(k, n) (Bell et al., CCS 2020).
// Sites are placed on a ring in an order drawn from a seed; each is joined to the k/2 nearest
// on either side. With k = n - 1 it is the complete graph. Everyone derives the same graph
// from the same seed. Immutable after Build; any thread may read it.
//
// The seed is drawn jointly, commit then reveal, so that the coordinator cannot pick a graph
// in which its colluders surround a victim: the plan carries CommitGraphSeed(s) of the
// coordinator's secret s; each site adds 32 fresh random bytes to its AdvertiseKeys (signed
// in malicious mode); the KeyDirectory reveals s; every party checks s against the plan and
// builds the graph from JointGraphSeed(s, directory). Both modes take this one path; it
// matters in malicious-coordinator mode (an honest-but-curious coordinator follows the
// protocol anyway). What it leaves open (colluding sites that contribute last, the choice of
// which advertisements enter the directory): docs/architecture.md.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/crypto/sha256.h"
#include "common/secagg/messages.h"
#include "common/secagg/params.h"

namespace hansa {

using GraphSeed = std::array<uint8_t, 32>;

// The plan's commitment to the coordinator's graph seed: SHA-256 of a domain tag and the seed.
Sha256Digest CommitGraphSeed(const GraphSeed& coordinator_seed);
// The graph's seed: SHA-256 of a domain tag, the coordinator's seed and, for every entry in
// order, its sender and graph contribution. Any one changed contribution changes it.
Sha256Digest JointGraphSeed(const GraphSeed& coordinator_seed,
                            const std::vector<AdvertiseKeys>& entries);

class NeighbourGraph {
 public:
  // REQUIRES: parameters that passed ResolveParams.
  static StatusOr<NeighbourGraph> Build(uint32_t num_sites, int degree,
                                        const std::array<uint8_t, 32>& seed);
  // The round's graph once its directory is known: PermissionDenied when the directory's
  // revealed seed does not match params.graph_seed_commitment, else Build over
  // JointGraphSeed(directory.graph_seed, directory.entries).
  // REQUIRES: parameters that passed ResolveParams.
  static StatusOr<NeighbourGraph> ForDirectory(const SecAggParams& params,
                                               const KeyDirectory& directory);

  uint32_t num_sites() const { return n_; }
  bool Adjacent(SiteId a, SiteId b) const;
  // Neighbours of `site`, ascending.
  std::vector<SiteId> Neighbours(SiteId site) const;

 private:
  uint32_t n_ = 0;
  int k_ = 0;
  std::vector<uint32_t> position_;  // position_[id - 1] on the ring
};

}  // namespace hansa
