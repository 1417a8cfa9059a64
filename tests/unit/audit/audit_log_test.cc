#include "common/audit/audit_log.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/audit/verify.h"
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

const TestFederation& Fed() { return TestFederation::Get(); }

std::unique_ptr<AuditLog> OpenLog(const std::string& path, const Identity& who,
                                  AuditLogOptions options = {}) {
  auto log = AuditLog::Open(path, who.Key(), who.cert, std::move(options));
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

// A coordinator log of `n` records with varied events.
std::string WriteCoordinatorLog(const std::string& dir, int n) {
  std::string path = dir + "/audit.jsonl";
  auto log = OpenLog(path, Fed().coordinator());
  EXPECT_TRUE(log->Append(FederationStarted({"demo",
                                             std::string(64, 'a'),
                                             "coordinator",
                                             "DE",
                                             "simple_cnn",
                                             3,
                                             2,
                                             "secure",
                                             {"DE", "FR"}}))
                  .ok());
  for (int i = 1; i < n; ++i) {
    auto seq = log->Append(UpdateReceived(i, i % 2 ? "berlin" : "paris", 1000 + i,
                                          ToHex(Sha256(absl::StrCat("update ", i)))));
    EXPECT_TRUE(seq.ok()) << seq.status();
  }
  return path;
}

std::vector<std::string> Lines(const std::string& contents) {
  std::vector<std::string> lines = absl::StrSplit(contents, '\n');
  EXPECT_EQ(lines.back(), "");
  lines.pop_back();
  return lines;
}

std::string Join(const std::vector<std::string>& lines) {
  return absl::StrCat(absl::StrJoin(lines, "\n"), "\n");
}

Status VerifyBytes(const std::string& contents, const Certificate& ca = Fed().ca()) {
  return VerifyAuditLogContents(contents, ca, "audit.jsonl").status();
}

// Re-signs lines[from..] with `signer`'s key, re-chaining prev, optionally claiming to be
// `signer` in the "signer" member; `edit` changes the record at `from` first.
void Resign(std::vector<std::string>& lines, size_t from, const Identity& signer, bool claim_signer,
            const std::function<void(AuditRecord&)>& edit) {
  PrivateKey key = signer.Key();
  for (size_t i = from; i < lines.size(); ++i) {
    auto record = ParseRecordLine(lines[i]);
    ASSERT_TRUE(record.ok());
    if (i == from) edit(*record);
    if (i > 0) record->prev = LineDigest(lines[i - 1]);
    if (claim_signer) record->signer = signer.cert.Sha256Fingerprint();
    record->sig = absl::BytesToHexString(*key.Sign(*CanonicalRecordBytes(*record)));
    lines[i] = *FormatRecordLine(*record);
  }
}

TEST(AuditLogTest, WritesAVerifiableChainWithTheCertificateInTheFirstRecord) {
  std::string path = WriteCoordinatorLog(MakeTempDir("audit"), 4);
  auto contents = ReadFile(path);
  ASSERT_TRUE(contents.ok());
  std::vector<std::string> lines = Lines(*contents);
  ASSERT_EQ(lines.size(), 4u);

  auto first = ParseRecordLine(lines[0]);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->seq, 0);
  EXPECT_EQ(first->prev, std::string(64, '0'));
  EXPECT_EQ(first->event, "federation_started");
  EXPECT_EQ(first->signer, Fed().coordinator().cert.Sha256Fingerprint());
  EXPECT_EQ(first->certificate_pem, Fed().coordinator().cert.ToPem());
  EXPECT_EQ(first->sig.size(), 128u);  // Ed25519: 64 bytes

  auto second = ParseRecordLine(lines[1]);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->seq, 1);
  EXPECT_EQ(second->prev, ToHex(Sha256(lines[0])));
  EXPECT_EQ(second->certificate_pem, "");
  EXPECT_EQ(second->fields["site"], "berlin");
  EXPECT_EQ(second->fields["bytes"], 1001);
  // The signature is plain Ed25519 over the canonical bytes: checkable without Hansa's reader.
  auto key = Fed().coordinator().cert.GetPublicKey();
  EXPECT_TRUE(
      key->Verify(*CanonicalRecordBytes(*second), absl::HexStringToBytes(second->sig)).ok());

  auto summary = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->records, 4);
  EXPECT_EQ(summary->events.at("federation_started"), 1);
  EXPECT_EQ(summary->events.at("update_received"), 3);
  EXPECT_EQ(summary->signer, (SubjectName{"coordinator", "Hansa Operators", "DE"}));
  EXPECT_EQ(summary->head, ToHex(Sha256(lines[3])));
  EXPECT_EQ(summary->first_time, first->time);
  EXPECT_THAT(summary->ToText(), HasSubstr("4 records, chain and signatures verified"));
}

