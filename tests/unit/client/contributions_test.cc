// SpentContributions, and what it gives the sites against a coordinator that unmasks a sum and
// then asks for a retry of the same round: sites and the coordinator's SecAgg+ sessions as
// plain objects, the coordinator's choices under the test's control.
#include "client/contributions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/secagg/client.h"
#include "common/secagg/server.h"
#include "proto/plan_digest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using testing::TestFederation;

constexpr uint64_t kRound = 3;
constexpr uint64_t kLength = 64;

v1::RoundPlan Plan(uint32_t attempt, uint64_t seed) {
  v1::RoundPlan p;
  p.set_round(kRound);
  p.set_attempt(attempt);
  p.set_model_name("simple_cnn");
  p.set_global_model_sha256(std::string(64, 'a'));
  p.set_aggregation_mode(v1::AGGREGATION_SECURE);
  p.mutable_training()->set_seed(seed);
  for (const char* site : {"berlin", "paris", "milan", "mallory"}) p.add_cohort(site);
  return p;
}

std::string LedgerPath(const std::string& name) {
  std::string path = ::testing::TempDir() + "contributions_" + name + "/egress.jsonl";
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  return path;
}

std::unique_ptr<AuditLog> OpenEgress(const std::string& path) {
  const auto& site = TestFederation::Get().site("berlin");
  auto log = AuditLog::Open(path, site.Key(), site.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

int SpentRecords(const std::string& path) {
  auto records = ReadAuditRecordsUnverified(path);
  EXPECT_TRUE(records.ok()) << records.status();
  int n = 0;
  for (const AuditRecord& r : *records) n += r.event == audit_events::kContributionSpent;
  return n;
}

TEST(SpentContributionsTest, ARetryCannotHaveTheSiteSendTheSameUpdateAgain) {
  const std::string path = LedgerPath("retry");
  auto egress = OpenEgress(path);
  ASSERT_NE(egress, nullptr);
  SpentContributions spent;
  const v1::RoundPlan first = Plan(1, 77);
  ASSERT_TRUE(spent.Check(first).ok());
  ASSERT_TRUE(spent.Spend(first, EgressRecorder(egress.get())).ok());
  // The plan that spent it may be answered again (a rejoin in its own round), once on record.
  EXPECT_TRUE(spent.Check(first).ok());
  EXPECT_TRUE(spent.Spend(first, EgressRecorder(egress.get())).ok());
  EXPECT_EQ(SpentRecords(path), 1);
  // A retry with the same model and seed would be the same update in a second sum.
  const v1::RoundPlan same = Plan(2, 77);
  Status refused = spent.Check(same);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("already sent under another plan"));
  EXPECT_EQ(spent.Spend(same, EgressRecorder(egress.get())).code(),
            absl::StatusCode::kInvalidArgument);
  // Nor may another round plan the same model and seed (the round is not what matters).
  v1::RoundPlan later = Plan(1, 77);
  later.set_round(kRound + 1);
  EXPECT_EQ(spent.Check(later).code(), absl::StatusCode::kInvalidArgument);
  // A retry that trains from another seed, or with other settings, is a new contribution.
  EXPECT_TRUE(spent.Check(Plan(2, 78)).ok());
  v1::RoundPlan other_rate = Plan(2, 77);
  other_rate.mutable_training()->set_learning_rate(0.02);
  EXPECT_TRUE(spent.Check(other_rate).ok());
  EXPECT_NE(UpdateKey(other_rate), UpdateKey(same));
  // A restarted site remembers from its egress ledger.
  egress.reset();
  auto restarted = SpentContributions::FromEgressLedger(path);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ(restarted->size(), 1u);
  EXPECT_EQ(restarted->Check(same).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(restarted->Check(first).ok());
  // A new site has spent nothing.
  auto fresh = SpentContributions::FromEgressLedger(LedgerPath("fresh"));
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->size(), 0u);
}

// Many updates, spent in an order unlike their keys' and read back from the ledger: each is
// found, its own plan is answered again and a retry under another plan is refused. A record
// whose digests are not SHA-256 hex is damage, not an update.
TEST(SpentContributionsTest, ManyUpdatesAreFoundAfterARestartAndDamagedDigestsAreRefused) {
  const std::string path = LedgerPath("many");
  auto egress = OpenEgress(path);
  ASSERT_NE(egress, nullptr);
  SpentContributions spent;
  for (uint64_t seed = 40; seed > 0; --seed) {
    ASSERT_TRUE(spent.Spend(Plan(1, seed * 7919), EgressRecorder(egress.get())).ok()) << seed;
  }
  EXPECT_EQ(spent.size(), 40u);
  auto check_all = [](const SpentContributions& s) {
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      EXPECT_TRUE(s.Check(Plan(1, seed * 7919)).ok()) << seed;
      EXPECT_EQ(s.Check(Plan(2, seed * 7919)).code(), absl::StatusCode::kInvalidArgument) << seed;
    }
    EXPECT_TRUE(s.Check(Plan(2, 7)).ok());
  };
  check_all(spent);
  EXPECT_EQ(spent.Spend(Plan(2, 7919), EgressRecorder(egress.get())).code(),
            absl::StatusCode::kInvalidArgument);
  egress.reset();
  auto restarted = SpentContributions::FromEgressLedger(path);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ(restarted->size(), 40u);
  check_all(*restarted);

  const std::string damaged = LedgerPath("damaged");
  egress = OpenEgress(damaged);
  ASSERT_NE(egress, nullptr);
  ASSERT_TRUE(EgressRecorder(egress.get())
                  .Append(ContributionSpent(kRound, 1, PlanSha256(Plan(1, 5)), "not hex"))
                  .ok());
  egress.reset();
  auto refused = SpentContributions::FromEgressLedger(damaged);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("not 64 hex digits"));
}

