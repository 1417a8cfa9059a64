#include "common/privacy/ledger.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  std::string dir = ::testing::TempDir() + "ledger_test_" + std::to_string(getpid());
  EXPECT_TRUE(MakeDirs(dir).ok());
  std::string path = dir + "/" + name;
  unlink(path.c_str());
  return path;
}

std::vector<double> RoundCurve(double q, double z, int64_t steps) {
  auto rdp = ComputeSampledGaussianRdp(q, z, steps, DefaultRdpOrders());
  EXPECT_TRUE(rdp.ok());
  return *rdp;
}

TEST(PrivacyLedgerTest, SpendsLikeTheAccountantAndRefusesOverBudget) {
  // Each round: 1000 DP-SGD steps at q 0.0025, z 1.3; six rounds = the published 0.7242.
  auto ledger = PrivacyLedger::Open(TempPath("site.json"), {0.75, 1e-5});
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EXPECT_EQ(ledger->Spent().epsilon, 0);
  auto curve = RoundCurve(0.0025, 1.3, 1000);
  for (int r = 1; r <= 6; ++r) ASSERT_TRUE(ledger->Record(r, "dp-sgd", curve).ok()) << r;
  EXPECT_NEAR(ledger->Spent().epsilon, 0.7242234026, 1e-6);
  EXPECT_EQ(ledger->Spent().order, 19);
  // A seventh round would pass 0.75.
  Status st = ledger->Record(7, "dp-sgd", curve);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("over the maximum of 0.75"));
  EXPECT_EQ(ledger->num_rounds(), 6u);
  EXPECT_EQ(ledger->Record(3, "dp-sgd", RoundCurve(0.0025, 100, 1)).code(),
            absl::StatusCode::kInvalidArgument);
}

// A site names each entry by the plan it trained for: the same round number under another plan
// (the next study's round 1, or a coordinator's second plan for a used number) is another
// release and is spent again, also after a reload; only the same plan again is refused.
TEST(PrivacyLedgerTest, TellsPlansUnderOneRoundNumberApart) {
  const std::string path = TempPath("plans.json");
  const auto curve = RoundCurve(0.01, 1.0, 100);
  double one = 0;
  {
    auto ledger = PrivacyLedger::Open(path, {50, 1e-5});
    ASSERT_TRUE(ledger.ok());
    ASSERT_TRUE(ledger->Record(1001, "dp_sgd", curve, "plan-a").ok());
    one = ledger->Spent().epsilon;
    EXPECT_EQ(ledger->Record(1001, "dp_sgd", curve, "plan-a").code(),
              absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(ledger->Record(1001, "dp_sgd", curve, "plan-b").ok());
    EXPECT_EQ(ledger->num_rounds(), 2u);
    EXPECT_GT(ledger->Spent().epsilon, one);
  }
  auto reopened = PrivacyLedger::Open(path, {50, 1e-5});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->num_rounds(), 2u);
  EXPECT_EQ(reopened->Record(1001, "dp_sgd", curve, "plan-b").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(reopened->Record(1001, "dp_sgd", curve, "").ok());  // unnamed: its own entry
  EXPECT_EQ(reopened->num_rounds(), 3u);
}

TEST(PrivacyLedgerTest, SurvivesReload) {
  std::string path = TempPath("coordinator.json");
  auto curve = RoundCurve(0.01, 1.0, 100);
  double spent = 0;
  {
    auto ledger = PrivacyLedger::Open(path, {5, 1e-5});
    ASSERT_TRUE(ledger.ok());
    ASSERT_TRUE(ledger->Record(1, "central-gaussian", curve).ok());
    ASSERT_TRUE(ledger->Record(2, "central-gaussian", curve).ok());
    spent = ledger->Spent().epsilon;
  }
  auto reopened = PrivacyLedger::Open(path, {5, 1e-5});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->num_rounds(), 2u);
  EXPECT_EQ(reopened->Spent().epsilon, spent);  // bit-exact after the JSON round trip
  auto with = reopened->SpentWith(curve);
  ASSERT_TRUE(with.ok());
  EXPECT_GT(with->epsilon, spent);
}

TEST(PrivacyLedgerTest, RejectsCorruptFileAndBadBudget) {
  std::string path = TempPath("corrupt.json");
  ASSERT_TRUE(
      WriteFileAtomically(path, "{\"version\": 1, \"orders\": [2, 3], \"rounds\": []}").ok());
  auto ledger = PrivacyLedger::Open(path, {1, 1e-5});
  EXPECT_EQ(ledger.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(ledger.status().message()), HasSubstr("different RDP orders"));
  ASSERT_TRUE(WriteFileAtomically(path, "not json").ok());
  EXPECT_EQ(PrivacyLedger::Open(path, {1, 1e-5}).status().code(), absl::StatusCode::kDataLoss);
  auto bad = PrivacyLedger::Open(TempPath("x.json"), {1, 2});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("delta 2"));
}

}  // namespace
}  // namespace hansa
