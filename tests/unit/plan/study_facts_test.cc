// The study's identifier and GDPR facts in the plan: every plan the writer makes carries them,
// the plan's digest (what a site consents to) changes with them, records keep them bounded, a
// site whose policy requires a legal basis refuses a plan without one, and a site whose policy
// pins a study refuses the plans of any other.
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
  f.set_id("xray-2027.01_a");
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
    EXPECT_EQ(read.study().id(), "xray-2027.01_a");
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
  std::vector<v1::StudyFacts> changed(6, facts);
  changed[0].set_purpose(facts.purpose() + ".");
  changed[1].set_legal_basis("Art. 6(1)(a) GDPR");
  changed[2].set_controllers(1, "AP-HP Paris");
  changed[3].set_retention_days(3651);
  changed[4].set_dpia_reference("DPIA-2026-018");
  changed[5].set_id("xray-2027.02_a");
  for (const v1::StudyFacts& other : changed) {
    EXPECT_NE(PlanSha256(TrainingPlan(&other)), digest) << other.ShortDebugString();
    EXPECT_NE(StudyFactsSha256(other), StudyFactsSha256(facts));
  }
  EXPECT_EQ(StudyFactsSha256(Facts()), StudyFactsSha256(facts));
}

TEST(StudyFactsPlanTest, RecordsKeepThemBoundedAndValidUtf8) {
  nlohmann::json j = StudyFactsJson(Facts());
  EXPECT_EQ(j["id"], "xray-2027.01_a");
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
  big.set_id(std::string(kMaxStudyIdBytes + 1, 's'));
  for (size_t i = 0; i < kMaxControllers + 5; ++i) big.add_controllers("c" + std::to_string(i));
  nlohmann::json cut = StudyFactsJson(big);
  EXPECT_EQ(cut["purpose"].get<std::string>().size(), kMaxPurposeBytes);
  EXPECT_EQ(cut["legal_basis"], "Art. 9\xEF\xBF\xBD");
  EXPECT_EQ(cut["controllers"].size(), kMaxControllers);
  EXPECT_EQ(cut["dpia_reference"], "");
  EXPECT_EQ(cut["id"], std::string(kMaxStudyIdBytes, 's'));
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

// What both configs accept as federation.study and policy.study, and why they refuse the rest.
TEST(StudyIdTest, AcceptsLettersDigitsDotsUnderscoresAndHyphensUpTo64) {
  for (const std::string& id :
       std::vector<std::string>{"fmnist-2027-01", "A", "x.y_z-0", std::string(64, 'a')}) {
    EXPECT_TRUE(CheckStudyId("federation.study", id).ok()) << id;
  }
  for (const auto& [id, why] : std::vector<std::pair<std::string, std::string>>{
           {"", "'policy.study' is empty: name the study, or leave the key out"},
           {std::string(65, 'a'), "'policy.study' has 65 characters, more than 64"},
           {"fmnist 2027", "'policy.study' is 'fmnist 2027', which holds ' '"},
           {"fmnist/2027", "which holds '/'"},
           {"studie-\xc3\xa4", "which holds '\\xc3'"},
           {"a\nb", "'policy.study' is 'a\\nb', which holds '\\n'"}}) {
    Status st = CheckStudyId("policy.study", id);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_THAT(std::string(st.message()), HasSubstr(why));
    EXPECT_THAT(std::string(st.message()),
                HasSubstr("a study's identifier is 1 to 64 letters, digits, '.', '_' or '-'"));
  }
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

// policy.study: a site that takes part in one study refuses, on its answer, a plan of another
// study or of none (training or evaluation), naming both studies and the key; its own study's
// plans are accepted.
TEST(StudyFactsPolicyTest, ASiteThatPinsAStudyRefusesThePlansOfAnyOther) {
  const v1::StudyFacts facts = Facts();
  SitePolicy pinned = Policy(false);
  pinned.study = "xray-2027.01_a";
  EXPECT_TRUE(CheckPlan(pinned, TrainingPlan(&facts), true).ok());
  EXPECT_TRUE(CheckPlan(pinned, MakeEvaluationPlan(Basics(&facts)), false).ok());
  v1::StudyFacts other = facts, unnamed = facts, prefix = facts;
  other.set_id("fmnist-2027-01");
  unnamed.clear_id();
  prefix.set_id("xray-2027.01_a2");
  const std::string tail =
      ", but this site's policy takes part only in study 'xray-2027.01_a' (policy.study); refused";
  for (const auto& [plan, says] : std::vector<std::pair<v1::RoundPlan, std::string>>{
           {TrainingPlan(&other), "round 3 belongs to study 'fmnist-2027-01'" + tail},
           {MakeEvaluationPlan(Basics(&other)), "round 3 belongs to study 'fmnist-2027-01'" + tail},
           {TrainingPlan(&prefix), "round 3 belongs to study 'xray-2027.01_a2'" + tail},
           {TrainingPlan(&unnamed), "round 3 names no study" + tail},
           {TrainingPlan(nullptr), "round 3 names no study" + tail}}) {
    Status st = CheckPlan(pinned, plan, /*sends_update=*/plan.has_training());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_EQ(std::string(st.message()), says);
  }
  // A coordinator's oversized identifier is quoted cut to the bound, not whole.
  v1::StudyFacts big = facts;
  big.set_id(std::string(100000, 'x'));
  Status st = CheckPlan(pinned, TrainingPlan(&big), true);
  EXPECT_EQ(std::string(st.message()),
            "round 3 belongs to study '" + std::string(kMaxStudyIdBytes, 'x') + "'" + tail);
  // No pin: any study, or none.
  EXPECT_TRUE(CheckPlan(Policy(false), TrainingPlan(&other), true).ok());
  EXPECT_TRUE(CheckPlan(Policy(false), TrainingPlan(nullptr), true).ok());
}

}  // namespace
}  // namespace hansa
