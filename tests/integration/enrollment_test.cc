// Enrollment with real processes: the operator creates the CA once (hansa ca init); the
// coordinator and three sites each make their own key and request (hansa enroll), the operator
// signs them (hansa ca sign) and they install the replies (hansa enroll accept); the federation
// trains; then a fourth site, enrolled and signed only after the federation started, joins and
// trains in a later round. No private key ever reaches the operator's folders.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<int>(st.st_mode & 0777);
}

class EnrollmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir();
    port_ = FreePort();
    ca_ = dir_ + "/operator/ca";
    Hansa({"ca", "init", "--dir", ca_, "--federation", "test", "--country", "DE", "--org",
           "Test Operators"});
  }

  // `hansa ARGS...`, which must succeed; its output.
  std::string Hansa(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BuildPath("tools/hansa")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    EXPECT_EQ(RunCommand(argv, &out), 0) << absl::StrJoin(argv, " ") << "\n" << out;
    return out;
  }

  // The participant's machine: its own folder, where its key is made and stays.
  std::string Machine(const std::string& name) const { return dir_ + "/machines/" + name; }
  std::string Reply(const std::string& name) const { return dir_ + "/operator/replies/" + name; }

  // A participant enrolls on its machine, the operator signs what it sent (after comparing the
  // key fingerprint, as by phone), and the participant installs the reply.
  void EnrollAndSign(const std::string& name, bool coordinator) {
    std::vector<std::string> enroll = {"enroll",
                                       coordinator ? "--coordinator" : "--site",
                                       name,
                                       "--country",
                                       coordinator ? "DE" : "FR",
                                       "--out",
                                       Machine(name)};
    if (coordinator) enroll.insert(enroll.end(), {"--host", "127.0.0.1", "--host", "localhost"});
    const std::string enrolled = Hansa(enroll);
    const size_t at = enrolled.find("Key SHA-256");
    ASSERT_NE(at, std::string::npos) << enrolled;
    const size_t line = enrolled.find('\n', at) + 3;  // the fingerprint, indented by two
    const std::string fingerprint = enrolled.substr(line, enrolled.find('\n', line) - line);
    ASSERT_EQ(fingerprint.size(), 64u + 15u) << enrolled;  // 16 groups of four

    // Only request.csr travels to the operator.
    const std::string inbox = dir_ + "/operator/inbox/" + name + ".csr";
    std::filesystem::create_directories(dir_ + "/operator/inbox");
    std::filesystem::copy_file(Machine(name) + "/request.csr", inbox);
    std::vector<std::string> sign = {"ca",
                                     "sign",
                                     inbox,
                                     "--dir",
                                     ca_,
                                     "--role",
                                     coordinator ? "coordinator" : "site",
                                     "--key-fingerprint",
                                     fingerprint,
                                     "--out",
                                     Reply(name),
                                     "--days",
                                     "30"};
    if (coordinator) sign.insert(sign.end(), {"--address", absl::StrCat("127.0.0.1:", port_)});
    const std::string signed_out = Hansa(sign);
    EXPECT_THAT(signed_out, HasSubstr(fingerprint));
    if (!coordinator) {
      EXPECT_THAT(signed_out, HasSubstr("[sites] allowed"));
    }

    const std::string accepted = Hansa({"enroll", "accept", "--out", Machine(name), Reply(name)});
    EXPECT_THAT(accepted, HasSubstr("Installed the certificate of"));
    if (coordinator) {
      ConfigureCoordinator();
    } else {
      ConfigureSite(name);
    }
  }

  // A few short plaintext rounds of the small built-in model; the fourth site is allowed from
  // the start. Rounds are many: the test stops the coordinator once the fourth site trained.
  void ConfigureCoordinator() {
    const std::string toml = Machine("coordinator") + "/coordinator.toml";
    // It checks joins against the CA's revocation list from the start.
    EXPECT_THAT(ReadText(toml), HasSubstr("revocation_list = \"crl.pem\""));
    ReplaceInFile(toml, "allowed = []", "allowed = [\"alpha\", \"bravo\", \"charlie\", \"delta\"]");
    ReplaceInFile(toml, "[coordinator]\n", "[coordinator]\nlinger_seconds = 1\n");
    AppendText(toml,
               "\n[model]\nname = \"mlp\"\nseed = 3\n"
               "[rounds]\ntotal = 200\nmin_sites = 3\nupload_timeout_seconds = 60\n"
               "evaluate_timeout_seconds = 20\nwait_for_sites_seconds = 120\n"
               "site_idle_seconds = 20\n"
               "[training]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.05\n"
               "[aggregation]\nmode = \"plaintext\"\nstage_timeout_seconds = 20\n");
  }

  void ConfigureSite(const std::string& name) {
    const std::string toml = Machine(name) + "/site.toml";
    ASSERT_THAT(ReadText(toml), HasSubstr(absl::StrCat("coordinator = \"127.0.0.1:", port_)));
    ReplaceInFile(toml, "[site]\n", "[site]\nreconnect_seconds = 120\n");
    ReplaceInFile(toml, "[policy]\n",
                  "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n");
    AppendText(toml, "train_limit = 300\ntest_limit = 100\n[compute]\nthreads = 1\n");
  }

  std::unique_ptr<Process> StartSite(const std::string& name) {
    return std::make_unique<Process>(
        std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                                 Machine(name) + "/site.toml"},
        dir_ + "/" + name + ".log");
  }

  // The rounds whose released aggregate holds `site`'s update.
  std::vector<int> RoundsWith(const std::string& site) const {
    std::vector<int> rounds;
    for (const auto& r : ReadJsonLines(Machine("coordinator") + "/state/audit.jsonl")) {
      if (r.value("event", "") != "aggregate_released") continue;
      for (const auto& s : r["fields"]["sites"]) {
        if (s == site) rounds.push_back(r["fields"]["round"].get<int>());
      }
    }
    return rounds;
  }

  std::string dir_, ca_;
  int port_ = 0;
};

