#include "common/partition/partition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/partition/random.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

// `per_class` examples of each of `classes` labels, interleaved 0,1,...,C-1,0,1,...
std::vector<uint8_t> Labels(int classes, int per_class) {
  std::vector<uint8_t> labels;
  for (int r = 0; r < per_class; ++r) {
    for (int c = 0; c < classes; ++c) labels.push_back(static_cast<uint8_t>(c));
  }
  return labels;
}

// Every index appears at most once; returns how many appear.
size_t CheckDisjoint(const Partition& p, size_t n) {
  std::set<int64_t> seen;
  size_t total = 0;
  for (const auto& site : p.sites) {
    for (int64_t i : site) {
      EXPECT_GE(i, 0);
      EXPECT_LT(i, static_cast<int64_t>(n));
      EXPECT_TRUE(seen.insert(i).second) << "index " << i << " given twice";
    }
    total += site.size();
  }
  return total;
}

int LabelsHeld(const std::vector<int64_t>& counts) {
  return static_cast<int>(
      std::count_if(counts.begin(), counts.end(), [](int64_t c) { return c > 0; }));
}

TEST(PartitionTest, HomogeneousCutsEqualDisjointParts) {
  std::vector<uint8_t> labels = Labels(2, 5);  // 10 examples
  auto p = MakePartition(labels, 2, 3, PartitionSpec{}, 1);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->num_sites(), 3);
  EXPECT_EQ(p->sites[0].size(), 4u);
  EXPECT_EQ(p->sites[1].size(), 3u);
  EXPECT_EQ(p->sites[2].size(), 3u);
  EXPECT_EQ(CheckDisjoint(*p, labels.size()), labels.size());
  EXPECT_THAT(p->noise_std, ::testing::ElementsAre(0.0, 0.0, 0.0));
}

TEST(PartitionTest, OneLabelPerSiteGivesSiteIAllOfLabelI) {
  std::vector<uint8_t> labels = Labels(10, 7);
  auto spec = ParsePartitionSpec("#C=1");
  ASSERT_TRUE(spec.ok());
  auto p = MakePartition(labels, 10, 10, *spec, 3);
  ASSERT_TRUE(p.ok()) << p.status();
  auto counts = ClassCounts(*p, labels, 10);
  for (int i = 0; i < 10; ++i) {
    for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[i][c], c == i ? 7 : 0) << i << "," << c;
  }
  EXPECT_EQ(CheckDisjoint(*p, labels.size()), labels.size());
}

TEST(PartitionTest, LabelQuantityHoldsKLabelsSplitEqually) {
  std::vector<uint8_t> labels = Labels(10, 60);
  for (int k : {2, 3}) {
    auto p = MakePartition(labels, 10, 10, *ParsePartitionSpec(absl::StrCat("#C=", k)), 7);
    ASSERT_TRUE(p.ok()) << p.status();
    auto counts = ClassCounts(*p, labels, 10);
    std::vector<int> holders(10, 0);
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(LabelsHeld(counts[i]), k) << "site " << i;
      EXPECT_GT(counts[i][i % 10], 0) << "site " << i << " lacks label " << i;
      for (int c = 0; c < 10; ++c) holders[c] += counts[i][c] > 0;
    }
    // Each label's 60 examples are split equally (to within one) among its holders.
    for (int c = 0; c < 10; ++c) {
      if (holders[c] == 0) continue;
      for (int i = 0; i < 10; ++i) {
        if (counts[i][c] == 0) continue;
        EXPECT_LE(std::abs(counts[i][c] - 60 / holders[c]), 1) << "label " << c;
      }
    }
    CheckDisjoint(*p, labels.size());
  }
}

TEST(PartitionTest, LabelDirichletMeetsMinimumSizeAndSkews) {
  std::vector<uint8_t> labels = Labels(10, 200);  // 2000 examples
  auto spec = ParsePartitionSpec("dirichlet:0.1");
  ASSERT_TRUE(spec.ok());
  auto p = MakePartition(labels, 10, 10, *spec, 11);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(CheckDisjoint(*p, labels.size()), labels.size());
  auto counts = ClassCounts(*p, labels, 10);
  double dominant = 0;
  for (const auto& site : p->sites) EXPECT_GE(site.size(), 10u);
  for (const auto& c : counts) {
    int64_t total = 0, top = 0;
    for (int64_t v : c) total += v, top = std::max(top, v);
    dominant += static_cast<double>(top) / total;
  }
  // Under Dirichlet(0.1) a site's largest class dominates; uniform would give 0.1.
  EXPECT_GT(dominant / 10, 0.5);
}