TEST(AuditLogTest, CanonicalFormIsSortedCompactJsonWithoutSig) {
  AuditRecord r;
  r.seq = 7;
  r.time = "2025-01-31T12:00:00.250Z";
  r.event = "update_received";
  r.fields = UpdateReceived(3, "berlin", 42, "ab").fields;
  r.prev = std::string(64, '0');
  r.signer = "ff";
  r.sig = "00";
  EXPECT_EQ(*CanonicalRecordBytes(r),
            "{\"event\":\"update_received\",\"fields\":{\"bytes\":42,\"round\":3,\"sha256\":\"ab\","
            "\"site\":\"berlin\"},\"prev\":\"" +
                std::string(64, '0') +
                "\",\"seq\":7,\"signer\":\"ff\",\"time\":\"2025-01-31T12:00:00.250Z\"}");
  EXPECT_THAT(*FormatRecordLine(r), HasSubstr(",\"seq\":7,\"sig\":\"00\",\"signer\":\"ff\","));
}

TEST(AuditLogTest, RecordTimesAreUtcWithMilliseconds) {
  absl::Time t = absl::FromUnixMillis(1738324800250);
  EXPECT_EQ(FormatRecordTime(t), "2025-01-31T12:00:00.250Z");
  EXPECT_EQ(*ParseRecordTime("2025-01-31T12:00:00.250Z"), t);
  EXPECT_FALSE(ParseRecordTime("2025-01-31T12:00:00Z").ok());
  EXPECT_FALSE(ParseRecordTime("2025-01-31T12:00:00.250+01:00").ok());
}

TEST(AuditLogTest, EveryFlippedByteIsDetectedAtItsOwnLine) {
  std::string path = WriteCoordinatorLog(MakeTempDir("audit"), 3);
  std::string contents = *ReadFile(path);
  ASSERT_TRUE(VerifyBytes(contents).ok());
  int line = 1;
  for (size_t i = 0; i < contents.size(); ++i) {
    std::string tampered = contents;
    tampered[i] ^= 0x01;
    Status st = VerifyBytes(tampered);
    ASSERT_EQ(st.code(), absl::StatusCode::kDataLoss) << "byte " << i << ": " << st;
    ASSERT_THAT(std::string(st.message()), HasSubstr(absl::StrCat("line ", line, " (seq ")))
        << "byte " << i;
    if (contents[i] == '\n') ++line;
  }
}

TEST(AuditLogTest, RemovedRecordIsNamed) {
  std::string contents = *ReadFile(WriteCoordinatorLog(MakeTempDir("audit"), 6));
  std::vector<std::string> lines = Lines(contents);
  std::vector<std::string> without_third = lines;
  without_third.erase(without_third.begin() + 2);
  Status st = VerifyBytes(Join(without_third));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 3 (seq 2): seq is 3"));

  std::vector<std::string> without_first(lines.begin() + 1, lines.end());
  st = VerifyBytes(Join(without_first));
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 1 (seq 0): seq is 1"));
}

TEST(AuditLogTest, SwappedRecordsAreNamed) {
  std::vector<std::string> lines = Lines(*ReadFile(WriteCoordinatorLog(MakeTempDir("audit"), 6)));
  std::swap(lines[3], lines[4]);
  Status st = VerifyBytes(Join(lines));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 4 (seq 3): seq is 4"));
}

