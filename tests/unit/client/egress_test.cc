// The egress ledger after a site stopped in the middle of a send: what the next start records,
// and what reconcile then makes of it.
#include "client/egress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/audit/events.h"
#include "common/audit/reconcile.h"
#include "common/audit/verify.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using testing::TestFederation;

const std::string kSha(64, 'c');

std::string FreshLedger(const std::string& name) {
  std::string path = ::testing::TempDir() + "egress_" + name + "/egress.jsonl";
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  return path;
}

std::unique_ptr<AuditLog> OpenLedger(const std::string& path) {
  const auto& site = TestFederation::Get().site("berlin");
  auto log = AuditLog::Open(path, site.Key(), site.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

std::vector<AuditRecord> Records(const std::string& path) {
  auto records = ReadAuditRecordsUnverified(path);
  EXPECT_TRUE(records.ok()) << records.status();
  return records.ok() ? *records : std::vector<AuditRecord>{};
}

TEST(EgressLedgerTest, AnUploadCutShortByAKillIsMarkedFailedAtTheNextStart) {
  // Found by the chaos test: a site SIGKILLed in the middle of its upload left a ledger that
  // said the update was sent, with no send_failed, and reconcile reported a difference.
  const std::string path = FreshLedger("killed_mid_upload");
  {
    auto ledger = OpenLedger(path);
    ASSERT_TRUE(
        EgressRecorder(ledger.get()).Sending(audit_events::kMessageUpload, 3, 636071, kSha).ok());
  }  // the process dies here: no outcome
  auto ledger = OpenLedger(path);
  EgressRecorder egress(ledger.get());
  ASSERT_TRUE(RecordSendCutShort(path, egress).ok());
  std::vector<AuditRecord> records = Records(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].event, audit_events::kSendFailed);
  EXPECT_EQ(records[1].fields["type"], "upload");
  EXPECT_EQ(records[1].fields["round"], 3);
  EXPECT_EQ(records[1].fields["sha256"], kSha);
  EXPECT_THAT(records[1].fields["error"].get<std::string>(),
              HasSubstr("stopped before it knew whether this upload arrived"));
  // A second start finds the send closed and records nothing more.
  ASSERT_TRUE(RecordSendCutShort(path, egress).ok());
  EXPECT_EQ(Records(path).size(), 2u);

  // A coordinator that never got the update: unconfirmed, not a difference.
  const auto& site = TestFederation::Get().site("berlin");
  ReconcileResult lacking = ReconcileRecords({}, records, "berlin", site.cert.Sha256Fingerprint());
  EXPECT_TRUE(lacking.ok()) << lacking.ToText();
  EXPECT_EQ(lacking.unconfirmed, 1);
  // One that got it whole before the site died: it still matches.
  AuditRecord received;
  received.event = audit_events::kUpdateReceived;
  received.fields = {{"round", 3}, {"site", "berlin"}, {"bytes", 636071}, {"sha256", kSha}};
  ReconcileResult got =
      ReconcileRecords({received}, records, "berlin", site.cert.Sha256Fingerprint());
  EXPECT_TRUE(got.ok()) << got.ToText();
  EXPECT_EQ(got.matched, 1);
  EXPECT_EQ(got.unconfirmed, 0);
}

TEST(EgressLedgerTest, ALedgerThatEndsInAnythingButASendIsLeftAsItIs) {
  const std::string path = FreshLedger("clean");
  auto ledger = OpenLedger(path);
  EgressRecorder egress(ledger.get());
  ASSERT_TRUE(RecordSendCutShort(path, egress).ok());  // empty
  EXPECT_FALSE(std::filesystem::exists(path) && !Records(path).empty());
  ASSERT_TRUE(egress.Sending(audit_events::kMessageUpload, 1, 10, kSha).ok());
  ASSERT_TRUE(egress.Append(PlanAccepted(2, kSha)).ok());
  ASSERT_TRUE(RecordSendCutShort(path, egress).ok());
  ASSERT_EQ(Records(path).size(), 2u);
  EXPECT_EQ(Records(path).back().event, audit_events::kPlanAccepted);
}

}  // namespace
}  // namespace hansa
