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

// The coordinator picks k and t; a site's policy sets floors under them. The defaults let
// the 3-site cohort (k = t = 2) through; a site that raises them refuses a plan below, naming
// the policy key.
TEST(SecAggPolicyTest, SiteRefusesAPlanBelowItsMinimumDegreeOrThreshold) {
  auto three = ResolveParams(Base(3));
  ASSERT_TRUE(three.ok());
  EXPECT_TRUE(CheckSecAggPolicy(*three, 2, 2).ok());
  Status k = CheckSecAggPolicy(*three, 4, 2);
  EXPECT_EQ(k.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(k.message()), HasSubstr("k = 2 neighbours, below this site's minimum"));
  EXPECT_THAT(std::string(k.message()), HasSubstr("policy.min_secagg_degree"));
  SecAggParams sparse = Base(9);
  sparse.degree = 4;
  sparse.threshold = 3;
  ASSERT_TRUE(ResolveParams(sparse).ok());
  EXPECT_TRUE(CheckSecAggPolicy(sparse, 4, 3).ok());
  Status t = CheckSecAggPolicy(sparse, 4, 4);
  EXPECT_EQ(t.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.message()), HasSubstr("threshold t = 3"));
  EXPECT_THAT(std::string(t.message()), HasSubstr("policy.min_secagg_threshold"));
}

KeyDirectory Directory(uint32_t n, const GraphSeed& coordinator_seed) {
  KeyDirectory d;
  d.round = 1;
  d.graph_seed = coordinator_seed;
  for (SiteId id = 1; id <= n; ++id) {
    AdvertiseKeys e;
    e.round = 1;
    e.sender = id;
    e.graph_contribution = {static_cast<uint8_t>(id), 0x5a};
    d.entries.push_back(e);
  }
  return d;
}

// Every site's contribution moves the graph: with its seed fixed by the commitment, the
// coordinator cannot choose the graph alone, and every party builds the same one.
TEST(NeighbourGraphTest, GraphSeedIsJointAndTheRevealMustMatchTheCommitment) {
  const uint32_t n = 20;
  SecAggParams p = Base(n);
  p.degree = 4;
  GraphSeed coordinator{7, 7, 7};
  p.graph_seed_commitment = CommitGraphSeed(coordinator);
  const KeyDirectory d = Directory(n, coordinator);
  auto base = NeighbourGraph::ForDirectory(p, d);
  ASSERT_TRUE(base.ok()) << base.status();
  auto same = NeighbourGraph::ForDirectory(p, d);
  auto graph_of = [n](const NeighbourGraph& g) {
    std::vector<std::vector<SiteId>> out;
    for (SiteId u = 1; u <= n; ++u) out.push_back(g.Neighbours(u));
    return out;
  };
  EXPECT_EQ(graph_of(*base), graph_of(*same));
  for (uint32_t i = 0; i < n; ++i) {
    KeyDirectory changed = d;
    changed.entries[i].graph_contribution[31] ^= 1;
    EXPECT_NE(JointGraphSeed(coordinator, changed.entries), JointGraphSeed(coordinator, d.entries));
    auto g = NeighbourGraph::ForDirectory(p, changed);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_NE(graph_of(*g), graph_of(*base)) << "site " << i + 1 << "'s contribution";
  }
  // A left-out advertisement moves it too (the residual the docs state: the coordinator may
  // choose among directories by leaving sites out).
  KeyDirectory fewer = d;
  fewer.entries.pop_back();
  EXPECT_NE(JointGraphSeed(coordinator, fewer.entries), JointGraphSeed(coordinator, d.entries));
  // The coordinator revealing any other seed than the one it committed to is refused.
  KeyDirectory lie = d;
  lie.graph_seed[0] ^= 1;
  auto refused = NeighbourGraph::ForDirectory(p, lie);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("does not match its commitment in the plan"));
}

}  // namespace
}  // namespace hansa
