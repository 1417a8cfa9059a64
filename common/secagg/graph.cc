#include "common/secagg/graph.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "common/crypto/chacha20.h"

namespace hansa {

namespace {

void PutSeed(std::string* s, const std::array<uint8_t, 32>& seed) {
  s->append(reinterpret_cast<const char*>(seed.data()), seed.size());
}

}  // namespace

Sha256Digest CommitGraphSeed(const GraphSeed& coordinator_seed) {
  std::string s = "hansa/secagg/v1/graph-seed-commitment";
  PutSeed(&s, coordinator_seed);
  return Sha256(s);
}

Sha256Digest JointGraphSeed(const GraphSeed& coordinator_seed,
                            const std::vector<AdvertiseKeys>& entries) {
  std::string s = "hansa/secagg/v1/graph-seed";
  PutSeed(&s, coordinator_seed);
  for (const AdvertiseKeys& e : entries) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(e.sender >> (8 * i)));
    PutSeed(&s, e.graph_contribution);
  }
  return Sha256(s);
}

StatusOr<NeighbourGraph> NeighbourGraph::ForDirectory(const SecAggParams& params,
                                                      const KeyDirectory& directory) {
  if (CommitGraphSeed(directory.graph_seed) != params.graph_seed_commitment) {
    return absl::PermissionDeniedError(absl::StrCat(
        "round ", params.round,
        ": the coordinator revealed a graph seed that does not match its commitment in the "
        "plan; it could be choosing the neighbour graph alone"));
  }
  return Build(params.num_sites, params.degree,
               JointGraphSeed(directory.graph_seed, directory.entries));
}

StatusOr<NeighbourGraph> NeighbourGraph::Build(uint32_t num_sites, int degree,
                                               const std::array<uint8_t, 32>& seed) {
  NeighbourGraph g;
  g.n_ = num_sites;
  g.k_ = degree;
  std::vector<uint32_t> order(num_sites);
  std::iota(order.begin(), order.end(), 0u);
  // Fisher-Yates driven by ChaCha20(seed), with rejection sampling for exact uniformity.
  const ChaCha20Nonce kGraphNonce = {'s', 'e', 'c', 'a', 'g', 'g', '-', 'g', 'r', 'a', 'p', 'h'};
  ASSIGN_OR_RETURN(ChaCha20Prg prg,
                   ChaCha20Prg::Create(SecretBytes(seed.data(), seed.size()), kGraphNonce));
  uint64_t word_index = 0;
  for (uint32_t i = num_sites - 1; i > 0; --i) {
    const uint64_t range = uint64_t{i} + 1;
    const uint64_t limit = (uint64_t{1} << 32) - ((uint64_t{1} << 32) % range);
    uint32_t r = 0;
    do {
      r = 0;
      RETURN_IF_ERROR(prg.ApplyMask(word_index++, &r, 1, MaskOp::kAdd));
    } while (r >= limit);
    std::swap(order[i], order[r % range]);
  }
  g.position_.resize(num_sites);
  for (uint32_t pos = 0; pos < num_sites; ++pos) g.position_[order[pos]] = pos;
  return g;
}

bool NeighbourGraph::Adjacent(SiteId a, SiteId b) const {
  if (a == b || a < 1 || b < 1 || a > n_ || b > n_) return false;
  if (k_ >= static_cast<int>(n_) - 1) return true;
  uint32_t pa = position_[a - 1], pb = position_[b - 1];
  uint32_t d = pa > pb ? pa - pb : pb - pa;
  d = std::min(d, n_ - d);
  return d <= static_cast<uint32_t>(k_ / 2);
}

std::vector<SiteId> NeighbourGraph::Neighbours(SiteId site) const {
  std::vector<SiteId> out;
  for (SiteId v = 1; v <= n_; ++v) {
    if (Adjacent(site, v)) out.push_back(v);
  }
  return out;
}

}  // namespace hansa
