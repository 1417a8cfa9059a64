// The study's GDPR facts in the plan: every plan the writer makes carries them, the plan's
// digest (what a site consents to) changes with them, records keep them bounded, and a site
// whose policy requires a legal basis refuses a plan without one.
#include "common/plan/study_facts.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/policy.h"
#include "common/crypto/sha256.h"
#include "common/plan/plan_writer.h"
#include "proto/plan_digest.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<std::string> kCohort = {"berlin", "milan", "paris"};

v1::StudyFacts Facts() {
  v1::StudyFacts f;
  f.set_purpose("Train a classifier of chest X-rays for pneumonia triage");
  f.set_legal_basis("Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
  f.add_controllers("Charité Berlin");
  f.add_controllers("AP-HP");
  f.set_retention_days(3650);
  f.set_dpia_reference("DPIA-2026-017");
  return f;
}

PlanBasics Basics(const v1::StudyFacts* study) {
  PlanBasics b;
  b.round = 3;
  b.model_name = "simple_cnn";
  b.global_model_sha256 = "ab12";
  b.global_model_bytes = 1000;
  b.cohort = &kCohort;
  b.chunk_bytes = 4096;
  b.study = study;
  return b;
}

v1::RoundPlan TrainingPlan(const v1::StudyFacts* study) {
  static const v1::TrainingSettings training;
  RoundPlanInputs in;
  in.basics = Basics(study);
  in.training = &training;
  in.secure = false;
  return MakeRoundPlan(in);
}

TEST(StudyFactsPlanTest, TrainingAndEvaluationPlansCarryTheFactsAcrossTheWire) {
  const v1::StudyFacts facts = Facts();
  for (const v1::RoundPlan& written : {TrainingPlan(&facts), MakeEvaluationPlan(Basics(&facts))}) {
    v1::RoundPlan read;
    ASSERT_TRUE(read.ParseFromString(written.SerializeAsString()));
    EXPECT_EQ(read.study().purpose(), facts.purpose());
    EXPECT_EQ(read.study().legal_basis(), "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
    EXPECT_THAT(read.study().controllers(), ElementsAre("Charité Berlin", "AP-HP"));
    EXPECT_EQ(read.study().retention_days(), 3650u);
    EXPECT_EQ(read.study().dpia_reference(), "DPIA-2026-017");
    EXPECT_EQ(PlanSha256(read), PlanSha256(written));
  }
  // No facts stated: the plan has none, and its digest is that of a plan written before them.
  EXPECT_FALSE(TrainingPlan(nullptr).has_study());
  const v1::StudyFacts none;
  EXPECT_FALSE(TrainingPlan(&none).has_study());
  EXPECT_EQ(PlanSha256(TrainingPlan(&none)), PlanSha256(TrainingPlan(nullptr)));
}

TEST(StudyFactsPlanTest, TheDigestASiteConsentsToChangesWithEveryFact) {
  const v1::StudyFacts facts = Facts();
  const std::string digest = PlanSha256(TrainingPlan(&facts));
  EXPECT_NE(digest, PlanSha256(TrainingPlan(nullptr)));
  std::vector<v1::StudyFacts> changed(5, facts);
  changed[0].set_purpose(facts.purpose() + ".");
  changed[1].set_legal_basis("Art. 6(1)(a) GDPR");
  changed[2].set_controllers(1, "AP-HP Paris");
  changed[3].set_retention_days(3651);
  changed[4].set_dpia_reference("DPIA-2026-018");
  for (const v1::StudyFacts& other : changed) {
    EXPECT_NE(PlanSha256(TrainingPlan(&other)), digest) << other.ShortDebugString();
    EXPECT_NE(StudyFactsSha256(other), StudyFactsSha256(facts));
  }
  EXPECT_EQ(StudyFactsSha256(Facts()), StudyFactsSha256(facts));
}

TEST(StudyFactsPlanTest, RecordsKeepThemBoundedAndValidUtf8) {
  nlohmann::json j = StudyFactsJson(Facts());
  EXPECT_EQ(j["purpose"], "Train a classifier of chest X-rays for pneumonia triage");
  EXPECT_EQ(j["controllers"], nlohmann::json::array({"Charité Berlin", "AP-HP"}));
  EXPECT_EQ(j["retention_days"], 3650);
  EXPECT_EQ(j["purpose_sha256"],
            ToHex(Sha256("Train a classifier of chest X-rays for pneumonia triage")));
  // A coordinator that sends more than a record keeps: cut, and bytes that are not UTF-8
  // replaced, so the site's ledger can always record what it saw.
  v1::StudyFacts big;
  big.set_purpose(std::string(kMaxPurposeBytes + 100, 'p'));
  big.set_legal_basis("Art. 9\xff");
  for (size_t i = 0; i < kMaxControllers + 5; ++i) big.add_controllers("c" + std::to_string(i));
  nlohmann::json cut = StudyFactsJson(big);
  EXPECT_EQ(cut["purpose"].get<std::string>().size(), kMaxPurposeBytes);
  EXPECT_EQ(cut["legal_basis"], "Art. 9\xEF\xBF\xBD");
  EXPECT_EQ(cut["controllers"].size(), kMaxControllers);
  EXPECT_EQ(cut["dpia_reference"], "");
  EXPECT_EQ(cut["purpose_sha256"], ToHex(Sha256(big.purpose())));  // of the whole purpose
}

TEST(StudyFactsPlanTest, SaysWhichOfPurposeAndLegalBasisIsMissing) {
  EXPECT_EQ(MissingStudyFacts(Facts()), "");
  v1::StudyFacts f = Facts();
  f.set_legal_basis(" \t");
  EXPECT_EQ(MissingStudyFacts(f), "legal_basis");
  f = Facts();
  f.clear_purpose();
  EXPECT_EQ(MissingStudyFacts(f), "purpose");
  EXPECT_EQ(MissingStudyFacts(v1::StudyFacts()), "purpose and legal_basis");
}

SitePolicy Policy(bool require_legal_basis) {
  SitePolicy p;
  p.allowed_models = {"simple_cnn"};
  p.require_secure_aggregation = false;
  p.min_cohort = 1;
  p.require_legal_basis = require_legal_basis;
  return p;
}

TEST(StudyFactsPolicyTest, APlanWithoutALegalBasisIsRefusedWhereThePolicyRequiresOne) {
  const v1::StudyFacts facts = Facts();
  v1::StudyFacts purpose_only = facts;
  purpose_only.clear_legal_basis();
  EXPECT_TRUE(CheckPlan(Policy(true), TrainingPlan(&facts), true).ok());
  EXPECT_TRUE(CheckPlan(Policy(false), TrainingPlan(nullptr), true).ok());
  for (const auto& [plan, missing] : std::vector<std::pair<v1::RoundPlan, std::string>>{
           {TrainingPlan(nullptr), "states no purpose and legal_basis"},
           {TrainingPlan(&purpose_only), "states no legal_basis"},
           {MakeEvaluationPlan(Basics(&purpose_only)), "states no legal_basis"}}) {
    Status st = CheckPlan(Policy(true), plan, /*sends_update=*/plan.has_training());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(missing));
    EXPECT_THAT(std::string(st.message()), HasSubstr("(policy.require_legal_basis); refused"));
  }
}

// policy.purpose_sha256: purpose limitation. A plan for another purpose, a purpose changed by one
// character, or none at all is refused, naming the key; the pinned purpose is accepted.
TEST(StudyFactsPolicyTest, APinnedSiteRefusesAPlanOfAnyOtherPurpose) {
  const v1::StudyFacts facts = Facts();
  SitePolicy pinned = Policy(false);
  pinned.purpose_sha256 = PurposeSha256(facts);
  EXPECT_TRUE(CheckPlan(pinned, TrainingPlan(&facts), true).ok());
  v1::StudyFacts other = facts, changed = facts;
  other.set_purpose("Predict the length of stay");
  changed.set_purpose(facts.purpose() + ".");
  for (const v1::RoundPlan& plan : {TrainingPlan(&other), TrainingPlan(&changed),
                                    TrainingPlan(nullptr), MakeEvaluationPlan(Basics(&other))}) {
    Status st = CheckPlan(pinned, plan, /*sends_update=*/plan.has_training());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()),
                HasSubstr("round 3's study purpose (SHA-256 " + PurposeSha256(plan.study()) +
                          ") is not the one this site takes part for (policy.purpose_sha256 = " +
                          pinned.purpose_sha256 + "); refused"));
  }
}

}  // namespace
}  // namespace hansa