TEST(PartitionTest, QuantityDirichletKeepsLabelsMixedAndSizesVary) {
  std::vector<uint8_t> labels = Labels(10, 500);
  auto p = MakePartition(labels, 10, 10, *ParsePartitionSpec("quantity:0.5"), 5);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(CheckDisjoint(*p, labels.size()), labels.size());
  size_t smallest = labels.size(), largest = 0;
  for (const auto& s : p->sites) {
    smallest = std::min(smallest, s.size());
    largest = std::max(largest, s.size());
  }
  EXPECT_GE(smallest, 10u);
  EXPECT_GT(largest, 2 * smallest);
}

TEST(PartitionTest, NoiseGrowsLinearlyWithSiteIndex) {
  std::vector<uint8_t> labels = Labels(10, 10);
  auto p = MakePartition(labels, 10, 5, *ParsePartitionSpec("noise:0.1"), 0);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->noise_std.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(p->noise_std[i], 0.1 * i / 4);
  EXPECT_EQ(CheckDisjoint(*p, labels.size()), labels.size());
}

TEST(PartitionTest, PooledIsOneSiteWithEverything) {
  std::vector<uint8_t> labels = Labels(3, 4);
  auto p = MakePartition(labels, 3, 10, *ParsePartitionSpec("pooled"), 0);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->num_sites(), 1);
  EXPECT_EQ(p->sites[0].size(), 12u);
}

TEST(PartitionTest, SameSeedSamePartitionOtherSeedOther) {
  std::vector<uint8_t> labels = Labels(10, 100);
  PartitionSpec spec = *ParsePartitionSpec("dirichlet:0.5");
  auto a = MakePartition(labels, 10, 10, spec, 42);
  auto b = MakePartition(labels, 10, 10, spec, 42);
  auto c = MakePartition(labels, 10, 10, spec, 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->sites, b->sites);
  EXPECT_NE(a->sites, c->sites);
}

TEST(PartitionTest, PortableStreamIsPinned) {
  // SplitMix64 from seed 0: the reference values of Vigna's splitmix64.c.
  PortableRandom r(0);
  EXPECT_EQ(r.Next(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(r.Next(), 0x6e789e6aa1b965f4ull);
}

TEST(PartitionTest, GammaAndDirichletHaveTheirMeans) {
  PortableRandom r(9);
  for (double shape : {0.3, 1.0, 4.5}) {
    double sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) sum += r.Gamma(shape);
    EXPECT_NEAR(sum / n, shape, 0.05 * shape + 0.02) << shape;
  }
  std::vector<double> mean(4, 0.0);
  for (int i = 0; i < 5000; ++i) {
    std::vector<double> d = r.Dirichlet(4, 0.5);
    double total = 0;
    for (int j = 0; j < 4; ++j) mean[j] += d[j], total += d[j];
    ASSERT_NEAR(total, 1.0, 1e-12);
  }
  for (double m : mean) EXPECT_NEAR(m / 5000, 0.25, 0.02);
}

TEST(PartitionTest, RefusesImpossibleRequests) {
  std::vector<uint8_t> labels = Labels(10, 5);  // 50 examples
  auto too_many = MakePartition(labels, 10, 10, *ParsePartitionSpec("dirichlet:0.5"), 0);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_many.status().message()), HasSubstr("10 examples each from 50"));
  auto k = MakePartition(labels, 10, 2, *ParsePartitionSpec("#C=11"), 0);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  auto label = MakePartition({0, 1, 12}, 10, 1, PartitionSpec{}, 0);
  EXPECT_THAT(std::string(label.status().message()), HasSubstr("example 2 has label 12"));
  auto parse = ParsePartitionSpec("dirichlet");
  EXPECT_EQ(parse.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parse.status().message()), HasSubstr("dirichlet:BETA"));
  EXPECT_FALSE(ParsePartitionSpec("#C=1.5").ok());
  EXPECT_EQ(ParsePartitionSpec("quantity:0.5")->Name(), "quantity(0.5)");
  EXPECT_EQ(ParsePartitionSpec("#C=3")->Name(), "#C=3");
}

}  // namespace
}  // namespace hansa