TEST(AuditLogTest, RenumberedSwapBreaksThePrevChain) {
  std::vector<std::string> lines = Lines(*ReadFile(WriteCoordinatorLog(MakeTempDir("audit"), 6)));
  // Swap records 3 and 4 but keep seq in order and re-sign with the real key: only the chain
  // of prev digests can notice.
  std::swap(lines[3], lines[4]);
  std::vector<std::string> relabelled;
  PrivateKey key = Fed().coordinator().Key();
  for (size_t i = 0; i < lines.size(); ++i) {
    AuditRecord r = *ParseRecordLine(lines[i]);
    r.seq = static_cast<int64_t>(i);
    r.sig = absl::BytesToHexString(*key.Sign(*CanonicalRecordBytes(r)));
    relabelled.push_back(*FormatRecordLine(r));
  }
  Status st = VerifyBytes(Join(relabelled));
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 4 (seq 3): \"prev\" is not the SHA-256"));
}

TEST(AuditLogTest, RecordResignedByAnotherCaValidKeyIsNamed) {
  std::vector<std::string> lines = Lines(*ReadFile(WriteCoordinatorLog(MakeTempDir("audit"), 6)));
  auto change = [](AuditRecord& r) { r.fields["bytes"] = 1; };

  // Mallory holds a certificate from the same CA, re-signs from record 3 on and says so.
  std::vector<std::string> claimed = lines;
  Resign(claimed, 3, Fed().site("mallory"), /*claim_signer=*/true, change);
  Status st = VerifyBytes(Join(claimed));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 4 (seq 3): signed by certificate"));

  // ...or pretends to be the coordinator: the signature does not verify.
  std::vector<std::string> pretended = lines;
  Resign(pretended, 3, Fed().site("mallory"), /*claim_signer=*/false, change);
  st = VerifyBytes(Join(pretended));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 4 (seq 3): the signature does not verify"));

  // ...or embeds its own certificate mid-file.
  std::vector<std::string> embedded = lines;
  Resign(embedded, 3, Fed().site("mallory"), /*claim_signer=*/true, [&](AuditRecord& r) {
    change(r);
    r.certificate_pem = Fed().site("mallory").cert.ToPem();
  });
  st = VerifyBytes(Join(embedded));
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 4 (seq 3): only the first record and signer_renewed records may "
                        "carry a certificate"));
}

