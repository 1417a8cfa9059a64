#include "common/audit/reconcile.h"

#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/audit/audit_log.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

using ::hansa::testing::Identity;
using ::hansa::testing::MakeTempDir;
using ::hansa::testing::TestFederation;
using ::testing::HasSubstr;
using ::testing::Not;
using Kind = ReconcileDifference::Kind;

const TestFederation& Fed() { return TestFederation::Get(); }

std::string Digest(const std::string& s) { return ToHex(Sha256(s)); }

void Write(const std::string& path, const Identity& who, const std::vector<AuditEvent>& events) {
  auto log = AuditLog::Open(path, who.Key(), who.cert);
  ASSERT_TRUE(log.ok()) << log.status();
  for (const AuditEvent& e : events) ASSERT_TRUE((*log)->Append(e).ok());
}

ParticipantFields Berlin(const std::string& fingerprint) {
  return {"berlin", "Charité Berlin", "DE", fingerprint};
}

class ReconcileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("reconcile");
    coordinator_ = dir_ + "/audit.jsonl";
    egress_ = dir_ + "/egress.jsonl";
    berlin_fp_ = Fed().site("berlin").cert.Sha256Fingerprint();
  }

  // Coordinator events of two rounds with berlin's and paris's updates.
  std::vector<AuditEvent> CoordinatorEvents() {
    return {SiteAdmitted(Berlin(berlin_fp_)),
            SiteAdmitted({"paris", "AP-HP", "FR", Fed().site("paris").cert.Sha256Fingerprint()}),
            UpdateReceived(1, "berlin", 500, Digest("b1")),
            UpdateReceived(1, "paris", 500, Digest("p1")),
            UpdateReceived(2, "berlin", 500, Digest("b2"))};
  }
  std::vector<AuditEvent> LedgerEvents() {
    return {MessageSent("join", 0, 2, Digest("join")),
            PlanAccepted(1, Digest("plan1")),
            MessageSent("upload", 1, 500, Digest("b1")),
            MessageSent("metrics", 1, 40, Digest("m1")),
            PlanAccepted(2, Digest("plan2")),
            MessageSent("upload", 2, 500, Digest("b2"))};
  }

  ReconcileResult Run() {
    auto result = Reconcile(coordinator_, egress_, Fed().ca());
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ReconcileResult{};
  }

  std::string dir_, coordinator_, egress_, berlin_fp_;
};

TEST_F(ReconcileTest, MatchingLogsHaveNoDifferences) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  Write(egress_, Fed().site("berlin"), LedgerEvents());
  ReconcileResult result = Run();
  EXPECT_TRUE(result.ok()) << result.ToText();
  EXPECT_EQ(result.site, "berlin");
  EXPECT_EQ(result.site_fingerprint, berlin_fp_);
  EXPECT_EQ(result.matched, 2);
  EXPECT_EQ(result.unconfirmed, 0);
}

TEST_F(ReconcileTest, UploadTheCoordinatorDidNotRecordIsADifference) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  std::vector<AuditEvent> ledger = LedgerEvents();
  ledger.push_back(MessageSent("upload", 3, 700, Digest("b3")));
  Write(egress_, Fed().site("berlin"), ledger);
  ReconcileResult result = Run();
  ASSERT_EQ(result.differences.size(), 1u) << result.ToText();
  EXPECT_EQ(result.differences[0].kind, Kind::kNotAtCoordinator);
  EXPECT_EQ(result.differences[0].round, 3);
  EXPECT_THAT(result.differences[0].description, HasSubstr("700 bytes"));
  EXPECT_THAT(result.ToText(), HasSubstr("not_at_coordinator: round 3"));
}

TEST_F(ReconcileTest, UpdateMissingFromTheLedgerIsADifference) {
  std::vector<AuditEvent> coordinator = CoordinatorEvents();
  coordinator.push_back(UpdateReceived(3, "berlin", 500, Digest("forged")));
  Write(coordinator_, Fed().coordinator(), coordinator);
  Write(egress_, Fed().site("berlin"), LedgerEvents());
  ReconcileResult result = Run();
  ASSERT_EQ(result.differences.size(), 1u) << result.ToText();
  EXPECT_EQ(result.differences[0].kind, Kind::kNotInLedger);
  EXPECT_EQ(result.differences[0].round, 3);
  EXPECT_EQ(result.matched, 2);
}

