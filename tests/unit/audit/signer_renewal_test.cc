// A log outlives its signer's certificate: opened with a renewed certificate for the same key
// and subject, AuditLog hands the log over with a signer_renewed record; the verifier follows
// it and refuses every other way of changing signers mid-log.
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/audit/audit_log.h"
#include "common/audit/events.h"
#include "common/audit/reconcile.h"
#include "common/audit/record.h"
#include "common/audit/verify.h"
#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

using ::hansa::testing::Identity;
using ::hansa::testing::MakeTempDir;
using ::hansa::testing::TestFederation;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const TestFederation& Fed() { return TestFederation::Get(); }

std::vector<std::string> Lines(const std::string& path) {
  auto contents = ReadFile(path);
  EXPECT_TRUE(contents.ok()) << contents.status();
  std::vector<std::string> lines = absl::StrSplit(*contents, '\n', absl::SkipEmpty());
  return lines;
}

std::string Join(const std::vector<std::string>& lines) {
  return absl::StrCat(absl::StrJoin(lines, "\n"), "\n");
}

AuditRecord Parse(const std::string& line) {
  auto record = ParseRecordLine(line);
  EXPECT_TRUE(record.ok()) << record.status();
  return *record;
}

// Appends `n` update_received records to the log at `path`, opened as `who`.
void AppendAs(const std::string& path, const Identity& who, int n) {
  auto log = AuditLog::Open(path, who.Key(), who.cert);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE((*log)->Append(UpdateReceived(i + 1, "berlin", 100, std::string(64, 'a'))).ok());
  }
}

// A record signed by `signer`'s key, chained after the last of `lines`.
std::string SignedAfter(const std::vector<std::string>& lines, AuditRecord record,
                        const Identity& signer) {
  const AuditRecord last = Parse(lines.back());
  record.seq = last.seq + 1;
  record.time = last.time;
  record.prev = LineDigest(lines.back());
  record.sig = absl::BytesToHexString(*signer.Key().Sign(*CanonicalRecordBytes(record)));
  return *FormatRecordLine(record);
}

// A signer_renewed record that hands the log over from `previous` to `renewed`, signed by
// `signer`'s key.
std::string Renewal(const std::vector<std::string>& lines, const Identity& previous,
                    const Identity& renewed, const Identity& signer) {
  AuditEvent event = SignerRenewed(previous.cert, renewed.cert);
  AuditRecord record;
  record.event = event.name;
  record.fields = event.fields;
  record.signer = renewed.cert.Sha256Fingerprint();
  record.certificate_pem = renewed.cert.ToPem();
  return SignedAfter(lines, record, signer);
}

Status Verify(const std::vector<std::string>& lines) {
  return VerifyAuditLogContents(Join(lines), Fed().ca(), "audit.jsonl").status();
}