TEST(AuditLogTest, LogOfAnotherFederationOrTheWrongRoleIsRejected) {
  std::string dir = MakeTempDir("audit");
  std::string path = dir + "/egress.jsonl";
  {
    auto log = OpenLog(path, Fed().site("stranger"));
    ASSERT_TRUE(log->Append(MessageSent("join", 0, 10, std::string(64, '1'))).ok());
  }
  Status st = VerifyAuditLog(path, Fed().ca()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 1 (seq 0): signer certificate"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("not signed by the federation CA"));

  // A whole log signed by a site is a valid egress ledger but not a coordinator audit log.
  std::string site_log = dir + "/berlin.jsonl";
  {
    auto log = OpenLog(site_log, Fed().site("berlin"));
    ASSERT_TRUE(log->Append(MessageSent("join", 0, 10, std::string(64, '1'))).ok());
  }
  VerifyOptions as_coordinator;
  as_coordinator.usage = CertificateUsage::kTlsServer;
  st = VerifyAuditLog(site_log, Fed().ca(), as_coordinator).status();
  EXPECT_THAT(std::string(st.message()), HasSubstr("not allowed for TLS server"));
  VerifyOptions as_paris;
  as_paris.expected_signer = "paris";
  as_paris.usage = CertificateUsage::kTlsClient;
  st = VerifyAuditLog(site_log, Fed().ca(), as_paris).status();
  EXPECT_THAT(std::string(st.message()), HasSubstr("is signed by 'berlin', expected 'paris'"));
  VerifyOptions as_berlin;
  as_berlin.expected_signer = "berlin";
  as_berlin.usage = CertificateUsage::kTlsClient;
  EXPECT_TRUE(VerifyAuditLog(site_log, Fed().ca(), as_berlin).ok());
}

TEST(AuditLogTest, TruncationIsCaughtOnlyAgainstAnAnchor) {
  std::string path = WriteCoordinatorLog(MakeTempDir("audit"), 4);
  auto full = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(full.ok());
  std::vector<std::string> lines = Lines(*ReadFile(path));
  lines.pop_back();
  VerifyOptions anchored;
  anchored.expected_head = full->head;
  Status st = VerifyAuditLogContents(Join(lines), Fed().ca(), "audit.jsonl", anchored).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("not at the expected"));

  std::string cut = Join(lines) + lines[0].substr(0, 20);
  st = VerifyBytes(cut);
  EXPECT_THAT(std::string(st.message()), HasSubstr("line 4 (seq 3): the last line is incomplete"));
  EXPECT_EQ(VerifyBytes("").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(VerifyAuditLog(path + ".absent", Fed().ca()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(AuditLogTest, WholeLogResignedByASiteFailsWithDefaultOptions) {
  std::vector<std::string> lines = Lines(*ReadFile(WriteCoordinatorLog(MakeTempDir("audit"), 6)));
  // Berlin's certificate is from the same CA: every record re-signed, its certificate first.
  const Identity& berlin = Fed().site("berlin");
  Resign(lines, 0, berlin, /*claim_signer=*/true,
         [&](AuditRecord& r) { r.certificate_pem = berlin.cert.ToPem(); });
  Status st = VerifyBytes(Join(lines));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 1 (seq 0): signer certificate: certificate of 'berlin' is not "
                        "allowed for TLS server authentication"));

  // A coordinator's certificate other than the expected one fails on its fingerprint.
  VerifyOptions pinned;
  pinned.usage = CertificateUsage::kAny;
  pinned.expected_fingerprint = Fed().coordinator().cert.Sha256Fingerprint();
  st = VerifyAuditLogContents(Join(lines), Fed().ca(), "audit.jsonl", pinned).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr(absl::StrCat("audit.jsonl is signed by certificate ",
                                     berlin.cert.Sha256Fingerprint(),
                                     " ('berlin'), not by the "
                                     "expected ",
                                     pinned.expected_fingerprint)));
}

TEST(AuditLogTest, PinnedFingerprintAcceptsTheCoordinatorInAnyNotation) {
  std::string path = WriteCoordinatorLog(MakeTempDir("audit"), 3);
  std::string fp = Fed().coordinator().cert.Sha256Fingerprint();
  std::string colons;  // "AB:CD:...", as `openssl x509 -fingerprint -sha256` prints it
  for (size_t i = 0; i < fp.size(); i += 2) {
    absl::StrAppend(&colons, i ? ":" : "", absl::AsciiStrToUpper(fp.substr(i, 2)));
  }
  VerifyOptions pinned;
  pinned.expected_fingerprint = colons;
  auto summary = VerifyAuditLog(path, Fed().ca(), pinned);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->fingerprint_checked);
  EXPECT_THAT(summary->ToText(), HasSubstr("pinned  the signer's fingerprint is the expected one"));
  EXPECT_THAT(summary->ToText(), HasSubstr("role    coordinator"));
}

// A finished federation's log: FederationStarted, updates, FederationFinished.
std::string WriteClosedLog(const std::string& dir, int n) {
  std::string path = WriteCoordinatorLog(dir, n - 1);
  auto log = OpenLog(path, Fed().coordinator());
  EXPECT_TRUE(log->Append(FederationFinished(3)).ok());
  return path;
}