TEST_F(ReconcileTest, SizeAndRoundMustMatchToo) {
  Write(coordinator_, Fed().coordinator(),
        {UpdateReceived(1, "berlin", 501, Digest("b1")),
         UpdateReceived(3, "berlin", 500, Digest("b2"))});
  Write(egress_, Fed().site("berlin"), LedgerEvents());
  ReconcileResult result = Run();
  ASSERT_EQ(result.differences.size(), 3u) << result.ToText();
  EXPECT_EQ(result.differences[0].kind, Kind::kSizeMismatch);
  EXPECT_THAT(result.differences[0].description, HasSubstr("501 bytes at the coordinator"));
  EXPECT_EQ(result.differences[1].kind, Kind::kNotInLedger);  // round 3 instead of 2
  EXPECT_EQ(result.differences[2].kind, Kind::kNotAtCoordinator);
  EXPECT_EQ(result.differences[2].round, 2);
}

TEST_F(ReconcileTest, FailedSendIsUnconfirmedNotADifference) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  std::vector<AuditEvent> ledger = LedgerEvents();
  ledger.insert(ledger.begin() + 2, MessageSent("upload", 1, 500, Digest("b1-first")));
  ledger.insert(ledger.begin() + 3, SendFailed("upload", 1, Digest("b1-first"), "UNAVAILABLE"));
  Write(egress_, Fed().site("berlin"), ledger);
  ReconcileResult result = Run();
  EXPECT_TRUE(result.ok()) << result.ToText();
  EXPECT_EQ(result.matched, 2);
  EXPECT_EQ(result.unconfirmed, 1);
}

TEST_F(ReconcileTest, SameUpdateResentAfterAFailedSendMatchesTheConfirmedSend) {
  // A coordinator killed mid-upload, then restarted: the site sends the identical update
  // again (deterministic training), and the coordinator records it once.
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  std::vector<AuditEvent> ledger = LedgerEvents();
  ledger.insert(ledger.begin() + 2, MessageSent("upload", 1, 500, Digest("b1")));
  ledger.insert(ledger.begin() + 3, SendFailed("upload", 1, Digest("b1"), "Broken pipe"));
  Write(egress_, Fed().site("berlin"), ledger);
  ReconcileResult result = Run();
  EXPECT_TRUE(result.ok()) << result.ToText();
  EXPECT_EQ(result.matched, 2);
  EXPECT_EQ(result.unconfirmed, 1);
}

TEST_F(ReconcileTest, SiteAdmittedUnderAnotherCertificateIsADifference) {
  std::vector<AuditEvent> coordinator = CoordinatorEvents();
  coordinator[0] = SiteAdmitted(Berlin(Fed().site("mallory").cert.Sha256Fingerprint()));
  Write(coordinator_, Fed().coordinator(), coordinator);
  Write(egress_, Fed().site("berlin"), LedgerEvents());
  ReconcileResult result = Run();
  ASSERT_EQ(result.differences.size(), 1u);
  EXPECT_EQ(result.differences[0].kind, Kind::kIdentity);
}

// `anchor` signed by `who`, as AuditLog::SignedAnchor signs it.
AuditAnchor SignedBy(AuditAnchor anchor, const Identity& who) {
  auto signature = who.Key().Sign(AuditAnchorStatement(anchor.records, anchor.sha256));
  EXPECT_TRUE(signature.ok()) << signature.status();
  anchor.signature = absl::BytesToHexString(*signature);
  return anchor;
}

// The coordinator's log as it stood after its first `records` lines, as the coordinator shows
// it to a site (signed).
AuditAnchor HeadAfter(const std::string& path, size_t records) {
  std::vector<std::string> lines = absl::StrSplit(*ReadFile(path), '\n', absl::SkipEmpty());
  return SignedBy({static_cast<int64_t>(records), LineDigest(lines.at(records - 1)), {}},
                  Fed().coordinator());
}

// Keeps the first `records` lines of the log.
void Cut(const std::string& path, size_t records) {
  std::vector<std::string> lines = absl::StrSplit(*ReadFile(path), '\n', absl::SkipEmpty());
  lines.resize(records);
  ASSERT_TRUE(WriteFileAtomically(path, absl::StrCat(absl::StrJoin(lines, "\n"), "\n")).ok());
}