TEST(SignerRenewalTest, ARenewedCertificateContinuesTheLogOnRecord) {
  const Identity& old = Fed().coordinator();
  const Identity renewed = Fed().Renewed(old);
  const std::string path = MakeTempDir("renewal") + "/audit.jsonl";
  AppendAs(path, old, 3);
  AppendAs(path, renewed, 2);
  AppendAs(path, renewed, 1);  // reopened with the same certificate: nothing to hand over

  const std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 7u);
  const AuditRecord handover = Parse(lines[3]);
  EXPECT_EQ(handover.event, "signer_renewed");
  EXPECT_EQ(handover.signer, renewed.cert.Sha256Fingerprint());
  EXPECT_EQ(handover.certificate_pem, renewed.cert.ToPem());
  EXPECT_EQ(handover.fields["previous_signer"], old.cert.Sha256Fingerprint());
  EXPECT_EQ(handover.fields["serial"], renewed.cert.SerialHex());
  EXPECT_EQ(handover.fields["not_after"], FormatCertificateTime(renewed.cert.NotAfter()));
  EXPECT_EQ(Parse(lines[2]).signer, old.cert.Sha256Fingerprint());
  for (size_t i = 4; i < lines.size(); ++i) {
    EXPECT_EQ(Parse(lines[i]).signer, renewed.cert.Sha256Fingerprint()) << i;
    EXPECT_EQ(Parse(lines[i]).certificate_pem, "") << i;
  }

  auto summary = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->records, 7);
  EXPECT_EQ(summary->signer_fingerprint, renewed.cert.Sha256Fingerprint());
  EXPECT_THAT(summary->earlier_signers, ElementsAre(old.cert.Sha256Fingerprint()));
  EXPECT_EQ(summary->events.at("signer_renewed"), 1);
  EXPECT_THAT(summary->ToText(), HasSubstr("renewed 1 time (same key; earlier certificates " +
                                           old.cert.Sha256Fingerprint()));

  // A pin of either certificate ties the log to its signer; any other does not.
  VerifyOptions pinned;
  pinned.expected_fingerprint = old.cert.Sha256Fingerprint();
  EXPECT_TRUE(VerifyAuditLog(path, Fed().ca(), pinned).ok());
  pinned.expected_fingerprint = renewed.cert.Sha256Fingerprint();
  EXPECT_TRUE(VerifyAuditLog(path, Fed().ca(), pinned).ok());
  pinned.expected_fingerprint = Fed().site("berlin").cert.Sha256Fingerprint();
  EXPECT_EQ(VerifyAuditLog(path, Fed().ca(), pinned).status().code(), absl::StatusCode::kDataLoss);
  // The renewed certificate is a coordinator's too; a site role fails on the first one.
  VerifyOptions as_site;
  as_site.usage = CertificateUsage::kTlsClient;
  EXPECT_EQ(VerifyAuditLog(path, Fed().ca(), as_site).status().code(), absl::StatusCode::kDataLoss);
  std::vector<AuditRecord> records;
  for (const std::string& line : lines) records.push_back(Parse(line));
  EXPECT_EQ(CurrentSignerCertificate(records), renewed.cert.ToPem());
  EXPECT_TRUE(CheckSignerUsage(records, Fed().ca(), CertificateUsage::kTlsServer).ok());
  Status usage = CheckSignerUsage(records, Fed().ca(), CertificateUsage::kTlsClient);
  EXPECT_THAT(std::string(usage.message()), HasSubstr("record seq 0: signer certificate"));
}

TEST(SignerRenewalTest, EachRenewalIsOneMoreHandover) {
  const Identity& first = Fed().site("berlin");
  const Identity second = Fed().Renewed(first);
  const Identity third = Fed().Renewed(second);
  const std::string path = MakeTempDir("renewal") + "/egress.jsonl";
  AppendAs(path, first, 1);
  AppendAs(path, second, 1);
  AppendAs(path, third, 1);
  VerifyOptions as_site;
  as_site.usage = CertificateUsage::kTlsClient;
  as_site.expected_signer = "berlin";
  auto summary = VerifyAuditLog(path, Fed().ca(), as_site);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->records, 5);
  EXPECT_EQ(summary->signer_fingerprint, third.cert.Sha256Fingerprint());
  EXPECT_THAT(summary->earlier_signers,
              ElementsAre(first.cert.Sha256Fingerprint(), second.cert.Sha256Fingerprint()));
  EXPECT_THAT(summary->ToText(), HasSubstr("renewed 2 times"));
}