TEST(AuditLogTest, LogWithItsTailCutIsReportedAsNotClosed) {
  std::string path = WriteClosedLog(MakeTempDir("audit"), 8);
  std::vector<std::string> lines = Lines(*ReadFile(path));
  ASSERT_EQ(lines.size(), 8u);
  auto closing = ParseRecordLine(lines.back());
  ASSERT_TRUE(closing.ok());
  EXPECT_EQ(closing->fields["records"], 7);
  EXPECT_EQ(closing->fields["head"], LineDigest(lines[6]));
  EXPECT_EQ(closing->fields["rounds"], 3);

  auto full = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_TRUE(full->closed);
  EXPECT_THAT(full->ToText(), HasSubstr("complete: closed by federation_finished at record 7"));

  lines.resize(5);  // the last three records removed
  auto cut = VerifyAuditLogContents(Join(lines), Fed().ca(), "audit.jsonl");
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->records, 5);
  EXPECT_FALSE(cut->closed);
  EXPECT_THAT(cut->ToText(), HasSubstr("no closing record: the log may be truncated, or the "
                                       "federation is still running"));
}

// Refusals and retention may follow the closing record: the log is still complete. Any other
// record after it (a round, an admission) reopens it.
TEST(AuditLogTest, OnlyRefusalsAndRetentionMayFollowTheClosingRecord) {
  const std::string dir = MakeTempDir("audit");
  std::string path = WriteClosedLog(dir, 5);
  {
    auto log = OpenLog(path, Fed().coordinator());
    ASSERT_TRUE(log->Append(SiteRefused({"mallory", "Org", "DE", "ff"}, "not allowed")).ok());
    ASSERT_TRUE(log->Append(RetentionApplied(30, "record", "2026-01-01T00:00:00Z", {})).ok());
    ASSERT_TRUE(log->Append(SiteRefused({"mallory", "Org", "DE", "ff"}, "not allowed")).ok());
  }
  auto after = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->closed);
  EXPECT_EQ(after->closing_record, 4);
  EXPECT_THAT(after->ToText(),
              HasSubstr("closed by federation_finished at record 4 (then 3 records of retention "
                        "or refused connections)"));

  for (const AuditEvent& reopening :
       {SiteAdmitted({"berlin", "Org", "DE", "ff"}), SiteConsented(4, "berlin")}) {
    const std::string copy = dir + "/reopened.jsonl";
    ASSERT_TRUE(WriteFileAtomically(copy, *ReadFile(path)).ok());
    {
      auto log = OpenLog(copy, Fed().coordinator());
      ASSERT_TRUE(log->Append(reopening).ok());
    }
    auto reopened = VerifyAuditLog(copy, Fed().ca());
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    EXPECT_FALSE(reopened->closed) << reopening.name;
    EXPECT_THAT(reopened->ToText(), HasSubstr("no closing record")) << reopening.name;
  }
}

TEST(AuditLogTest, ClosingRecordWhoseCountOrHeadIsWrongFails) {
  std::vector<std::string> lines = Lines(*ReadFile(WriteClosedLog(MakeTempDir("audit"), 6)));
  // Re-signed by the coordinator's own key, so only the closing check can catch it.
  std::vector<std::string> count = lines;
  Resign(count, 5, Fed().coordinator(), /*claim_signer=*/false,
         [](AuditRecord& r) { r.fields["records"] = 4; });
  Status st = VerifyBytes(Join(count));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 6 (seq 5): the closing record federation_finished states 4 "
                        "records"));

  std::vector<std::string> head = lines;
  Resign(head, 5, Fed().coordinator(), /*claim_signer=*/false,
         [](AuditRecord& r) { r.fields["head"] = std::string(64, 'e'); });
  st = VerifyBytes(Join(head));
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr(absl::StrCat("but it follows 5 records ending in ", LineDigest(lines[4]))));
}

