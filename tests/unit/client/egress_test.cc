// The egress ledger after a site stopped in the middle of a send: what the next start records,
// and what reconcile then makes of it.
#include "client/egress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
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

namespace hansa {
namespace {

TEST(EgressValuesTest, AnEvaluationsFiguresAreKeptAndANonFiniteOneIsNull) {
  v1::MetricsReport m;
  m.set_num_examples(120);
  m.set_loss(std::nan(""));
  m.set_accuracy(0.75);
  m.set_classes(2);
  for (uint64_t c : {50, 10, 20, 40}) m.add_confusion(c);
  m.mutable_regression()->set_count(0);  // a classification: no regression sums
  nlohmann::json v = EgressValues(m);
  EXPECT_EQ(v["num_examples"], 120);
  EXPECT_TRUE(v["loss"].is_null());
  EXPECT_EQ(v["accuracy"], 0.75);
  EXPECT_EQ(v["confusion"], nlohmann::json({50, 10, 20, 40}));
  EXPECT_FALSE(v.contains("regression"));
  EXPECT_FALSE(v.contains("positive_scores"));

  const std::string path = FreshLedger("values");
  auto ledger = OpenLedger(path);
  ASSERT_TRUE(EgressRecorder(ledger.get())
                  .Sending(audit_events::kMessageMetrics, 4, m.SerializeAsString(), v)
                  .ok());
  // The ledger still verifies: the record's canonical form holds the figures.
  auto records = ReadVerifiedAuditLog(path, TestFederation::Get().ca(),
                                      {CertificateUsage::kTlsClient, "berlin", "", ""});
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[0].fields["values"]["accuracy"], 0.75);
  EXPECT_EQ((*records)[0].fields["bytes"], m.SerializeAsString().size());
}

TEST(EgressValuesTest, AMaskedUploadCarriesNoFiguresAndAPlaintextOneItsWeightAndLoss) {
  v1::TransferHeader masked;
  masked.set_total_bytes(4096);
  EXPECT_TRUE(EgressValues(masked).is_null());
  v1::TransferHeader plain;
  plain.set_num_examples(512);
  plain.set_train_loss(0.25);
  plain.set_train_seconds(3);
  EXPECT_EQ(EgressValues(plain),
            nlohmann::json({{"num_examples", 512}, {"train_loss", 0.25}, {"train_seconds", 3.0}}));
}

TEST(EgressValuesTest, AJoinIsRecordedOncePerFederationAndSite) {
  const std::string path = FreshLedger("joined");
  auto ledger = OpenLedger(path);
  EgressRecorder egress(ledger.get());
  v1::JoinReply reply;
  reply.set_federation("oncology-eu");
  reply.set_site("berlin");
  reply.set_coordinator_country("DE");
  ASSERT_TRUE(egress.Joined(reply).ok());
  ASSERT_TRUE(egress.Joined(reply).ok());
  reply.set_federation(std::string("next\xff", 5));  // a coordinator's bytes that are not UTF-8
  ASSERT_TRUE(egress.Joined(reply).ok());
  std::vector<AuditRecord> records = Records(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].event, audit_events::kFederationJoined);
  EXPECT_EQ(records[0].fields["federation"], "oncology-eu");
  EXPECT_EQ(records[0].fields["coordinator_country"], "DE");
  EXPECT_EQ(records[1].fields["federation"], "next\xef\xbf\xbd");
  // Without a ledger nothing is recorded and nothing fails.
  EXPECT_TRUE(EgressRecorder(nullptr).Joined(reply).ok());
}

}  // namespace
}  // namespace hansa
