#include "common/partition/partition.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/partition/random.h"

namespace hansa {
namespace {

constexpr int kMaxDirichletAttempts = 10000;

std::string Short(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// Cuts `values` into `parts` consecutive pieces whose sizes differ by at most one, the larger
// ones first (numpy.array_split).
std::vector<std::vector<int64_t>> ArraySplit(const std::vector<int64_t>& values, int parts) {
  std::vector<std::vector<int64_t>> out(parts);
  const int64_t n = static_cast<int64_t>(values.size());
  const int64_t base = n / parts, extra = n % parts;
  int64_t at = 0;
  for (int p = 0; p < parts; ++p) {
    const int64_t size = base + (p < extra ? 1 : 0);
    out[p].assign(values.begin() + at, values.begin() + at + size);
    at += size;
  }
  return out;
}

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

std::vector<std::vector<int64_t>> ByLabel(const std::vector<uint8_t>& labels, int num_classes) {
  std::vector<std::vector<int64_t>> out(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) out[labels[i]].push_back(static_cast<int64_t>(i));
  return out;
}

std::vector<std::vector<int64_t>> Homogeneous(int64_t n, int sites, PortableRandom* random) {
  std::vector<int64_t> all = Iota(n);
  random->Shuffle(&all);
  return ArraySplit(all, sites);
}

// NIID-Bench "noniid-#label{k}": site i holds label i mod C and k-1 other distinct labels
// drawn uniformly; each label's examples are split equally among the sites holding it.
std::vector<std::vector<int64_t>> LabelQuantity(const std::vector<uint8_t>& labels, int num_classes,
                                                int sites, int k, PortableRandom* random) {
  std::vector<std::vector<int>> holds(sites);
  std::vector<int> times(num_classes, 0);
  for (int i = 0; i < sites; ++i) {
    holds[i].push_back(i % num_classes);
    ++times[i % num_classes];
    while (static_cast<int>(holds[i].size()) < k) {
      const int label = static_cast<int>(random->Below(num_classes));
      if (std::find(holds[i].begin(), holds[i].end(), label) != holds[i].end()) continue;
      holds[i].push_back(label);
      ++times[label];
    }
  }
  std::vector<std::vector<int64_t>> out(sites);
  std::vector<std::vector<int64_t>> by_label = ByLabel(labels, num_classes);
  for (int label = 0; label < num_classes; ++label) {
    random->Shuffle(&by_label[label]);
    if (times[label] == 0) continue;  // no site holds this label: its examples go unused
    std::vector<std::vector<int64_t>> pieces = ArraySplit(by_label[label], times[label]);
    int next = 0;
    for (int i = 0; i < sites; ++i) {
      if (std::find(holds[i].begin(), holds[i].end(), label) == holds[i].end()) continue;
      out[i].insert(out[i].end(), pieces[next].begin(), pieces[next].end());
      ++next;
    }
  }
  return out;
}

// NIID-Bench "noniid-labeldir": per label, Dirichlet(beta) proportions over the sites, with
// sites already holding N / sites examples excluded (rebalancing); redrawn until every site
// holds at least min_size examples.
StatusOr<std::vector<std::vector<int64_t>>> LabelDirichlet(const std::vector<uint8_t>& labels,
                                                           int num_classes, int sites, double beta,
                                                           int64_t min_size,
                                                           PortableRandom* random) {
  const double n = static_cast<double>(labels.size());
  std::vector<std::vector<int64_t>> by_label = ByLabel(labels, num_classes);
  for (int attempt = 0; attempt < kMaxDirichletAttempts; ++attempt) {
    std::vector<std::vector<int64_t>> out(sites);
    for (int label = 0; label < num_classes; ++label) {
      std::vector<int64_t> idx = by_label[label];
      random->Shuffle(&idx);
      std::vector<double> p = random->Dirichlet(sites, beta);
      double sum = 0;
      for (int j = 0; j < sites; ++j) {
        if (static_cast<double>(out[j].size()) >= n / sites) p[j] = 0;
        sum += p[j];
      }
      if (sum <= 0) continue;  // every site is full: nothing receives this label
      const int64_t len = static_cast<int64_t>(idx.size());
      double cumulative = 0;
      int64_t begin = 0;
      for (int j = 0; j < sites; ++j) {
        cumulative += p[j] / sum;
        const int64_t end =
            j + 1 == sites
                ? len
                : std::min(len, static_cast<int64_t>(cumulative * static_cast<double>(len)));
        if (end > begin) out[j].insert(out[j].end(), idx.begin() + begin, idx.begin() + end);
        begin = std::max(begin, end);
      }
    }
    int64_t smallest = static_cast<int64_t>(labels.size());
    for (const auto& s : out) smallest = std::min<int64_t>(smallest, s.size());
    if (smallest >= min_size) return out;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("Dirichlet(", beta, ") label partition over ", sites,
                   " sites found no draw giving every "
                   "site at least ",
                   min_size, " examples in ", kMaxDirichletAttempts,
                   " attempts; raise beta or use fewer sites"));
}

// NIID-Bench "iid-diff-quantity": site sizes ~ Dirichlet(beta) (redrawn until the smallest
// share is at least min_size examples) over a random permutation.
StatusOr<std::vector<std::vector<int64_t>>> QuantityDirichlet(int64_t n, int sites, double beta,
                                                              int64_t min_size,
                                                              PortableRandom* random) {
  std::vector<int64_t> all = Iota(n);
  random->Shuffle(&all);
  for (int attempt = 0; attempt < kMaxDirichletAttempts; ++attempt) {
    std::vector<double> p = random->Dirichlet(sites, beta);
    double smallest = *std::min_element(p.begin(), p.end()) * static_cast<double>(n);
    if (smallest < static_cast<double>(min_size)) continue;
    std::vector<std::vector<int64_t>> out(sites);
    double cumulative = 0;
    int64_t begin = 0;
    for (int j = 0; j < sites; ++j) {
      cumulative += p[j];
      const int64_t end =
          j + 1 == sites ? n
                         : std::min(n, static_cast<int64_t>(cumulative * static_cast<double>(n)));
      out[j].assign(all.begin() + begin, all.begin() + std::max(begin, end));
      begin = std::max(begin, end);
    }
    return out;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("Dirichlet(", beta, ") quantity partition over ", sites,
                   " sites found no draw giving "
                   "every site at least ",
                   min_size, " examples in ", kMaxDirichletAttempts,
                   " attempts; raise beta or use fewer sites"));
}

}  // namespace

std::string PartitionSpec::Name() const {
  switch (kind) {
    case PartitionKind::kHomogeneous:
      return "homogeneous";
    case PartitionKind::kLabelQuantity:
      return absl::StrCat("#C=", labels_per_site);
    case PartitionKind::kLabelDirichlet:
      return absl::StrCat("dir(", Short(beta), ")");
    case PartitionKind::kQuantityDirichlet:
      return absl::StrCat("quantity(", Short(beta), ")");
    case PartitionKind::kNoise:
      return absl::StrCat("noise(", Short(sigma), ")");
    case PartitionKind::kPooled:
      return "pooled";
  }
  return "?";
}

StatusOr<PartitionSpec> ParsePartitionSpec(const std::string& text) {
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat("partition '", text,
                     "' is not one of: homogeneous, label_quantity:K (or #C=K), "
                     "dirichlet:BETA, quantity:BETA, noise:SIGMA, pooled"));
  };
  std::string name = text, arg;
  if (text.rfind("#C=", 0) == 0) {
    name = "label_quantity";
    arg = text.substr(3);
  } else if (size_t colon = text.find(':'); colon != std::string::npos) {
    name = text.substr(0, colon);
    arg = text.substr(colon + 1);
  }
  PartitionSpec spec;
  if (name == "homogeneous" || name == "iid" || name == "pooled") {
    if (!arg.empty()) return bad();
    spec.kind = name == "pooled" ? PartitionKind::kPooled : PartitionKind::kHomogeneous;
    return spec;
  }
  double value = 0;
  if (arg.empty() || !absl::SimpleAtod(arg, &value) || !std::isfinite(value) || value <= 0) {
    return bad();
  }
  if (name == "label_quantity") {
    if (value != std::floor(value) || value > 1000) return bad();
    spec.kind = PartitionKind::kLabelQuantity;
    spec.labels_per_site = static_cast<int>(value);
  } else if (name == "dirichlet") {
    spec.kind = PartitionKind::kLabelDirichlet;
    spec.beta = value;
  } else if (name == "quantity") {
    spec.kind = PartitionKind::kQuantityDirichlet;
    spec.beta = value;
  } else if (name == "noise") {
    spec.kind = PartitionKind::kNoise;
    spec.sigma = value;
  } else {
    return bad();
  }
  return spec;
}

