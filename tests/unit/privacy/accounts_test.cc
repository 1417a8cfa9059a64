// PrivacyAccounts: pricing a round plan, the budget check, booking per (round, attempt) with its
// audit record, and reopening the ledgers from disk.
#include "common/privacy/accounts.h"

#include <unistd.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/fileio/fileio.h"
#include "common/plan/plan_writer.h"
#include "common/privacy/ddg.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "accounts_test_" + std::to_string(getpid()) + name;
  EXPECT_TRUE(MakeDirs(dir).ok());
  unlink((dir + "/client.json").c_str());
  unlink((dir + "/record.json").c_str());
  return dir;
}

PrivacyAccounts::Options BothLedgers(const std::string& dir, double client_epsilon,
                                     double record_epsilon) {
  PrivacyAccounts::Options o;
  o.client = PrivacyAccounts::LedgerSpec{dir + "/client.json", {client_epsilon, 1e-5}};
  o.record = PrivacyAccounts::LedgerSpec{dir + "/record.json", {record_epsilon, 1e-5}};
  return o;
}

// A plan with both guarantees: the central Gaussian at z = 2 and 100 DP-SGD steps at q 0.01.
v1::RoundPlan PlanWithBoth() {
  v1::RoundPlan plan;
  plan.set_round(3);
  DdgParams ddg;
  ddg.noise_multiplier = 2.0;
  SetPrivacyPlan(ddg, 1e-5, plan.mutable_privacy(), kCentralGaussian);
  v1::RecordPrivacyPlan* r = plan.mutable_record_privacy();
  r->set_clip_norm(1.0);
  r->set_noise_multiplier(1.1);
  r->set_sampling_rate(0.01);
  r->set_steps(100);
  r->set_delta(1e-5);
  return plan;
}

// Collects what Book hands on for the caller's log.
struct Log {
  std::vector<AuditEvent> events;
  PrivacyAccounts::RecordFn fn() {
    return [this](AuditEvent e) {
      events.push_back(std::move(e));
      return absl::OkStatus();
    };
  }
};

TEST(PrivacyAccountsTest, PricesEachGuaranteeThePlanAsksFor) {
  auto both = PrivacyAccounts::Price(PlanWithBoth(), 1000);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->client_mechanism, kCentralGaussian);
  EXPECT_EQ(both->client, *RoundRdpOfPlan(PlanWithBoth().privacy(), 1000));
  EXPECT_EQ(both->record, *RecordRoundRdp(PlanWithBoth().record_privacy()));

  v1::RoundPlan none;
  auto free = PrivacyAccounts::Price(none, 1000);
  ASSERT_TRUE(free.ok());
  EXPECT_TRUE(free->client.empty());
  EXPECT_TRUE(free->record.empty());

  v1::RoundPlan bad = PlanWithBoth();
  bad.mutable_privacy()->set_mechanism("laplace");
  Status unknown = PrivacyAccounts::Price(bad, 1000).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("client-level privacy"));
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("laplace"));
}

TEST(PrivacyAccountsTest, FitsUntilABudgetWouldBePassedAndNamesIt) {
  const std::string dir = FreshDir("fits");
  auto cost = PrivacyAccounts::Price(PlanWithBoth(), 1000);
  ASSERT_TRUE(cost.ok());
  // A record-level budget big enough for one round but not two.
  auto one = PrivacyAccounts::Open(BothLedgers(dir, 1000, 1e9));
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(one->Book(1, 1, *cost, Log().fn()).ok());
  const double after_one = one->record()->Spent().epsilon;
  const double after_two = one->record()->SpentWith(cost->record)->epsilon;
  ASSERT_GT(after_two, after_one);
  auto tight =
      PrivacyAccounts::Open(BothLedgers(FreshDir("tight"), 1000, (after_one + after_two) / 2));
  ASSERT_TRUE(tight.ok());
  EXPECT_TRUE(tight->CheckFits(*cost).ok());
  Log log;
  ASSERT_TRUE(tight->Book(1, 1, *cost, log.fn()).ok());
  Status refused = tight->CheckFits(*cost);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("record-level: "));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("over the maximum"));
  // Booking past the budget is refused too, and changes nothing.
  Status booked = tight->Book(1, 2, *cost, log.fn());
  EXPECT_EQ(booked.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(tight->record()->num_rounds(), 1u);
  // A plan without record-level privacy costs nothing there and still fits.
  v1::RoundPlan client_only = PlanWithBoth();
  client_only.clear_record_privacy();
  auto client_cost = PrivacyAccounts::Price(client_only, 1000);
  ASSERT_TRUE(client_cost.ok());
  EXPECT_TRUE(tight->CheckFits(*client_cost).ok());
}

