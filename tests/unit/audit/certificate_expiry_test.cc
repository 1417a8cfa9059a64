// The audit log and a certificate that expires while it is open: no record is dated past the
// signer certificate's end, where verification would refuse the whole log.
#include <string>

#include "common/audit/audit_log.h"
#include "common/audit/verify.h"
#include "common/clock/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

using ::hansa::testing::MakeTempDir;
using ::hansa::testing::TestFederation;
using ::testing::HasSubstr;

TEST(AuditCertificateExpiryTest, NoRecordIsSignedAfterTheCertificateExpired) {
  const TestFederation& fed = TestFederation::Get();
  const std::string path = MakeTempDir("audit_expiry") + "/audit.jsonl";
  const absl::Time end = fed.coordinator().cert.NotAfter();
  FakeClock clock(end - absl::Seconds(2));
  AuditLogOptions options;
  options.clock = [&clock] { return clock.Now(); };
  auto log = AuditLog::Open(path, fed.coordinator().Key(), fed.coordinator().cert, options);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append("a", nlohmann::json::object()).ok());
  clock.Advance(absl::Seconds(2));  // the last second of its validity still signs
  ASSERT_TRUE((*log)->Append("b", nlohmann::json::object()).ok());
  clock.Advance(absl::Seconds(1));
  auto late = (*log)->Append("c", nlohmann::json::object());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(late.status().message()),
              HasSubstr("the certificate of 'coordinator' that signs it expired at " +
                        FormatCertificateTime(end)));
  EXPECT_EQ((*log)->size(), 2);
  log->reset();
  // Before, the third record was written and the log failed verification at it ("the record's
  // time is outside the signer certificate's validity").
  auto records = ReadVerifiedAuditLog(path, fed.ca());
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2u);
}

}  // namespace
}  // namespace hansa
