// The SecAgg+ neighbour graph: a random k-regular Harary graph H(k, n) (Bell et al., CCS 2020).
// Sites are placed on a ring in an order drawn from the round's public seed; each is joined to
// the k/2 nearest on either side. With k = n - 1 it is the complete graph. Everyone derives
// the same graph from the same seed. Immutable after Build; any thread may read it.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/secagg/params.h"

namespace hansa {

class NeighbourGraph {
 public:
  // REQUIRES: parameters that passed ResolveParams.
  static StatusOr<NeighbourGraph> Build(uint32_t num_sites, int degree,
                                        const std::array<uint8_t, 32>& seed);

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