TEST(PrivacyAccountsTest, BooksOncePerRoundAndAttemptAndHandsOnTheAuditRecord) {
  const std::string dir = FreshDir("book");
  auto accounts = PrivacyAccounts::Open(BothLedgers(dir, 1000, 1000));
  ASSERT_TRUE(accounts.ok());
  auto cost = PrivacyAccounts::Price(PlanWithBoth(), 1000);
  ASSERT_TRUE(cost.ok());
  Log log;
  ASSERT_TRUE(accounts->Book(3, 1, *cost, log.fn()).ok());
  ASSERT_EQ(log.events.size(), 2u);
  EXPECT_EQ(log.events[0].fields["guarantee"], "client-level");
  EXPECT_EQ(log.events[1].fields["guarantee"], "record-level");
  EXPECT_EQ(log.events[0].fields["round"], 3);
  EXPECT_DOUBLE_EQ(log.events[0].fields["epsilon"].get<double>(),
                   accounts->client()->Spent().epsilon);
  const double once = accounts->client()->Spent().epsilon;
  // The same attempt again: no second entry, but its record is handed on.
  ASSERT_TRUE(accounts->Book(3, 1, *cost, log.fn()).ok());
  EXPECT_EQ(accounts->client()->num_rounds(), 1u);
  EXPECT_EQ(accounts->record()->num_rounds(), 1u);
  EXPECT_EQ(accounts->client()->Spent().epsilon, once);
  EXPECT_EQ(log.events.size(), 4u);
  // A retry of the round is a release of its own.
  ASSERT_TRUE(accounts->Book(3, 2, *cost, log.fn()).ok());
  EXPECT_EQ(accounts->client()->num_rounds(), 2u);
  EXPECT_GT(accounts->client()->Spent().epsilon, once);
  // Another plan under a number already booked (a site's next study, or a coordinator that
  // re-plans round 3 attempt 2) is booked too; the same plan again is not.
  const double two = accounts->client()->Spent().epsilon;
  ASSERT_TRUE(accounts->Book(3, 2, *cost, log.fn(), "next-study-plan").ok());
  EXPECT_EQ(accounts->client()->num_rounds(), 3u);
  EXPECT_EQ(accounts->record()->num_rounds(), 3u);
  EXPECT_GT(accounts->client()->Spent().epsilon, two);
  ASSERT_TRUE(accounts->Book(3, 2, *cost, log.fn(), "next-study-plan").ok());
  EXPECT_EQ(accounts->client()->num_rounds(), 3u);
  // Attempts a ledger cannot tell apart are refused, not folded into another's entry.
  EXPECT_EQ(accounts->Book(3, 0, *cost, log.fn()).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(accounts->Book(3, PrivacyAccounts::kAttempts, *cost, log.fn()).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(*PrivacyAccounts::LedgerEntry(3, 2), 3002);
  // Rounds whose entry would overflow into another's: refused, the largest that fits numbered.
  const int64_t last = (std::numeric_limits<int64_t>::max() - PrivacyAccounts::kAttempts) /
                       PrivacyAccounts::kAttempts;
  EXPECT_EQ(*PrivacyAccounts::LedgerEntry(last, 999), last * 1000 + 999);
  for (int64_t round : {last + 1, int64_t{1} << 62, std::numeric_limits<int64_t>::max(),
                        int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    EXPECT_EQ(PrivacyAccounts::LedgerEntry(round, 1).status().code(), absl::StatusCode::kInternal)
        << round;
    EXPECT_EQ(accounts->Book(round, 1, *cost, log.fn()).code(), absl::StatusCode::kInternal);
  }
  EXPECT_EQ(accounts->client()->num_rounds(), 3u);
  // The caller's log failing fails the booking.
  Status failed =
      accounts->Book(4, 1, *cost, [](AuditEvent) { return absl::UnavailableError("disk full"); });
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
}

TEST(PrivacyAccountsTest, ReopensWhatWasBookedFromDisk) {
  const std::string dir = FreshDir("reopen");
  auto cost = PrivacyAccounts::Price(PlanWithBoth(), 1000);
  ASSERT_TRUE(cost.ok());
  double client = 0, record = 0;
  {
    auto accounts = PrivacyAccounts::Open(BothLedgers(dir, 1000, 1000));
    ASSERT_TRUE(accounts.ok());
    ASSERT_TRUE(accounts->Book(1, 1, *cost, Log().fn()).ok());
    ASSERT_TRUE(accounts->Book(2, 1, *cost, Log().fn()).ok());
    client = accounts->client()->Spent().epsilon;
    record = accounts->record()->Spent().epsilon;
  }
  auto reopened = PrivacyAccounts::Open(BothLedgers(dir, 1000, 1000));
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(reopened->client()->num_rounds(), 2u);
  EXPECT_DOUBLE_EQ(reopened->client()->Spent().epsilon, client);
  EXPECT_DOUBLE_EQ(reopened->record()->Spent().epsilon, record);
  // What was booked before stays booked once.
  ASSERT_TRUE(reopened->Book(2, 1, *cost, Log().fn()).ok());
  EXPECT_EQ(reopened->record()->num_rounds(), 2u);
  // Only the ledgers asked for are opened.
  PrivacyAccounts::Options record_only;
  record_only.record = PrivacyAccounts::LedgerSpec{dir + "/record.json", {1000, 1e-5}};
  auto partial = PrivacyAccounts::Open(record_only);
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->client(), nullptr);
  ASSERT_NE(partial->record(), nullptr);
  EXPECT_EQ(partial->record()->num_rounds(), 2u);
  // A malformed ledger says which one it is.
  ASSERT_TRUE(WriteFileAtomically(dir + "/client.json", "{not json").ok());
  Status broken = PrivacyAccounts::Open(BothLedgers(dir, 1000, 1000)).status();
  EXPECT_EQ(broken.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(broken.message()), HasSubstr("client-level privacy ledger"));
}

}  // namespace
}  // namespace hansa
