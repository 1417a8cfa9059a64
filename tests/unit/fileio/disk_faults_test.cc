// Every writer of coordinator and site state under injected write and fsync failures (the
// file seam of common/fileio) and, for SQLite, a file-size limit: each returns an error naming
// the file and the errno text, leaves the last good state readable (atomic files old or new,
// logs whose chain verifies), and works again once the fault is gone.
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include "client/egress.h"
#include "common/audit/audit_log.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/fileio/fileio.h"
#include "common/privacy/ledger.h"
#include "coordinator/checkpoints.h"
#include "coordinator/state_store.h"
#include "coordinator/strategy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

using ::hansa::testing::TestFederation;
using ::testing::AllOf;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

// One audit record; its fields make it a few hundred bytes.
AuditEvent Event(const std::string& site) {
  return AuditEvent{"update_received",
                    {{"site", site}, {"bytes", 1000}, {"sha256", std::string(64, '1')}}};
}

class DiskFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { ClearFileFault(); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  // The names in the test folder (a temporary file left behind shows here).
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    return out;
  }
  std::unique_ptr<AuditLog> OpenLog(const std::string& path) {
    const auto& who = TestFederation::Get().coordinator();
    auto log = AuditLog::Open(path, who.Key(), who.cert);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(*log) : nullptr;
  }
  void ExpectVerifies(const std::string& path, int64_t records) {
    auto summary = VerifyAuditLog(path, TestFederation::Get().ca());
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->records, records);
  }

  fs::path dir_;
};

TEST_F(DiskFaultsTest, AtomicFileKeepsOldContentsWhenAWriteFails) {
  const std::string path = Path("metrics.jsonl");
  ASSERT_TRUE(WriteFileAtomically(path, "old\n").ok());
  InjectFileFault({FileOp::kWrite, ENOSPC, 0, false, "metrics.jsonl"});
  Status st = WriteFileAtomically(path, std::string(4096, 'n'));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("writing " + path), HasSubstr("No space left")));
  EXPECT_EQ(InjectedFileFailures(), 1);
  EXPECT_TRUE(IsStorageError(st));  // callers stop rather than retry
  EXPECT_TRUE(IsStorageError(Annotate(st, "writing metrics")));
  EXPECT_EQ(*ReadFile(path), "old\n");
  EXPECT_THAT(Files(), ::testing::ElementsAre("metrics.jsonl"));  // no .tmp kept

  ClearFileFault();
  ASSERT_TRUE(WriteFileAtomically(path, "new\n").ok());
  EXPECT_EQ(*ReadFile(path), "new\n");
}

TEST_F(DiskFaultsTest, AtomicFileKeepsOldContentsWhenFsyncFails) {
  const std::string path = Path("privacy.json");
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  InjectFileFault({FileOp::kSync, EIO, 0, false, "privacy.json.tmp"});
  Status st = WriteFileAtomically(path, "new");
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("fsync of " + path + ".tmp."), HasSubstr("Input/output error")));
  EXPECT_EQ(*ReadFile(path), "old");
  EXPECT_THAT(Files(), ::testing::ElementsAre("privacy.json"));
  ClearFileFault();
  ASSERT_TRUE(WriteFileAtomically(path, "new").ok());
  EXPECT_EQ(*ReadFile(path), "new");
}

TEST_F(DiskFaultsTest, FailedDirectoryFsyncLeavesTheWholeNewFile) {
  const std::string path = Path("state.json");
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  // The rename happened; only its durability is in doubt: the reader sees old or new, whole.
  InjectFileFault({FileOp::kSync, EIO, 1, false, ""});  // the second fsync: the folder's
  Status st = WriteFileAtomically(path, "new");
  EXPECT_THAT(std::string(st.message()), HasSubstr("fsync of directory " + dir_.string()));
  EXPECT_EQ(*ReadFile(path), "new");
}

TEST_F(DiskFaultsTest, NthCallFailsAndStickyFaultFailsEveryLaterOne) {
  InjectFileFault({FileOp::kWrite, ENOSPC, 2, true, ""});
  EXPECT_TRUE(WriteFileAtomically(Path("a"), "1").ok());
  EXPECT_TRUE(WriteFileAtomically(Path("b"), "2").ok());
  EXPECT_FALSE(WriteFileAtomically(Path("c"), "3").ok());
  EXPECT_FALSE(WriteFileAtomically(Path("d"), "4").ok());
  EXPECT_EQ(InjectedFileFailures(), 2);
  ClearFileFault();
  EXPECT_TRUE(WriteFileAtomically(Path("d"), "4").ok());
  EXPECT_FALSE(fs::exists(Path("c")));
}