StatusOr<Partition> MakePartition(const std::vector<uint8_t>& labels, int num_classes,
                                  int num_sites, const PartitionSpec& spec, uint64_t seed) {
  if (spec.kind == PartitionKind::kPooled) num_sites = 1;
  if (num_sites < 1 || num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot partition over ", num_sites, " sites and ", num_classes, " classes"));
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("example ", i, " has label ", int{labels[i]},
                                                     " but there are only ", num_classes,
                                                     " classes"));
    }
  }
  const bool dirichlet =
      spec.kind == PartitionKind::kLabelDirichlet || spec.kind == PartitionKind::kQuantityDirichlet;
  if (n < num_sites * (dirichlet ? spec.min_size : 1)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot give ", num_sites, " sites ",
                                                   dirichlet ? spec.min_size : 1,
                                                   " examples each from ", n, " examples"));
  }
  PortableRandom random(seed);
  Partition out;
  out.noise_std.assign(num_sites, 0.0);
  switch (spec.kind) {
    case PartitionKind::kHomogeneous:
    case PartitionKind::kPooled:
      out.sites = Homogeneous(n, num_sites, &random);
      break;
    case PartitionKind::kNoise:
      out.sites = Homogeneous(n, num_sites, &random);
      for (int i = 0; i < num_sites; ++i) {
        out.noise_std[i] = num_sites == 1 ? 0.0 : spec.sigma * i / (num_sites - 1);
      }
      break;
    case PartitionKind::kLabelQuantity:
      if (spec.labels_per_site < 1 || spec.labels_per_site > num_classes) {
        return absl::InvalidArgumentError(absl::StrCat("#C=", spec.labels_per_site,
                                                       " asks for more labels per site than the ",
                                                       num_classes, " classes"));
      }
      out.sites = LabelQuantity(labels, num_classes, num_sites, spec.labels_per_site, &random);
      break;
    case PartitionKind::kLabelDirichlet: {
      ASSIGN_OR_RETURN(out.sites, LabelDirichlet(labels, num_classes, num_sites, spec.beta,
                                                 spec.min_size, &random));
      break;
    }
    case PartitionKind::kQuantityDirichlet: {
      ASSIGN_OR_RETURN(out.sites,
                       QuantityDirichlet(n, num_sites, spec.beta, spec.min_size, &random));
      break;
    }
  }
  for (auto& site : out.sites) random.Shuffle(&site);
  return out;
}

std::vector<std::vector<int64_t>> ClassCounts(const Partition& partition,
                                              const std::vector<uint8_t>& labels, int num_classes) {
  std::vector<std::vector<int64_t>> counts(partition.sites.size(),
                                           std::vector<int64_t>(num_classes, 0));
  for (size_t s = 0; s < partition.sites.size(); ++s) {
    for (int64_t i : partition.sites[s]) ++counts[s][labels[i]];
  }
  return counts;
}

}  // namespace hansa
