// hansa retention's module over a state directory: the synthetic federation's signed audit log
// (tests/unit/report/synthetic_state.h) with files of set ages beside it.
#include "common/retention/retention.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "common/audit/audit_log.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/report/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"
#include "tests/unit/report/synthetic_state.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
namespace fs = std::filesystem;

constexpr int64_t kDays = 30;

void WriteAged(const std::string& path, const std::string& bytes, absl::Duration age) {
  ASSERT_TRUE(MakeDirs(fs::path(path).parent_path().string()).ok());
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  const timespec when = absl::ToTimespec(absl::Now() - age);
  const timespec times[2] = {when, when};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

nlohmann::json Study(int64_t retention_days) {
  return {{"purpose", "sepsis prediction"},
          {"legal_basis", "Art. 6(1)(e), Art. 9(2)(j)"},
          {"controllers", {"Charité"}},
          {"retention_days", retention_days},
          {"dpia_reference", "DPIA-7"}};
}

// A coordinator state dir: the synthetic audit log (round 1's checkpoint_written record made
// now), and files 100 days old unless said otherwise.
std::string MakeCoordinatorState(const nlohmann::json& study = Study(kDays)) {
  const std::string state =
      WriteSyntheticState(testing::MakeTempDir("retention"), "Policlinico", study);
  const absl::Duration old = absl::Hours(24 * 100);
  WriteAged(state + "/checkpoints/round-0000.safetensors", "model 0", old);
  // Old by its mtime, but its checkpoint_written record is from now: the record counts.
  WriteAged(state + "/checkpoints/round-0001.safetensors", "model 1", old);
  WriteAged(state + "/checkpoints/round-0002.safetensors", "model 2", old);
  WriteAged(state + "/checkpoints/strategy-0002.safetensors", "moments 2", old);
  WriteAged(state + "/state.db", "sqlite", old);
  WriteAged(state + "/state.db-wal", "wal", old);
  WriteAged(state + "/privacy.json", "{}", old);
  WriteAged(state + "/spill/berlin-1a2b", "spilled", old);
  WriteAged(state + "/notes.txt", "recent", absl::Hours(24));
  WriteAged(state + "/metrics.jsonl", *ReadFile(state + "/metrics.jsonl"), old);
  return state;
}

std::vector<std::string> Paths(const std::vector<RetentionFile>& files) {
  std::vector<std::string> paths;
  for (const RetentionFile& f : files) paths.push_back(f.path);
  return paths;
}

std::map<std::string, std::string> Kept(const RetentionPlan& plan) {
  std::map<std::string, std::string> kept;
  for (const KeptFile& k : plan.kept) kept[k.path] = k.why;
  return kept;
}

RetentionOptions Coordinator(const std::string& state) {
  RetentionOptions options;
  options.state_dir = state;
  return options;
}

std::unique_ptr<AuditLog> OpenAsCoordinator(const std::string& state) {
  const auto& who = testing::TestFederation::Get().coordinator();
  auto log = AuditLog::Open(state + "/audit.jsonl", who.Key(), who.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

TEST(RetentionTest, ListsFilesPastRetentionWithTheirAgesAndDeletesNothing) {
  const std::string state = MakeCoordinatorState();
  auto plan = PlanRetention(Coordinator(state));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->retention_days, kDays);
  EXPECT_THAT(plan->days_from, HasSubstr("federation_started record's study facts"));
  EXPECT_THAT(Paths(plan->expired), UnorderedElementsAre("checkpoints/round-0000.safetensors",
                                                         "metrics.jsonl", "spill/berlin-1a2b"));
  for (const RetentionFile& f : plan->expired) EXPECT_EQ(f.age_from, "file mtime") << f.path;
  EXPECT_EQ(plan->ExpiredBytes(), 7 + 7 + fs::file_size(state + "/metrics.jsonl"));
  // Round 1's checkpoint is old by its mtime, young by its record: the record wins.
  EXPECT_THAT(Paths(plan->retained),
              UnorderedElementsAre("checkpoints/round-0001.safetensors", "notes.txt"));
  auto round1 =
      std::find_if(plan->retained.begin(), plan->retained.end(),
                   [](const RetentionFile& f) { return f.path.find("0001") != std::string::npos; });
  ASSERT_NE(round1, plan->retained.end());
  EXPECT_THAT(round1->age_from, HasSubstr("checkpoint_written record, seq 12"));

  const auto kept = Kept(*plan);
  EXPECT_THAT(kept.at("audit.jsonl"), HasSubstr("the audit log"));
  EXPECT_THAT(kept.at("state.db"), HasSubstr("the resume point"));
  EXPECT_THAT(kept.at("state.db-wal"), HasSubstr("the resume point"));
  EXPECT_THAT(kept.at("privacy.json"), HasSubstr("privacy accountant"));
  EXPECT_THAT(kept.at("checkpoints/round-0002.safetensors"), HasSubstr("newest checkpoint"));
  EXPECT_THAT(kept.at("checkpoints/strategy-0002.safetensors"), HasSubstr("newest checkpoint"));

  const std::string text = plan->ToText();
  EXPECT_THAT(text, HasSubstr("retention: 30 days, from the federation_started record"));
  EXPECT_THAT(text, HasSubstr("spill/berlin-1a2b"));
  EXPECT_THAT(text, HasSubstr("state.db"));
  EXPECT_THAT(text, HasSubstr("would start the study over"));
  // Listing deleted nothing.
  for (const char* f :
       {"checkpoints/round-0000.safetensors", "metrics.jsonl", "spill/berlin-1a2b"}) {
    EXPECT_TRUE(fs::exists(state + "/" + f)) << f;
  }
}

TEST(RetentionTest, NeverListsTheLogOrStateDbHoweverOld) {
  const std::string state = MakeCoordinatorState();
  RetentionOptions options = Coordinator(state);
  options.now = absl::Now() + absl::Hours(24 * 365 * 50);  // everything is past retention
  auto plan = PlanRetention(options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const RetentionFile& f : plan->expired) {
    EXPECT_NE(f.path, "audit.jsonl");
    EXPECT_NE(f.path.rfind("state.db", 0), 0u) << f.path;
    EXPECT_NE(f.path, "privacy.json");
  }
  EXPECT_TRUE(plan->retained.empty());
  EXPECT_EQ(plan->expired.size(), 5u);  // round 0 and 1, metrics, spill, notes
}

TEST(RetentionTest, DeleteRemovesExactlyWhatWasListedAndRecordsIt) {
  const std::string state = MakeCoordinatorState();
  auto plan = PlanRetention(Coordinator(state));
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::map<std::string, std::string> digests;
  for (const RetentionFile& f : plan->expired) {
    digests[f.path] = ToHex(Sha256(*ReadFile(state + "/" + f.path)));
  }
  auto log = OpenAsCoordinator(state);
  ASSERT_NE(log, nullptr);
  auto result = ApplyRetention(*plan, *log);
  ASSERT_TRUE(result.ok()) << result.status();
  log.reset();

  ASSERT_EQ(result->deleted.size(), 3u);
  for (const DeletedFile& f : result->deleted) {
    EXPECT_FALSE(fs::exists(state + "/" + f.path)) << f.path;
    EXPECT_EQ(f.sha256, digests.at(f.path));
  }
  for (const char* f : {"audit.jsonl", "state.db", "state.db-wal", "privacy.json", "notes.txt",
                        "checkpoints/round-0001.safetensors", "checkpoints/round-0002.safetensors",
                        "checkpoints/strategy-0002.safetensors"}) {
    EXPECT_TRUE(fs::exists(state + "/" + f)) << f;
  }

  const auto& fed = testing::TestFederation::Get();
  auto records = ReadVerifiedAuditLog(state + "/audit.jsonl", fed.ca());
  ASSERT_TRUE(records.ok()) << records.status();
  const AuditRecord& last = records->back();
  EXPECT_EQ(last.event, audit_events::kRetentionApplied);
  EXPECT_EQ(last.seq, result->record_seq);
  EXPECT_EQ(last.fields["retention_days"], kDays);
  EXPECT_EQ(last.fields["files"].size(), 3u);
  for (const auto& f : last.fields["files"]) {
    EXPECT_EQ(f["sha256"], digests.at(f["path"].get<std::string>()));
  }
  uint64_t bytes = 0;
  for (const auto& f : last.fields["files"]) bytes += f["bytes"].get<uint64_t>();
  EXPECT_EQ(last.fields["bytes"], bytes);
  EXPECT_EQ(last.fields["cutoff"], FormatRecordTime(plan->cutoff));

  // audit verify: intact, and still complete (closed, then retention).
  auto summary = VerifyAuditLog(state + "/audit.jsonl", fed.ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->closed);
  EXPECT_EQ(summary->closing_record, last.seq - 1);
  EXPECT_EQ(summary->events.at("retention_applied"), 1);
  EXPECT_THAT(summary->ToText(), HasSubstr("(then 1 record of retention or refused connections)"));

  // The report reads it, verified and closed, and lists the deletion.
  ReportOptions report;
  report.state_dir = state;
  report.ca_path = fs::path(state).parent_path().string() + "/ca.pem";
  auto built = BuildReport(report);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ((*built)["audit"]["verified"], true) << (*built)["audit"].dump();
  EXPECT_EQ((*built)["audit"]["closed"], true);
  ASSERT_EQ((*built)["retention"].size(), 1u);
  EXPECT_EQ((*built)["retention"][0]["files"].size(), 3u);

  // A second run finds nothing more past retention and records nothing.
  auto again = PlanRetention(Coordinator(state));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->expired.empty());
  auto second = OpenAsCoordinator(state);
  auto nothing = ApplyRetention(*again, *second);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(nothing->record_seq, -1);
  EXPECT_EQ(second->size(), last.seq + 1);

  // Only retention records may follow the closing one: anything else reopens the log.
  ASSERT_TRUE(second->Append(CoordinatorResumed(2)).ok());
  second.reset();
  summary = VerifyAuditLog(state + "/audit.jsonl", fed.ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_FALSE(summary->closed);
  EXPECT_THAT(summary->ToText(), HasSubstr("no closing record"));
}

TEST(RetentionTest, RefusesWhileACoordinatorHoldsTheLog) {
  const std::string state = MakeCoordinatorState();
  auto running = OpenAsCoordinator(state);  // as a running coordinator does
  ASSERT_NE(running, nullptr);
  Status held = CheckLogNotHeld(state + "/audit.jsonl");
  EXPECT_EQ(held.code(), absl::StatusCode::kFailedPrecondition) << held;
  EXPECT_THAT(std::string(held.message()), HasSubstr("running coordinator or client"));
  const auto& who = testing::TestFederation::Get().coordinator();
  auto second = AuditLog::Open(state + "/audit.jsonl", who.Key(), who.cert);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("already open for writing"));
  running.reset();
  EXPECT_TRUE(CheckLogNotHeld(state + "/audit.jsonl").ok());
}

TEST(RetentionTest, TakesRetentionDaysFromTheConfigurationWhenNoRecordStatesThem) {
  const std::string state = MakeCoordinatorState(nullptr);
  auto none = PlanRetention(Coordinator(state));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("federation_started record in"));
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("no coordinator.toml was given"));

  const std::string config = state + "/../coordinator.toml";
  ASSERT_TRUE(WriteFileAtomically(config, "[federation]\nname = \"demo\"\n").ok());
  RetentionOptions options = Coordinator(state);
  options.config_path = config;
  none = PlanRetention(options);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("has no [federation] retention_days"));

  ASSERT_TRUE(
      WriteFileAtomically(config, "[federation]\nname = \"demo\"\nretention_days = 200\n").ok());
  auto plan = PlanRetention(options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->retention_days, 200);
  EXPECT_THAT(plan->days_from, HasSubstr("coordinator.toml [federation] retention_days"));
  EXPECT_TRUE(plan->expired.empty());  // nothing is 200 days old

  // A record that states them wins over the configuration, which is named beside it.
  const std::string stated = MakeCoordinatorState(Study(kDays));
  options.state_dir = stated;
  plan = PlanRetention(options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->retention_days, kDays);
  EXPECT_THAT(plan->days_from, HasSubstr("now says 200, but the record is what the sites"));
}