// A site's "training": deterministic in the plan's seed, as LibTorch training with a fixed
// seed is.
RingVector Update(SiteId site, uint64_t seed) {
  std::mt19937_64 rng(seed * 1000003 + site);
  RingVector v = RingVector::Zeros(RingWidth::k32, kLength);
  for (uint32_t& w : v.w32) w = static_cast<uint32_t>(rng() % 1000);
  return v;
}

// One SecAgg+ attempt over 4 sites (k = 3, t = 2, no sum of fewer than 3) in which `inputs`
// upload and the coordinator unmasks whatever it can. Returns the sum.
StatusOr<RingVector> Attempt(const std::map<SiteId, RingVector>& inputs) {
  SecAggParams params;
  params.round = kRound;
  params.num_sites = 4;
  params.degree = 3;
  params.threshold = 2;
  params.min_survivors = 3;
  params.vector_length = kLength;
  ASSIGN_OR_RETURN(params, ResolveParams(params));
  ASSIGN_OR_RETURN(auto server, ServerSession::Create(params));
  std::map<SiteId, std::unique_ptr<ClientSession>> sites;
  for (SiteId id = 1; id <= 4; ++id) {
    ASSIGN_OR_RETURN(sites[id], ClientSession::Create(server->params(), id, nullptr));
    ASSIGN_OR_RETURN(AdvertiseKeys keys, sites[id]->Start());
    RETURN_IF_ERROR(server->OnAdvertiseKeys(keys));
  }
  ASSIGN_OR_RETURN(KeyDirectory directory, server->CloseAdvertiseKeys());
  for (auto& [id, site] : sites) {
    ASSIGN_OR_RETURN(ShareKeys shares, site->OnKeyDirectory(directory));
    RETURN_IF_ERROR(server->OnShareKeys(shares));
  }
  ASSIGN_OR_RETURN(std::vector<ShareDelivery> deliveries, server->CloseShareKeys());
  for (const ShareDelivery& d : deliveries) {
    auto input = inputs.find(d.receiver);
    if (input == inputs.end()) continue;  // this site sends nothing in this attempt
    RETURN_IF_ERROR(sites[d.receiver]->OnShareDelivery(d));
    ASSIGN_OR_RETURN(MaskedInputChunk chunk, sites[d.receiver]->MaskChunk(0, input->second));
    RETURN_IF_ERROR(server->OnMaskedInputChunk(chunk));
  }
  ASSIGN_OR_RETURN(SurvivorList survivors, server->CloseMaskedInput());
  ASSIGN_OR_RETURN(UnmaskRequest request, server->StartUnmask());
  for (SiteId id : survivors.survivors) {
    ASSIGN_OR_RETURN(UnmaskResponse response, sites[id]->OnUnmaskRequest(request));
    RETURN_IF_ERROR(server->OnUnmaskResponse(response));
  }
  ASSIGN_OR_RETURN(SecAggResult result, server->Finish());
  return result.sum;
}