TEST(AuditLogTest, AnchorIsTheCountAndTheLastLinesDigest) {
  std::string dir = MakeTempDir("audit");
  auto log = OpenLog(dir + "/audit.jsonl", Fed().coordinator());
  EXPECT_EQ(log->anchor().records, 0);
  EXPECT_EQ(log->anchor().sha256, kGenesisPrev);
  ASSERT_TRUE(log->Append(FederationStarted({})).ok());
  ASSERT_TRUE(log->Append(SiteConsented(1, "berlin")).ok());
  std::vector<std::string> lines = Lines(*ReadFile(dir + "/audit.jsonl"));
  EXPECT_EQ(log->anchor().records, 2);
  EXPECT_EQ(log->anchor().sha256, LineDigest(lines[1]));
  // Signed, the anchor verifies with the log's certificate and with no other statement.
  auto signed_anchor = log->SignedAnchor();
  ASSERT_TRUE(signed_anchor.ok()) << signed_anchor.status();
  EXPECT_EQ(signed_anchor->records, 2);
  EXPECT_EQ(signed_anchor->sha256, LineDigest(lines[1]));
  auto key = Fed().coordinator().cert.GetPublicKey();
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string signature = absl::HexStringToBytes(signed_anchor->signature);
  EXPECT_TRUE(key->Verify(AuditAnchorStatement(2, signed_anchor->sha256), signature).ok());
  EXPECT_FALSE(key->Verify(AuditAnchorStatement(3, signed_anchor->sha256), signature).ok());
}

TEST(AuditLogTest, ReopeningContinuesTheSameChain) {
  std::string dir = MakeTempDir("audit");
  std::string path = dir + "/state/audit.jsonl";
  std::string head;
  {
    auto log = OpenLog(path, Fed().coordinator());
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(*log->Append(FederationStarted({})), 0);
    EXPECT_EQ(*log->Append(RoundPlanned({1, 0, "p", "m", {"berlin"}, "secure"})), 1);
    head = log->head();
  }
  auto log = OpenLog(path, Fed().coordinator());
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->size(), 2);
  EXPECT_EQ(log->head(), head);
  EXPECT_EQ(log->torn_tail_bytes(), 0);
  EXPECT_EQ(*log->Append(CoordinatorResumed(0)), 2);
  EXPECT_EQ(*log->Append(SiteDropped(1, "berlin", "upload")), 3);
  log.reset();

  auto summary = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->records, 4);
  EXPECT_EQ(summary->events.at("coordinator_resumed"), 1);
  auto records = ReadVerifiedAuditLog(path, Fed().ca());
  ASSERT_TRUE(records.ok());
  EXPECT_EQ((*records)[1].fields["cohort"], nlohmann::json({"berlin"}));
  EXPECT_EQ((*records)[3].fields["stage"], "upload");
}

TEST(AuditLogTest, TornLastLineIsKeptAsideAndCutOff) {
  std::string dir = MakeTempDir("audit");
  std::string path = WriteCoordinatorLog(dir, 3);
  std::string good = *ReadFile(path);
  std::string torn = Lines(good)[1].substr(0, 50);
  ASSERT_TRUE(WriteFileAtomically(path, good + torn).ok());

  auto log = OpenLog(path, Fed().coordinator());
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->torn_tail_bytes(), 50);
  EXPECT_EQ(*log->Append(CoordinatorResumed(2, log->torn_tail_bytes())), 3);
  log.reset();
  EXPECT_TRUE(VerifyAuditLog(path, Fed().ca()).ok());
  int kept = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("audit.jsonl.torn-", 0) == 0) {
      EXPECT_EQ(*ReadFile(entry.path().string()), torn);
      ++kept;
    }
  }
  EXPECT_EQ(kept, 1);
}

TEST(AuditLogTest, ChainSurvivesAWriterKilledMidRun) {
  std::string path = MakeTempDir("audit") + "/audit.jsonl";
  const Identity& coordinator = Fed().coordinator();  // built before the fork: one federation
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto log = AuditLog::Open(path, coordinator.Key(), coordinator.cert);
    if (!log.ok()) ::_exit(3);
    for (int64_t i = 0;; ++i) {
      if (!(*log)->Append(UpdateReceived(i, "berlin", 100, std::string(64, 'c'))).ok()) ::_exit(4);
    }
  }
  // Let it write a few records, then kill it without warning, as a crash would.
  for (int i = 0; i < 200; ++i) {
    auto contents = ReadFile(path);
    if (contents.ok() && std::count(contents->begin(), contents->end(), '\n') >= 5) break;
    ::usleep(5000);
  }
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited early with " << WEXITSTATUS(status);

  auto log = OpenLog(path, Fed().coordinator());  // the dead writer's lock is gone
  ASSERT_NE(log, nullptr);
  int64_t before = log->size();
  EXPECT_GE(before, 5);
  EXPECT_EQ(*log->Append(CoordinatorResumed(before - 1, log->torn_tail_bytes())), before);
  log.reset();
  auto summary = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->records, before + 1);
}