TEST(SignerRenewalTest, TheWriterRefusesAnotherKeyAnotherSubjectAndAnOlderCertificate) {
  const Identity& old = Fed().coordinator();
  const std::string path = MakeTempDir("renewal") + "/audit.jsonl";
  AppendAs(path, old, 2);

  const Identity rekeyed = Fed().Rekeyed(old);
  auto other_key = AuditLog::Open(path, rekeyed.Key(), rekeyed.cert);
  EXPECT_EQ(other_key.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other_key.status().message()), HasSubstr("holds another key"));
  EXPECT_THAT(std::string(other_key.status().message()), HasSubstr("a new key starts a new one"));

  auto other_subject = AuditLog::Open(path, Fed().site("berlin").Key(), Fed().site("berlin").cert);
  EXPECT_EQ(other_subject.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other_subject.status().message()), HasSubstr("another subject"));
  EXPECT_EQ(Lines(path).size(), 2u);  // nothing written by a refused writer

  AppendAs(path, Fed().Renewed(old), 1);
  auto older = AuditLog::Open(path, old.Key(), old.cert);
  EXPECT_EQ(older.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(older.status().message()), HasSubstr("is an older one"));
  EXPECT_EQ(Lines(path).size(), 4u);

  // Only Open() writes a handover.
  auto log = AuditLog::Open(path, Fed().Renewed(old).Key(), Fed().Renewed(old).cert);
  ASSERT_TRUE(log.ok()) << log.status();
  auto forged = (*log)->Append("signer_renewed", {{"previous_signer", "x"}});
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SignerRenewalTest, TheVerifierRefusesEveryOtherChangeOfSigner) {
  const Identity& coordinator = Fed().coordinator();
  const Identity& mallory = Fed().site("mallory");
  const std::string path = MakeTempDir("renewal") + "/audit.jsonl";
  AppendAs(path, coordinator, 3);
  const std::vector<std::string> lines = Lines(path);
  ASSERT_TRUE(Verify(lines).ok());

  auto refused = [&](const std::string& line) {
    std::vector<std::string> with = lines;
    with.push_back(line);
    Status st = Verify(with);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    return std::string(st.message());
  };
  // The real handover verifies.
  const Identity renewed = Fed().Renewed(coordinator);
  {
    std::vector<std::string> with = lines;
    with.push_back(Renewal(lines, coordinator, renewed, coordinator));
    EXPECT_TRUE(Verify(with).ok()) << Verify(with);
  }
  // Another participant's certificate, under its own key: not a coordinator's, and even where
  // any role is allowed, another subject.
  EXPECT_THAT(refused(Renewal(lines, coordinator, mallory, mallory)),
              HasSubstr("line 4 (seq 3): signer certificate: certificate of 'mallory' is not "
                        "allowed for TLS server authentication"));
  {
    std::vector<std::string> with = lines;
    with.push_back(Renewal(lines, coordinator, mallory, mallory));
    VerifyOptions any;
    any.usage = CertificateUsage::kAny;
    Status st = VerifyAuditLogContents(Join(with), Fed().ca(), "audit.jsonl", any).status();
    EXPECT_THAT(std::string(st.message()),
                HasSubstr("line 4 (seq 3): signer_renewed: the certificate for 'mallory'"));
  }
  // A certificate from the federation CA for the coordinator's name but another key: even
  // a CA that issued it cannot hand a log to a key that did not sign it.
  const Identity rekeyed = Fed().Rekeyed(coordinator);
  EXPECT_THAT(refused(Renewal(lines, coordinator, rekeyed, rekeyed)),
              HasSubstr("holds another key"));
  // The same key, but the certificate comes from another CA.
  const Identity foreign = Fed().Renewed(coordinator, /*foreign=*/true);
  EXPECT_THAT(refused(Renewal(lines, coordinator, foreign, coordinator)),
              HasSubstr("line 4 (seq 3): signer certificate"));
  // A handover that does not name the certificate it follows.
  EXPECT_THAT(refused(Renewal(lines, mallory, renewed, coordinator)),
              HasSubstr("does not name the certificate it follows"));
  // A handover to the certificate already signing.
  EXPECT_THAT(refused(Renewal(lines, coordinator, coordinator, coordinator)),
              HasSubstr("already signs the log"));
  // A certificate embedded in any other record.
  {
    AuditRecord record;
    record.event = "update_received";
    record.fields = {{"round", 9}};
    record.signer = renewed.cert.Sha256Fingerprint();
    record.certificate_pem = renewed.cert.ToPem();
    EXPECT_THAT(refused(SignedAfter(lines, record, coordinator)),
                HasSubstr("only the first record and signer_renewed records may carry"));
  }
  // After the handover, a record that still names the old certificate.
  {
    std::vector<std::string> with = lines;
    with.push_back(Renewal(lines, coordinator, renewed, coordinator));
    AuditRecord record;
    record.event = "update_received";
    record.fields = {{"round", 9}};
    record.signer = coordinator.cert.Sha256Fingerprint();
    with.push_back(SignedAfter(with, record, coordinator));
    Status st = Verify(with);
    EXPECT_THAT(std::string(st.message()), HasSubstr("line 5 (seq 4): signed by certificate " +
                                                     coordinator.cert.Sha256Fingerprint()));
  }
  // A log that begins with a handover has lost its beginning.
  {
    AuditEvent event = SignerRenewed(coordinator.cert, renewed.cert);
    AuditRecord record;
    record.event = event.name;
    record.fields = event.fields;
    record.prev = kGenesisPrev;
    record.time = Parse(lines[0]).time;
    record.signer = renewed.cert.Sha256Fingerprint();
    record.certificate_pem = renewed.cert.ToPem();
    record.sig = absl::BytesToHexString(*coordinator.Key().Sign(*CanonicalRecordBytes(record)));
    Status st = Verify({*FormatRecordLine(record)});
    EXPECT_THAT(std::string(st.message()), HasSubstr("the first record is a signer_renewed"));
  }
}