TEST_F(EnrollmentTest, ASiteEnrolledAfterTheFederationStartedJoinsAndTrains) {
  EnrollAndSign("coordinator", /*coordinator=*/true);
  for (const char* site : {"alpha", "bravo", "charlie"}) EnrollAndSign(site, false);
  auto coordinator = std::make_unique<Process>(
      std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                               Machine("coordinator") + "/coordinator.toml"},
      dir_ + "/coordinator.log");
  auto alpha = StartSite("alpha");
  auto bravo = StartSite("bravo");
  auto charlie = StartSite("charlie");
  ASSERT_TRUE(WaitFor(180, [&] { return !RoundsWith("alpha").empty(); }))
      << coordinator->Log() << alpha->Log();

  // The federation runs; only now does delta enroll and get signed.
  EnrollAndSign("delta", false);
  auto delta = StartSite("delta");
  ASSERT_TRUE(WaitFor(240, [&] { return !RoundsWith("delta").empty(); }))
      << coordinator->Log() << delta->Log();
  coordinator->Signal(SIGTERM);
  EXPECT_TRUE(coordinator->Wait(60).has_value()) << coordinator->Log();

  EXPECT_GT(RoundsWith("delta").front(), RoundsWith("alpha").front());
  EXPECT_THAT(coordinator->Log(), HasSubstr("site delta joined"));
  // delta's own ledger shows the update it sent.
  bool uploaded = false;
  for (const auto& r : ReadJsonLines(Machine("delta") + "/state/egress.jsonl")) {
    uploaded |= r.value("event", "") == "message_sent" && r["fields"]["type"] == "upload";
  }
  EXPECT_TRUE(uploaded) << delta->Log();

  // The operator's side holds no private key but the CA's; every key file is 0600.
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_ + "/operator")) {
    if (!entry.is_regular_file()) continue;
    ++files;
    const std::string path = entry.path().string();
    const bool has_key = ReadText(path).find("PRIVATE KEY") != std::string::npos;
    EXPECT_EQ(has_key, path == ca_ + "/ca-key.pem") << path;
  }
  EXPECT_GE(files, 4 + 5 * 3);  // the CA's files; inbox, cert, ca and pin per participant
  EXPECT_EQ(Mode(ca_ + "/ca-key.pem"), 0600);
  for (const char* name : {"coordinator", "alpha", "bravo", "charlie", "delta"}) {
    EXPECT_EQ(Mode(Machine(name) + "/key.pem"), 0600) << name;
  }
  const std::string list = Hansa({"ca", "list", "--dir", ca_});
  EXPECT_THAT(list, HasSubstr("delta"));
  // Certificates of 30 days are within the expiry warning.
  EXPECT_THAT(list, HasSubstr("5 valid certificate(s) expire within 30 days"));
}

// Events named `event` in the log at `path`.
int CountEvents(const std::string& path, const std::string& event) {
  int n = 0;
  for (const auto& r : ReadJsonLines(path)) n += r.value("event", "") == event;
  return n;
}