TEST_F(DiskFaultsTest, AuditAppendThatFailsToWriteLeavesNoTornLineAndContinues) {
  const std::string path = Path("audit.jsonl");
  auto log = OpenLog(path);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append(Event("berlin")).ok());
  const std::string before = *ReadFile(path);

  InjectFileFault({FileOp::kWrite, ENOSPC, 0, true, "audit.jsonl"});
  auto seq = log->Append(Event("paris"));
  EXPECT_EQ(seq.status().code(), absl::StatusCode::kResourceExhausted) << seq.status();
  EXPECT_THAT(std::string(seq.status().message()),
              AllOf(HasSubstr("writing " + path), HasSubstr("No space left on device")));
  EXPECT_EQ(*ReadFile(path), before);  // the half-written line was cut off again
  EXPECT_EQ(log->size(), 1);
  ExpectVerifies(path, 1);

  ClearFileFault();
  EXPECT_EQ(*log->Append(Event("paris")), 1);
  ExpectVerifies(path, 2);
}

TEST_F(DiskFaultsTest, AuditAppendThatFailsToFsyncStopsTheLogUntilReopened) {
  const std::string path = Path("audit.jsonl");
  auto log = OpenLog(path);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append(Event("berlin")).ok());

  InjectFileFault({FileOp::kSync, EIO, 0, false, "audit.jsonl"});
  auto seq = log->Append(Event("paris"));
  EXPECT_EQ(seq.status().code(), absl::StatusCode::kInternal) << seq.status();
  EXPECT_THAT(std::string(seq.status().message()),
              AllOf(HasSubstr("fsync of " + path), HasSubstr("Input/output error")));
  ClearFileFault();
  // The kernel may have dropped what the failed fsync covered: this writer takes no more.
  auto again = log->Append(Event("milan"));
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("no more records until reopened"));

  log.reset();
  log = OpenLog(path);  // the chain holds whatever reached the file, whole records only
  ASSERT_NE(log, nullptr);
  const int64_t kept = log->size();
  EXPECT_GE(kept, 1);
  EXPECT_EQ(*log->Append(Event("milan")), kept);
  ExpectVerifies(path, kept + 1);
}

TEST_F(DiskFaultsTest, AuditLogOnAFullDiskWithATornTailRefusesToOpenThenResumes) {
  const std::string path = Path("audit.jsonl");
  {
    auto log = OpenLog(path);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->Append(Event("berlin")).ok());
  }
  // A crash mid-append left half a line; verify names it, the writer cuts it off on opening.
  ASSERT_TRUE(WriteFileAtomically(path, *ReadFile(path) + "{\"seq\":1,\"ti").ok());
  auto torn = VerifyAuditLog(path, TestFederation::Get().ca());
  EXPECT_EQ(torn.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(torn.status().message()), HasSubstr("the last line is incomplete"));

  // The torn bytes are kept as evidence first: on a full disk opening fails and changes nothing.
  const std::string before = *ReadFile(path);
  InjectFileFault({FileOp::kWrite, ENOSPC, 0, true, ".torn-"});
  const auto& who = TestFederation::Get().coordinator();
  auto refused = AuditLog::Open(path, who.Key(), who.cert);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("No space left on device"));
  EXPECT_EQ(*ReadFile(path), before);

  ClearFileFault();
  auto log = OpenLog(path);
  ASSERT_NE(log, nullptr);
  EXPECT_GT(log->torn_tail_bytes(), 0);
  EXPECT_EQ(*log->Append(Event("paris")), 1);
  ExpectVerifies(path, 2);
}

