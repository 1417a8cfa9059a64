#include "common/secagg/params.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "common/secagg/graph.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

SecAggParams Base(uint32_t n) {
  SecAggParams p;
  p.num_sites = n;
  p.vector_length = 10;
  return p;
}

TEST(SecAggParamsTest, DefaultsAreFullGraphForSmallCohortsAndSafeThreshold) {
  auto p = ResolveParams(Base(10));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->degree, 9);
  EXPECT_EQ(p->threshold, 6);  // max(9/2 + 1, ceil(18/3))
  auto small = ResolveParams(Base(3));
  EXPECT_EQ(small->degree, 2);
  EXPECT_EQ(small->threshold, 2);
  auto big = ResolveParams(Base(100));
  EXPECT_EQ(big->degree, 40);  // ceil(6 log2 100) = 40
  EXPECT_EQ(big->threshold, 27);
}

TEST(SecAggParamsTest, RefusesInsecureOrDeadParameters) {
  struct Case {
    uint32_t n;
    int k, t;
    const char* why;
  } cases[] = {
      {2, 0, 0, "at least 3 sites"},      {10, 9, 4, "must exceed degree/2"},
      {10, 4, 2, "must exceed degree/2"}, {10, 9, 10, "exceeds the degree"},
      {10, 5, 3, "must be even"},         {10, 10, 6, "must be in 2..9"},
  };
  for (const Case& c : cases) {
    SecAggParams p = Base(c.n);
    p.degree = c.k;
    p.threshold = c.t;
    auto st = ResolveParams(p).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.why;
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.why));
  }
  SecAggParams m = Base(5);
  m.malicious = true;
  EXPECT_THAT(std::string(ResolveParams(m).status().message()), HasSubstr("signing key"));
  SecAggParams empty = Base(5);
  empty.vector_length = 0;
  EXPECT_EQ(ResolveParams(empty).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NeighbourGraphTest, HararyGraphIsRegularSymmetricAndSeedDependent) {
  std::array<uint8_t, 32> seed{1};
  auto g = NeighbourGraph::Build(50, 8, seed);
  ASSERT_TRUE(g.ok());
  for (SiteId u = 1; u <= 50; ++u) {
    auto nb = g->Neighbours(u);
    EXPECT_EQ(nb.size(), 8u);
    for (SiteId v : nb) EXPECT_TRUE(g->Adjacent(v, u));
    EXPECT_FALSE(g->Adjacent(u, u));
  }
  std::array<uint8_t, 32> other{2};
  auto h = NeighbourGraph::Build(50, 8, other);
  int differ = 0;
  for (SiteId u = 1; u <= 50; ++u) differ += g->Neighbours(u) != h->Neighbours(u);
  EXPECT_GT(differ, 25);
  auto same = NeighbourGraph::Build(50, 8, seed);
  for (SiteId u = 1; u <= 50; ++u) EXPECT_EQ(g->Neighbours(u), same->Neighbours(u));
  auto full = NeighbourGraph::Build(6, 5, seed);
  EXPECT_EQ(full->Neighbours(3), (std::vector<SiteId>{1, 2, 4, 5, 6}));
}

}  // namespace
}  // namespace hansa
