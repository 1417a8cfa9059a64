#include "common/audit/jurisdiction.h"

#include "absl/strings/str_cat.h"
#include "common/audit/events.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(JurisdictionTest, DefaultIsTheEuAndTheOtherEeaStates) {
  EXPECT_EQ(EuMemberStates().size(), 27u);
  EXPECT_EQ(DefaultAllowedCountries().size(), 30u);
  for (const char* c : {"DE", "FR", "IT", "GR", "HR", "IS", "LI", "NO"}) {
    EXPECT_THAT(DefaultAllowedCountries(), Contains(c));
  }
  for (const char* c : {"GB", "CH", "US", "EL", "EU"}) {
    EXPECT_THAT(DefaultAllowedCountries(), Not(Contains(c)));
  }
  EXPECT_TRUE(std::is_sorted(DefaultAllowedCountries().begin(), DefaultAllowedCountries().end()));
}

TEST(JurisdictionTest, NonEuSiteIsRefusedWithAReason) {
  EXPECT_TRUE(CheckJurisdiction("berlin", "DE", DefaultAllowedCountries()).ok());
  EXPECT_TRUE(CheckJurisdiction("oslo", "NO", DefaultAllowedCountries()).ok());
  Status st = CheckJurisdiction("boston", "US", DefaultAllowedCountries());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(std::string(st.message()),
            "country US (United States) of 'boston' is not an allowed jurisdiction of this "
            "federation (allowed: EU and EEA member states); a site's jurisdiction is the "
            "country in its certificate: ask the federation operator");
  st = CheckJurisdiction("zurich", "CH", *ExpandCountryList({"EU"}));
  EXPECT_THAT(std::string(st.message()), HasSubstr("CH (Switzerland)"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("allowed: EU member states"));
  EXPECT_EQ(CheckJurisdiction("nowhere", "", DefaultAllowedCountries()).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(JurisdictionTest, ExpandsGroupsAndRejectsBadEntries) {
  auto list = ExpandCountryList({"FR", "DE", "CH", "DE"});
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(*list, ElementsAre("CH", "DE", "FR"));
  EXPECT_EQ(DescribeCountries(*list), "CH, DE, FR");
  auto eea = ExpandCountryList({"EU", "EEA"});
  EXPECT_EQ(*eea, DefaultAllowedCountries());
  auto bad = ExpandCountryList({"de"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("\"de\""));
  EXPECT_EQ(ExpandCountryList({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountryName("DE"), "Germany");
  EXPECT_EQ(CountryName("XX"), "XX");
}

TEST(AuditEventsTest, BuildersUseTheDocumentedNamesAndTypes) {
  AuditEvent e = UpdateReceived(3, "berlin", 42, "ab");
  EXPECT_EQ(e.name, "update_received");
  EXPECT_EQ(e.fields.dump(), R"({"bytes":42,"round":3,"sha256":"ab","site":"berlin"})");
  EXPECT_EQ(FederationFinished(5).fields.dump(), R"({"rounds":5})");
  RoundPlannedFields plan{2, 1, "p", "m", {"berlin", "paris"}, "secure"};
  plan.secure_aggregation = SecureAggregationFields{2, 1, 2, false, 32, 1.0, 20};
  plan.privacy = nlohmann::json{{"mechanism", "central_gaussian"}, {"noise_multiplier", 1.1}};
  AuditEvent planned = RoundPlanned(plan);
  EXPECT_EQ(planned.fields["cohort"], nlohmann::json({"berlin", "paris"}));
  EXPECT_EQ(planned.fields["secure_aggregation"]["threshold"], 2);
  EXPECT_EQ(planned.fields["privacy"]["noise_multiplier"], 1.1);
  EXPECT_FALSE(RoundPlanned({1, 0, "p", "m", {}, "plaintext"}).fields.contains("privacy"));
  EXPECT_EQ(SiteRefused({"boston", "MGH", "US", "ff"}, "no").fields["reason"], "no");
  EXPECT_EQ(MessageSent("upload", 1, 9, "cd").fields["type"], "upload");
}

TEST(AuditEventsTest, PlanAnswersKeepTheCoordinatorAuditHeadTheyWereShown) {
  const std::string head(64, 'a');
  EXPECT_EQ(PlanAccepted(2, "p", AuditAnchor{17, head}).fields.dump(),
            absl::StrCat(R"({"coordinator_audit_head":{"records":17,"sha256":")", head,
                         R"("},"plan_sha256":"p","round":2})"));
  EXPECT_EQ(PlanRefused(2, "p", "no", AuditAnchor{3, head}).fields["coordinator_audit_head"],
            nlohmann::json({{"records", 3}, {"sha256", head}}));
  // Shown nothing (simulation): no field.
  EXPECT_FALSE(PlanAccepted(2, "p").fields.contains("coordinator_audit_head"));
  // A digest that is not one (or not UTF-8) is kept hex-encoded, so the ledger still writes.
  EXPECT_EQ(
      PlanAccepted(2, "p", AuditAnchor{3, "\xff\x01"}).fields["coordinator_audit_head"]["sha256"],
      "invalid:ff01");
}

}  // namespace
}  // namespace hansa