TEST_F(ReconcileTest, CoordinatorLogCutBelowAHeadASiteWasShownIsTruncated) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  const AuditAnchor round1 = HeadAfter(coordinator_, 2);  // shown with round 1's plan
  const AuditAnchor round2 = HeadAfter(coordinator_, 4);  // shown with round 2's plan
  std::vector<AuditEvent> ledger = LedgerEvents();
  ledger[1] = PlanAccepted(1, Digest("plan1"), round1);
  ledger[4] = PlanAccepted(2, Digest("plan2"), round2);
  Write(egress_, Fed().site("berlin"), ledger);
  ReconcileResult whole = Run();
  EXPECT_TRUE(whole.ok()) << whole.ToText();
  EXPECT_EQ(whole.heads_shown, 2);
  EXPECT_EQ(whole.heads_confirmed, 2);
  EXPECT_THAT(whole.ToText(), HasSubstr("2 of 2 coordinator audit heads found, 0 differences"));

  // The operator cuts the log after record 3: it still verifies, but berlin saw 4 records.
  Cut(coordinator_, 3);
  ReconcileResult cut = Run();
  EXPECT_EQ(cut.heads_confirmed, 1);
  bool truncated = false;
  for (const ReconcileDifference& d : cut.differences) {
    if (d.kind != Kind::kTruncated) continue;
    truncated = true;
    EXPECT_EQ(d.round, 2);
    EXPECT_THAT(d.description,
                HasSubstr(absl::StrCat("the coordinator's audit log holds 3 records, but site "
                                       "berlin was shown it at 4 records ending in ",
                                       round2.sha256)));
  }
  EXPECT_TRUE(truncated) << cut.ToText();
  EXPECT_THAT(cut.ToText(), HasSubstr("truncated: "));
}

TEST_F(ReconcileTest, HeadTheCoordinatorLogDoesNotHoldIsAMismatch) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  std::vector<AuditEvent> ledger = LedgerEvents();
  ledger[1] = PlanAccepted(1, Digest("plan1"),
                           SignedBy({2, Digest("another log"), {}}, Fed().coordinator()));
  Write(egress_, Fed().site("berlin"), ledger);
  ReconcileResult result = Run();
  ASSERT_EQ(result.differences.size(), 1u) << result.ToText();
  EXPECT_EQ(result.differences[0].kind, Kind::kHeadMismatch);
  EXPECT_EQ(result.differences[0].round, 1);
  EXPECT_THAT(result.differences[0].description,
              HasSubstr(absl::StrCat("record seq 1 of the log has SHA-256 ",
                                     HeadAfter(coordinator_, 2).sha256)));
}

// A site cannot frame the coordinator: a head it made up itself, unsigned or signed with its own
// key, is named as not the coordinator's and does not make the log look cut or rewritten.
TEST_F(ReconcileTest, HeadTheCoordinatorDidNotSignIsNotEvidenceAgainstItsLog) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  const AuditAnchor far{50, Digest("a log fifty records long"), {}};
  std::vector<AuditEvent> ledger = LedgerEvents();
  ledger[1] = PlanAccepted(1, Digest("plan1"), far);
  ledger[4] = PlanAccepted(2, Digest("plan2"), SignedBy(far, Fed().site("berlin")));
  Write(egress_, Fed().site("berlin"), ledger);
  ReconcileResult result = Run();
  EXPECT_EQ(result.heads_shown, 2);
  EXPECT_EQ(result.heads_confirmed, 0);
  ASSERT_EQ(result.differences.size(), 2u) << result.ToText();
  for (const ReconcileDifference& d : result.differences) {
    EXPECT_EQ(d.kind, Kind::kUnsignedHead) << d.description;
    EXPECT_THAT(d.description, HasSubstr("is not the coordinator's"));
  }
  EXPECT_THAT(result.differences[0].description, HasSubstr("no signature of the coordinator"));
  EXPECT_THAT(result.ToText(), Not(HasSubstr("truncated")));
  // The same head signed by the coordinator is evidence: the log is shorter than it.
  ledger[4] = PlanAccepted(2, Digest("plan2"), SignedBy(far, Fed().coordinator()));
  std::filesystem::remove(egress_);
  Write(egress_, Fed().site("berlin"), ledger);
  EXPECT_THAT(Run().ToText(), HasSubstr("truncated: "));
}

TEST_F(ReconcileTest, LogsMustVerifyAndHaveTheirRoles) {
  Write(coordinator_, Fed().coordinator(), CoordinatorEvents());
  Write(egress_, Fed().site("berlin"), LedgerEvents());
  // Swapped arguments: the site's ledger is not a coordinator's audit log.
  auto swapped = Reconcile(egress_, coordinator_, Fed().ca());
  EXPECT_EQ(swapped.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(swapped.status().message()), HasSubstr("TLS server"));
  auto foreign = Reconcile(coordinator_, egress_, Fed().foreign_ca());
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace hansa