// A site's ledger renewed mid-federation: the coordinator admitted the site under both
// certificates, and reconcile finds no difference of identity.
TEST(SignerRenewalTest, ReconcileAcceptsEveryCertificateThatSignedTheLedger) {
  const Identity& berlin = Fed().site("berlin");
  const Identity renewed = Fed().Renewed(berlin);
  const std::string dir = MakeTempDir("renewal");
  {
    auto log = AuditLog::Open(dir + "/egress.jsonl", berlin.Key(), berlin.cert);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append(MessageSent("join", 0, 10, std::string(64, 'b'))).ok());
  }
  {
    auto log = AuditLog::Open(dir + "/egress.jsonl", renewed.Key(), renewed.cert);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->Append(MessageSent("join", 0, 10, std::string(64, 'c'))).ok());
  }
  {
    auto log =
        AuditLog::Open(dir + "/audit.jsonl", Fed().coordinator().Key(), Fed().coordinator().cert);
    ASSERT_TRUE(log.ok());
    for (const Identity* who : {&berlin, &renewed}) {
      ParticipantFields p{"berlin", "Charité Berlin", "DE", who->cert.Sha256Fingerprint()};
      ASSERT_TRUE((*log)->Append(SiteAdmitted(p)).ok());
    }
  }
  auto result = Reconcile(dir + "/audit.jsonl", dir + "/egress.jsonl", Fed().ca());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->site, "berlin");
  EXPECT_EQ(result->site_fingerprint, renewed.cert.Sha256Fingerprint());
  EXPECT_TRUE(result->differences.empty()) << result->differences.front().description;

  // A certificate that never signed the ledger is still a difference.
  {
    auto log =
        AuditLog::Open(dir + "/audit.jsonl", Fed().coordinator().Key(), Fed().coordinator().cert);
    ASSERT_TRUE(log.ok());
    const Identity rekeyed = Fed().Rekeyed(berlin);
    ParticipantFields p{"berlin", "Charité Berlin", "DE", rekeyed.cert.Sha256Fingerprint()};
    ASSERT_TRUE((*log)->Append(SiteAdmitted(p)).ok());
  }
  result = Reconcile(dir + "/audit.jsonl", dir + "/egress.jsonl", Fed().ca());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->differences.size(), 1u);
  EXPECT_EQ(result->differences[0].kind, ReconcileDifference::Kind::kIdentity);
}

}  // namespace
}  // namespace hansa