TEST_F(DiskFaultsTest, EgressLedgerThatCannotBeWrittenStopsTheSend) {
  const std::string path = Path("egress.jsonl");
  const auto& site = TestFederation::Get().site("berlin");
  auto ledger = AuditLog::Open(path, site.Key(), site.cert);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EgressRecorder egress(ledger->get());
  ASSERT_TRUE(egress.Sending(audit_events::kMessageJoin, 0, std::string("join")).ok());

  InjectFileFault({FileOp::kWrite, ENOSPC, 0, true, "egress.jsonl"});
  auto sending = egress.Sending(audit_events::kMessageJoin, 0, std::string("join"));
  EXPECT_EQ(sending.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(IsStorageError(sending.status()));  // the site stops (SiteSession::Run)
  EXPECT_THAT(std::string(sending.status().message()),
              AllOf(HasSubstr("egress ledger"), HasSubstr(path), HasSubstr("No space left")));
  ClearFileFault();
  EXPECT_TRUE(egress.Sending(audit_events::kMessageJoin, 0, std::string("join")).ok());
  VerifyOptions options;
  options.usage = CertificateUsage::kTlsClient;
  auto summary = VerifyAuditLog(path, TestFederation::Get().ca(), options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->records, 2);
}

TEST_F(DiskFaultsTest, CheckpointThatCannotBeWrittenLeavesNoFileAndIsWrittenOnRetry) {
  ModelLayout layout({{"w", DType::kF32, {1000}}});
  auto strategy = Strategy::Create(StrategyOptions{}, layout);
  ASSERT_TRUE(strategy.ok()) << strategy.status();
  Checkpoints checkpoints(dir_.string(), "mlp");
  ASSERT_TRUE(MakeDirs((dir_ / "checkpoints").string()).ok());  // the engine makes it at start
  Model model{layout, std::vector<float>(1000, 0.5f)};
  PublishedModel published = checkpoints.Encode(1, model);

  InjectFileFault({FileOp::kSync, EIO, 0, false, "round-0001"});
  Status st = checkpoints.Write(1, &published, **strategy);
  EXPECT_THAT(std::string(st.message()), AllOf(HasSubstr("fsync of " + checkpoints.ModelPath(1)),
                                               HasSubstr("Input/output error")));
  EXPECT_FALSE(fs::exists(checkpoints.ModelPath(1)));
  EXPECT_TRUE(fs::is_empty(dir_ / "checkpoints"));

  ClearFileFault();
  EXPECT_FALSE(published.payload.mapped());  // still the copy in memory, served as before
  ASSERT_TRUE(checkpoints.Write(1, &published, **strategy).ok());
  EXPECT_TRUE(published.payload.mapped());
  RoundRecord last;
  last.round = 1;
  last.checkpoint = checkpoints.ModelPath(1);
  last.model_sha256 = published.sha256;
  EXPECT_TRUE(checkpoints.Load(last).ok());
}

TEST_F(DiskFaultsTest, PrivacyLedgerRecordsNothingWhenItCannotBeSaved) {
  const std::string path = Path("privacy.json");
  auto ledger = PrivacyLedger::Open(path, {1.0, 1e-5});
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  std::vector<double> rdp(DefaultRdpOrders().size(), 1e-4);
  ASSERT_TRUE(ledger->Record(1, "gaussian", rdp).ok());
  const std::string before = *ReadFile(path);

  InjectFileFault({FileOp::kWrite, ENOSPC, 0, false, "privacy.json"});
  Status st = ledger->Record(2, "gaussian", rdp);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_THAT(std::string(st.message()), AllOf(HasSubstr(path), HasSubstr("No space left")));
  EXPECT_EQ(ledger->num_rounds(), 1u);
  EXPECT_EQ(*ReadFile(path), before);
  ClearFileFault();
  EXPECT_TRUE(ledger->Record(2, "gaussian", rdp).ok());
  EXPECT_EQ(PrivacyLedger::Open(path, {1.0, 1e-5})->num_rounds(), 2u);
}

// SQLite writes through its own VFS, not the seam: a file-size limit makes its writes fail
// as a full disk does (EFBIG instead of ENOSPC; SIGXFSZ ignored so the write returns).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &old_);
    rlimit limit = old_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  sighandler_t old_handler_;
};

TEST_F(DiskFaultsTest, StateStoreThatCannotGrowKeepsItsLastRoundAndWorksAgain) {
  const std::string path = Path("state.db");
  auto store = StateStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  RoundRecord round1;
  round1.round = 1;
  round1.model_sha256 = "aa";
  round1.checkpoint = "c1";
  round1.sites = {"berlin", "paris"};
  ASSERT_TRUE((*store)->RecordRound(round1).ok());

  RoundRecord round2 = round1;
  round2.round = 2;
  round2.checkpoint = std::string(1 << 20, 'x');  // more than the limit lets the WAL grow
  {
    FileSizeLimit limit(fs::file_size(path) + 64 * 1024);
    Status st = (*store)->RecordRound(round2);
    EXPECT_FALSE(st.ok());
    EXPECT_THAT(std::string(st.message()),
                AllOf(HasSubstr("state database " + path), HasSubstr("disk I/O error")));
    auto last = (*store)->LastRound();
    ASSERT_TRUE(last.ok()) << last.status();
    ASSERT_TRUE(last->has_value());
    EXPECT_EQ((*last)->round, 1);
  }
  ASSERT_TRUE((*store)->RecordRound(round2).ok());
  store->reset();
  auto reopened = StateStore::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*(*reopened)->LastRound())->round, 2);
}

}  // namespace
}  // namespace hansa