TEST(RetentionTest, RefusesADirectoryWithoutItsLog) {
  const std::string empty = testing::MakeTempDir("retention_empty");
  auto plan = PlanRetention(Coordinator(empty));
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("no audit log at"));
  EXPECT_EQ(CheckLogNotHeld(empty + "/audit.jsonl").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(empty + "/audit.jsonl"));
}

TEST(RetentionTest, SiteKeepsItsLedgerAndPrivacyAccountsAndRecordsInTheLedger) {
  const std::string state = testing::MakeTempDir("retention_site") + "/state";
  const auto& berlin = testing::TestFederation::Get().site("berlin");
  {
    auto ledger = AuditLog::Open(state + "/egress.jsonl", berlin.Key(), berlin.cert);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ASSERT_TRUE((*ledger)->Append(StudyFactsSeen(1, std::string(64, 'a'), Study(7))).ok());
    ASSERT_TRUE((*ledger)->Append(StudyFactsSeen(5, std::string(64, 'b'), Study(3))).ok());
  }
  const absl::Duration old = absl::Hours(24 * 10);
  WriteAged(state + "/privacy.json", "{}", old);
  WriteAged(state + "/record_privacy.json", "{}", old);
  WriteAged(state + "/cache/model-1.safetensors", "cached", old);
  WriteAged(state + "/key.pem", "not a key", old);

  RetentionOptions options;
  options.state_dir = state;
  options.side = RetentionSide::kSite;
  auto plan = PlanRetention(options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->retention_days, 7);  // the longest the site's studies asked for
  EXPECT_THAT(plan->days_from, HasSubstr("study_facts record (egress.jsonl seq 0)"));
  EXPECT_THAT(Paths(plan->expired), ElementsAre("cache/model-1.safetensors"));
  const auto kept = Kept(*plan);
  EXPECT_THAT(kept.at("egress.jsonl"), HasSubstr("the egress ledger"));
  EXPECT_THAT(kept.at("privacy.json"), HasSubstr("privacy accountant"));
  EXPECT_THAT(kept.at("record_privacy.json"), HasSubstr("privacy accountant"));
  EXPECT_THAT(kept.at("key.pem"), HasSubstr("key, certificate or configuration"));

  // Recorded in the ledger, with the site's key; the coordinator's log is not this one.
  auto ledger = AuditLog::Open(state + "/egress.jsonl", berlin.Key(), berlin.cert);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  auto result = ApplyRetention(*plan, **ledger);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->record_seq, 2);
  ledger->reset();
  EXPECT_FALSE(fs::exists(state + "/cache/model-1.safetensors"));
  VerifyOptions site;
  site.usage = CertificateUsage::kTlsClient;
  EXPECT_TRUE(
      VerifyAuditLog(state + "/egress.jsonl", testing::TestFederation::Get().ca(), site).ok());
}

TEST(RetentionTest, ApplyRefusesAnotherDirectorysLog) {
  const std::string state = MakeCoordinatorState();
  const std::string other = MakeCoordinatorState();
  auto plan = PlanRetention(Coordinator(state));
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto log = OpenAsCoordinator(other);
  auto result = ApplyRetention(*plan, *log);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("is recorded in its own log"));
  EXPECT_TRUE(fs::exists(state + "/metrics.jsonl"));
}

}  // namespace
}  // namespace hansa