// `hansa ca renew` keeps the key, so a renewed participant keeps its own log: a site restarted
// with a renewed certificate continues its egress ledger (and with it the contributions it
// spent) and trains on; a coordinator restarted with one continues its audit log. Both verify
// and reconcile across the handover, with no file moved aside.
TEST_F(EnrollmentTest, RenewedCertificatesContinueTheirLogs) {
  EnrollAndSign("coordinator", /*coordinator=*/true);
  for (const char* site : {"alpha", "bravo", "charlie"}) EnrollAndSign(site, false);
  const std::vector<std::string> coordinator_argv = {BuildPath("coordinator/hansa-coordinator"),
                                                     "--config",
                                                     Machine("coordinator") + "/coordinator.toml"};
  auto coordinator = std::make_unique<Process>(coordinator_argv, dir_ + "/coordinator.log");
  auto alpha = StartSite("alpha");
  auto bravo = StartSite("bravo");
  auto charlie = StartSite("charlie");
  ASSERT_TRUE(WaitFor(180, [&] { return !RoundsWith("alpha").empty(); }))
      << coordinator->Log() << alpha->Log();

  alpha->Signal(SIGTERM);
  ASSERT_TRUE(alpha->Wait(60).has_value()) << alpha->Log();
  const std::string ledger = Machine("alpha") + "/state/egress.jsonl";
  const std::string first_record = ReadText(ledger).substr(0, ReadText(ledger).find('\n'));
  const std::string old_cert = ReadText(Machine("alpha") + "/cert.pem");
  Hansa({"ca", "renew", "alpha", "--dir", ca_, "--out", Reply("alpha-renewed"), "--days", "30"});
  Hansa({"enroll", "accept", "--out", Machine("alpha"), Reply("alpha-renewed")});
  ASSERT_NE(ReadText(Machine("alpha") + "/cert.pem"), old_cert);
  const size_t trained = RoundsWith("alpha").size();
  alpha = StartSite("alpha");
  ASSERT_TRUE(WaitFor(240, [&] { return RoundsWith("alpha").size() > trained; }))
      << coordinator->Log() << alpha->Log();
  for (Process* p : {coordinator.get(), alpha.get(), bravo.get(), charlie.get()}) {
    p->Signal(SIGTERM);
    EXPECT_TRUE(p->Wait(60).has_value()) << p->Log();
  }

  // The ledger is the same file, handed over once.
  EXPECT_EQ(ReadText(ledger).substr(0, first_record.size()), first_record);
  EXPECT_EQ(CountEvents(ledger, "signer_renewed"), 1);
  const std::string ca_pem = Machine("alpha") + "/ca.pem";
  EXPECT_THAT(
      Hansa({"audit", "verify", ledger, "--ca", ca_pem, "--role", "site", "--signer", "alpha"}),
      HasSubstr("renewed 1 time"));
  const std::string audit = Machine("coordinator") + "/state/audit.jsonl";
  EXPECT_THAT(Hansa({"audit", "reconcile", audit, ledger, "--ca", ca_pem}),
              Not(HasSubstr("admitted 'alpha' with certificate")));

  // The coordinator's certificate is renewed between two runs: the audit log goes on.
  Hansa({"ca", "renew", "coordinator", "--dir", ca_, "--out", Reply("coordinator-renewed"),
         "--days", "30"});
  Hansa({"enroll", "accept", "--out", Machine("coordinator"), Reply("coordinator-renewed")});
  coordinator = std::make_unique<Process>(coordinator_argv, dir_ + "/coordinator-2.log");
  ASSERT_TRUE(WaitFor(60, [&] { return CountEvents(audit, "coordinator_resumed") >= 1; }))
      << coordinator->Log();
  coordinator->Signal(SIGTERM);
  EXPECT_TRUE(coordinator->Wait(60).has_value()) << coordinator->Log();
  EXPECT_EQ(CountEvents(audit, "signer_renewed"), 1);
  EXPECT_THAT(Hansa({"audit", "verify", audit, "--ca", ca_pem, "--certificate",
                     Machine("coordinator") + "/cert.pem"}),
              HasSubstr("renewed 1 time"));
  Hansa({"audit", "reconcile", audit, ledger, "--ca", ca_pem});
}

// The operator compares the key fingerprint the participant reads out: a request whose key is
// another (swapped in transit) is refused, and nothing is issued or written for it.
TEST_F(EnrollmentTest, SignRefusesARequestWhoseKeyIsNotTheOneReadOut) {
  Hansa({"enroll", "--site", "alpha", "--country", "FR", "--out", Machine("alpha")});
  std::string out;
  EXPECT_EQ(
      RunCommand({BuildPath("tools/hansa"), "ca", "sign", Machine("alpha") + "/request.csr",
                  "--dir", ca_, "--key-fingerprint", std::string(64, '0'), "--out", Reply("alpha")},
                 &out),
      2)
      << out;
  EXPECT_THAT(out, HasSubstr("this is not the participant's request"));
  EXPECT_FALSE(std::filesystem::exists(Reply("alpha")));
  EXPECT_THAT(Hansa({"ca", "list", "--dir", ca_}), HasSubstr("no certificate issued yet"));

  // Signed before any coordinator: the reply has nothing to pin, and the site says so.
  Hansa({"ca", "sign", Machine("alpha") + "/request.csr", "--dir", ca_, "--out", Reply("alpha")});
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "enroll", "accept", "--out", Machine("alpha"),
                        Reply("alpha")},
                       &out),
            2)
      << out;
  EXPECT_THAT(out, HasSubstr("has no coordinator.sha256"));
  EXPECT_FALSE(std::filesystem::exists(Machine("alpha") + "/site.toml"));
}

}  // namespace
}  // namespace hansa::testing