RingVector Minus(RingVector a, const RingVector& b) {
  for (size_t i = 0; i < a.w32.size(); ++i) a.w32[i] -= b.w32[i];
  return a;
}

// The review's attack, by a coordinator that deviates on purpose: it lets all four sites'
// inputs into a sum and unmasks it, then plans a retry of the same round with the same seed and
// leaves site 4 out. Had the three others sent their updates again, the difference of the two
// sums would be site 4's update. Each site refuses that plan, and the retry the sites do join
// (another seed) gives a difference that is not site 4's update.
TEST(SpentContributionsTest, ASiteSendsItsFeatureMomentsUnderOnePlanOnly) {
  // The moments are the same whatever the plan: a second statistics plan (a retry with other
  // seeds, another round, after a restart) could sum them again without another site.
  const std::string path = LedgerPath("moments");
  auto egress = OpenEgress(path);
  ASSERT_NE(egress, nullptr);
  SpentContributions spent;
  v1::RoundPlan first = Plan(1, 77);
  first.set_round(0);
  first.mutable_statistics()->set_features(30);
  ASSERT_TRUE(spent.Spend(first, EgressRecorder(egress.get())).ok());
  EXPECT_TRUE(spent.Check(first).ok());  // the same plan, answered again on a rejoin
  v1::RoundPlan retry = first;
  retry.set_attempt(2);
  retry.mutable_training()->set_seed(78);
  retry.clear_cohort();
  for (const char* site : {"berlin", "paris", "milan"}) retry.add_cohort(site);
  Status refused = spent.Check(retry);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("already sent under another plan"));
  egress.reset();
  auto restarted = SpentContributions::FromEgressLedger(path);
  ASSERT_TRUE(restarted.ok());
  EXPECT_EQ(restarted->Check(retry).code(), absl::StatusCode::kInvalidArgument);
  // Training updates are keyed as before.
  EXPECT_TRUE(restarted->Check(Plan(1, 77)).ok());
}

TEST(SpentContributionsTest, ACoordinatorThatUnmasksAndThenRetriesLearnsNoSiteUpdate) {
  std::map<SiteId, SpentContributions> spent;
  std::map<SiteId, std::unique_ptr<AuditLog>> egress;
  for (SiteId id = 1; id <= 4; ++id) {
    egress[id] = OpenEgress(LedgerPath(absl::StrCat("attack", id)));
    ASSERT_NE(egress[id], nullptr);
  }
  auto contribute = [&](const v1::RoundPlan& plan, std::vector<SiteId> who) {
    std::map<SiteId, RingVector> inputs;
    for (SiteId id : who) {
      if (!spent[id].Spend(plan, EgressRecorder(egress[id].get())).ok())
        continue;  // the site refuses the plan
      inputs[id] = Update(id, plan.training().seed());
    }
    return inputs;
  };
  const v1::RoundPlan first = Plan(1, 77);
  auto sum1 = Attempt(contribute(first, {1, 2, 3, 4}));
  ASSERT_TRUE(sum1.ok()) << sum1.status();

  // What the attack would give without the rule: the same updates again, without site 4.
  std::map<SiteId, RingVector> resent;
  for (SiteId id : {1u, 2u, 3u}) resent[id] = Update(id, 77);
  auto leak = Attempt(resent);
  ASSERT_TRUE(leak.ok()) << leak.status();
  EXPECT_EQ(Minus(*sum1, *leak).w32, Update(4, 77).w32);

  // With the rule: the same seed again gets nothing from anyone.
  std::map<SiteId, RingVector> same = contribute(Plan(2, 77), {1, 2, 3});
  EXPECT_TRUE(same.empty());
  EXPECT_EQ(Attempt(same).status().code(), absl::StatusCode::kFailedPrecondition);
  // A retry the sites do join is a new contribution each.
  auto sum2 = Attempt(contribute(Plan(2, 78), {1, 2, 3}));
  ASSERT_TRUE(sum2.ok()) << sum2.status();
  for (SiteId id = 1; id <= 4; ++id) {
    EXPECT_NE(Minus(*sum1, *sum2).w32, Update(id, 77).w32) << "site " << id;
  }
}

}  // namespace
}  // namespace hansa