TEST(AuditLogTest, RefusesToAppendToABrokenChain) {
  std::string path = WriteCoordinatorLog(MakeTempDir("audit"), 4);
  std::vector<std::string> lines = Lines(*ReadFile(path));
  std::swap(lines[1], lines[2]);
  ASSERT_TRUE(WriteFileAtomically(path, Join(lines)).ok());
  auto log = AuditLog::Open(path, Fed().coordinator().Key(), Fed().coordinator().cert);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("line 2 (seq 1)"));
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("refusing to append"));
}

TEST(AuditLogTest, RefusesAnotherSignerAWrongKeyAndASecondWriter) {
  std::string path = WriteCoordinatorLog(MakeTempDir("audit"), 2);
  auto other = AuditLog::Open(path, Fed().site("berlin").Key(), Fed().site("berlin").cert);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("names another subject"));
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("move the old file aside"));

  auto mismatched = AuditLog::Open(path, Fed().site("berlin").Key(), Fed().coordinator().cert);
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);

  auto first = OpenLog(path, Fed().coordinator());
  ASSERT_NE(first, nullptr);
  auto second = AuditLog::Open(path, Fed().coordinator().Key(), Fed().coordinator().cert);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("already open for writing"));
}

TEST(AuditLogTest, RejectsBadEventsWithoutWritingThem) {
  std::string path = MakeTempDir("audit") + "/audit.jsonl";
  auto log = OpenLog(path, Fed().coordinator());
  EXPECT_EQ(log->Append("Update Received", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append("x", nlohmann::json::array()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append("x", {{"s", std::string("\xff\xfe")}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->size(), 0);
  EXPECT_EQ(*log->Append("site_admitted", {{"site", "Ærø"}}), 0);
  log.reset();
  EXPECT_TRUE(VerifyAuditLog(path, Fed().ca()).ok());
}

TEST(AuditLogTest, TimesNeverGoBackwardsWhenTheClockDoes) {
  std::string path = MakeTempDir("audit") + "/audit.jsonl";
  absl::Time now = absl::Now();
  AuditLogOptions options;
  options.clock = [&now] { return now; };
  auto log = OpenLog(path, Fed().coordinator(), options);
  ASSERT_TRUE(log->Append("a", nlohmann::json::object()).ok());
  now -= absl::Seconds(30);  // NTP steps the clock back
  ASSERT_TRUE(log->Append("b", nlohmann::json::object()).ok());
  log.reset();
  auto records = ReadVerifiedAuditLog(path, Fed().ca());
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[0].time, (*records)[1].time);
}

TEST(AuditLogTest, ConcurrentAppendsFormOneChain) {
  std::string path = MakeTempDir("audit") + "/audit.jsonl";
  auto log = OpenLog(path, Fed().coordinator());
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < 10; ++i) {
        EXPECT_TRUE(log->Append(SiteConsented(i, absl::StrCat("site", t))).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(log->size(), 40);
  log.reset();
  auto summary = VerifyAuditLog(path, Fed().ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->events.at("site_consented"), 40);
}

TEST(AuditLogTest, OpensWithKitFiles) {
  std::string dir = MakeTempDir("audit");
  ASSERT_TRUE(WriteFileAtomically(dir + "/key.pem", Fed().site("paris").key_pem, 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/cert.pem", Fed().site("paris").cert.ToPem()).ok());
  auto log = AuditLog::OpenWithFiles(dir + "/egress.jsonl", dir + "/key.pem", dir + "/cert.pem");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->certificate().Subject().common_name, "paris");
  EXPECT_EQ(AuditLog::OpenWithFiles(dir + "/e2.jsonl", dir + "/absent.pem", dir + "/cert.pem")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hansa
