// How a labelled data set is dealt out to the virtual sites of a simulation: the non-IID
// partitions of NIID-Bench (Li, Diao, Chen, He, ICDE 2022), deterministic by seed.
//
// A partition is a list of example indices per site (sites never hold copies of the data)
// plus, for noise-based feature skew, the standard deviation of the Gaussian noise each site
// adds to its pixels (scaled to [0, 1]) when its data is materialized for training. Plain
// data, no LibTorch; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace hansa {

enum class PartitionKind {
  kHomogeneous,        // a random permutation cut into equal parts
  kLabelQuantity,      // #C=k: each site holds k labels; site i holds label i mod C
  kLabelDirichlet,     // per label, proportions ~ Dirichlet(beta) over sites
  kQuantityDirichlet,  // site sizes ~ Dirichlet(beta), labels uniform
  kNoise,              // homogeneous, site i adds N(0, (sigma * i / (n - 1))^2) noise
  kPooled,             // one site holds everything (the centralised baseline)
};

struct PartitionSpec {
  PartitionKind kind = PartitionKind::kHomogeneous;
  int labels_per_site = 1;  // k of #C=k
  double beta = 0.5;        // Dirichlet concentration
  double sigma = 0.1;       // noise level
  int64_t min_size = 10;    // Dirichlet partitions are redrawn until every site has this many

  // A short name for tables and directories: "homogeneous", "#C=2", "dir(0.5)",
  // "quantity(0.5)", "noise(0.1)", "pooled".
  std::string Name() const;
};

// Parses "homogeneous" (or "iid"), "label_quantity:K" (or "#C=K"), "dirichlet:BETA",
// "quantity:BETA", "noise:SIGMA", "pooled". InvalidArgument naming the accepted forms.
StatusOr<PartitionSpec> ParsePartitionSpec(const std::string& text);

struct Partition {
  std::vector<std::vector<int64_t>> sites;  // example indices of each site, disjoint
  std::vector<double> noise_std;            // per site; all 0 unless kNoise

  int num_sites() const { return static_cast<int>(sites.size()); }
};

// Deals the examples with `labels` (each < num_classes) to `num_sites` sites. The same
// (labels, spec, num_sites, seed) give the same partition on every platform. kPooled ignores
// num_sites and returns one site. InvalidArgument for impossible requests (k > num_classes,
// fewer examples than num_sites * min_size, a label >= num_classes); FailedPrecondition when
// a Dirichlet draw cannot meet min_size within 10,000 attempts (raise beta or use fewer sites).
StatusOr<Partition> MakePartition(const std::vector<uint8_t>& labels, int num_classes,
                                  int num_sites, const PartitionSpec& spec, uint64_t seed);

// counts[site][label]: the samples per class per site.
std::vector<std::vector<int64_t>> ClassCounts(const Partition& partition,
                                              const std::vector<uint8_t>& labels, int num_classes);

}  // namespace hansa
