// `hansa retention` over the state directory a real short federation left (a coordinator and two
// sites over mutual TLS, plaintext, two rounds; the provisioned coordinator.toml states
// retention_days = 30): listing deletes nothing, --delete deletes exactly what was listed and
// records it, `hansa audit verify --require-closed` and `hansa report` pass afterwards, and a
// running coordinator holding the audit log makes it refuse.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// The paths `hansa retention` listed as past retention (lines "  PATH  SIZE  made ...").
std::set<std::string> Listed(const std::string& output) {
  std::set<std::string> listed;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (!absl::StartsWith(line, "  ") || line.find(" made ") == absl::string_view::npos) continue;
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (!words.empty()) listed.insert(words[0]);
  }
  return listed;
}

TEST(RetentionTest, ARealRunsStateIsListedThenDeletedOnRecord) {
  const std::string dir = FreshDir();
  const int port = FreePort();
  const std::vector<std::string> sites = {"alpha", "beta"};
  const std::string kit = Provision(dir, sites, port, "retention");
  const std::string coordinator_toml = kit + "/coordinator/coordinator.toml";
  ASSERT_THAT(ReadText(coordinator_toml), HasSubstr("retention_days = 30"));
  AppendText(coordinator_toml,
             "\n[model]\nname = \"mlp\"\nseed = 5\n"
             "[rounds]\ntotal = 2\nmin_sites = 2\nupload_timeout_seconds = 60\n"
             "evaluate_timeout_seconds = 30\nwait_for_sites_seconds = 120\n"
             "[training]\nepochs = 1\nbatch_size = 32\n[aggregation]\nmode = \"plaintext\"\n");
  for (const std::string& site : sites) {
    const std::string path = kit + "/sites/" + site + "/site.toml";
    ReplaceInFile(path, "[policy]\n",
                  "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 2\n");
    AppendText(path, "train_limit = 400\ntest_limit = 200\n[compute]\nthreads = 1\n");
  }
  {
    Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                        dir + "/coordinator.log");
    Process alpha(
        {BuildPath("client/hansa-client"), "--once", "--config", kit + "/sites/alpha/site.toml"},
        dir + "/alpha.log");
    Process beta(
        {BuildPath("client/hansa-client"), "--once", "--config", kit + "/sites/beta/site.toml"},
        dir + "/beta.log");
    ASSERT_EQ(coordinator.Wait(300).value_or(-1), 0) << coordinator.Log() << alpha.Log();
    EXPECT_EQ(alpha.Wait(60).value_or(-1), 0) << alpha.Log();
    EXPECT_EQ(beta.Wait(60).value_or(-1), 0) << beta.Log();
  }
  const std::string state = kit + "/coordinator/state";
  const std::string hansa = BuildPath("tools/hansa");
  // Far on, everything of the run is past the 30 days.
  const std::string later = "2099-01-01T00:00:00Z";
  std::string output;

  // Today nothing is past retention.
  ASSERT_EQ(RunCommand({hansa, "retention", state}, &output), 0) << output;
  EXPECT_THAT(output, HasSubstr("retention: 30 days, from the federation_started record's study "
                                "facts (audit.jsonl seq 0)"));
  EXPECT_TRUE(Listed(output).empty()) << output;

  // Later: listed, with sizes and where each age came from; nothing deleted.
  ASSERT_EQ(RunCommand({hansa, "retention", state, "--now", later}, &output), 0) << output;
  const std::set<std::string> listed = Listed(output);
  EXPECT_EQ(listed, (std::set<std::string>{"checkpoints/round-0000.safetensors",
                                           "checkpoints/round-0001.safetensors", "metrics.jsonl"}))
      << output;
  EXPECT_THAT(output, HasSubstr("(checkpoint_written record, seq "));
  EXPECT_THAT(output, HasSubstr("state.db"));
  EXPECT_THAT(output, HasSubstr("the resume point"));
  EXPECT_THAT(output, HasSubstr("nothing deleted (give --delete"));
  for (const std::string& path : listed) EXPECT_TRUE(fs::exists(state + "/" + path)) << path;

  // --delete: exactly those, recorded with the coordinator's key (coordinator.toml beside).
  ASSERT_EQ(RunCommand({hansa, "retention", state, "--now", later, "--delete"}, &output), 0)
      << output;
  EXPECT_EQ(Listed(output), listed) << output;
  for (const std::string& path : listed) EXPECT_FALSE(fs::exists(state + "/" + path)) << path;
  for (const char* kept : {"audit.jsonl", "state.db", "checkpoints/round-0002.safetensors"}) {
    EXPECT_TRUE(fs::exists(state + "/" + std::string(kept))) << kept;
  }
  EXPECT_THAT(output, HasSubstr("recorded as retention_applied, seq "));
  const std::vector<nlohmann::json> records = ReadJsonLines(state + "/audit.jsonl");
  ASSERT_FALSE(records.empty());
  const nlohmann::json& last = records.back();
  ASSERT_EQ(last["event"], "retention_applied") << last.dump();
  std::set<std::string> recorded;
  for (const nlohmann::json& f : last["fields"]["files"]) {
    recorded.insert(f["path"].get<std::string>());
    EXPECT_EQ(f["sha256"].get<std::string>().size(), 64u);
    EXPECT_GT(f["bytes"].get<int64_t>(), 0);
  }
  EXPECT_EQ(recorded, listed);
  EXPECT_EQ(last["fields"]["retention_days"], 30);

  // The log verifies, still complete, and the report reads it.
  ASSERT_EQ(RunCommand({hansa, "audit", "verify", state + "/audit.jsonl", "--ca",
                        kit + "/coordinator/ca.pem", "--certificate", kit + "/coordinator/cert.pem",
                        "--require-closed"},
                       &output),
            0)
      << output;
  EXPECT_THAT(output, HasSubstr("(then 1 record of retention or refused connections)"));
  EXPECT_THAT(output, HasSubstr("retention_applied"));
  ASSERT_EQ(RunCommand({hansa, "report", state, "--out", dir + "/report", "--certificate",
                        kit + "/coordinator/cert.pem"},
                       &output),
            0)
      << output;
  const nlohmann::json report = nlohmann::json::parse(ReadText(dir + "/report/report.json"));
  ASSERT_EQ(report["retention"].size(), 1u) << report["retention"].dump();
  EXPECT_EQ(report["retention"][0]["files"].size(), listed.size());

  // A coordinator running on the state dir holds the log: both listing and --delete refuse.
  ReplaceInFile(coordinator_toml, "total = 2", "total = 3");
  Process again({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                dir + "/again.log");
  ASSERT_TRUE(WaitFor(60, [&] { return again.Log().find("listening on") != std::string::npos; }))
      << again.Log();
  EXPECT_EQ(
      RunCommand({hansa, "retention", state, "--now", "2199-01-01T00:00:00Z", "--delete"}, &output),
      1)
      << output;
  EXPECT_THAT(output, HasSubstr("already open for writing"));
  EXPECT_THAT(output, HasSubstr("nothing deleted"));
  EXPECT_EQ(RunCommand({hansa, "retention", state}, &output), 1) << output;
  EXPECT_THAT(output, HasSubstr("running coordinator or client"));
  int retention_records = 0;
  for (const nlohmann::json& r : ReadJsonLines(state + "/audit.jsonl")) {
    retention_records += r["event"] == "retention_applied" ? 1 : 0;
  }
  EXPECT_EQ(retention_records, 1);
  EXPECT_TRUE(fs::exists(state + "/checkpoints/round-0002.safetensors"));
  again.Signal(SIGTERM);
  EXPECT_TRUE(again.Wait(60).has_value()) << again.Log();
}

}  // namespace
}  // namespace hansa::testing
