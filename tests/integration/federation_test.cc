// Whole federations as real processes on loopback over mutual TLS: hansa provision,
// hansa-coordinator and hansa-client, exactly as a user runs them.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <grpcpp/grpcpp.h>
#include "client/tabular.h"
#include "client/train/torchscript.h"
#include "common/model/models.h"

#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "common/pki/key.h"
#include "common/privacy/ddg_accountant.h"
#include "common/privacy/rdp.h"
#include "common/tensor/safetensors.h"
#include "hansa/v1/hansa.grpc.pb.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Settings {
  std::string model = "mlp";  // learns within a round on small shards
  int rounds = 2;
  int min_sites = 2;
  double upload_timeout = 60;
  double evaluate_timeout = 20;
  int train_limit = 1500;
  int test_limit = 500;
  bool secure = false;  // secure aggregation needs at least three sites
};

class Federation {
 public:
  Federation(const std::string& dir, const std::vector<std::string>& sites, const Settings& s)
      : dir_(dir), sites_(sites), secure_(s.secure) {
    port_ = FreePort();
    kit_ = Provision(dir, sites, port_);
    std::string coordinator = kit_ + "/coordinator/coordinator.toml";
    ReplaceInFile(coordinator, "[coordinator]\n", "[coordinator]\nlinger_seconds = 5\n");
    AppendText(
        coordinator,
        absl_format(
            "\n[model]\nname = \"%s\"\nseed = 3\n"
            "[rounds]\ntotal = %d\nmin_sites = %d\nupload_timeout_seconds = %g\n"
            "evaluate_timeout_seconds = %g\nwait_for_sites_seconds = 120\nsite_idle_seconds = 20\n"
            "[training]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.05\n"
            "[aggregation]\nmode = \"%s\"\nstage_timeout_seconds = 20\n",
            s.model.c_str(), s.rounds, s.min_sites, s.upload_timeout, s.evaluate_timeout,
            s.secure ? "secure" : "plaintext"));
    for (const auto& entry : sites) {
      const std::string site = SiteName(entry);
      std::string path = kit_ + "/sites/" + site + "/site.toml";
      ReplaceInFile(path, "[site]\n", "[site]\nreconnect_seconds = 120\n");
      if (!s.secure) {
        ReplaceInFile(path, "[policy]\n",
                      "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n");
      }
      AppendText(path, absl_format("train_limit = %d\ntest_limit = %d\n[compute]\nthreads = 1\n",
                                   s.train_limit, s.test_limit));
    }
  }

  static std::string absl_format(const char* fmt, ...) {
    char buf[2048];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    return buf;
  }

  std::unique_ptr<Process> StartCoordinator() {
    return std::make_unique<Process>(
        std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                                 kit_ + "/coordinator/coordinator.toml"},
        dir_ + "/coordinator.log");
  }
  std::unique_ptr<Process> StartSite(const std::string& site, const std::string& kit = "") {
    return std::make_unique<Process>(
        std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                                 (kit.empty() ? kit_ : kit) + "/sites/" + site + "/site.toml"},
        dir_ + "/" + site + ".log");
  }
  std::string state() const { return kit_ + "/coordinator/state"; }
  std::string kit() const { return kit_; }
  bool secure() const { return secure_; }
  int port() const { return port_; }
  std::vector<nlohmann::json> Metrics() const { return ReadJsonLines(state() + "/metrics.jsonl"); }
  std::vector<nlohmann::json> Audit() const { return ReadJsonLines(state() + "/audit.jsonl"); }
  std::string Egress(const std::string& site) const {
    return kit_ + "/sites/" + site + "/state/egress.jsonl";
  }
  // `hansa audit ARGS... --ca CA`: exit code, output in *out.
  int AuditCommand(std::vector<std::string> args, std::string* out) const {
    args.insert(args.begin(), {BuildPath("tools/hansa"), "audit"});
    args.insert(args.end(), {"--ca", kit_ + "/ca/ca.pem"});
    return RunCommand(args, out);
  }
  // The coordinator's audit log and every listed site's egress ledger verify, and each
  // ledger reconciles with the audit log.
  void ExpectRecordsReconcile(const std::vector<std::string>& sites) const {
    std::string out;
    EXPECT_EQ(AuditCommand({"verify", state() + "/audit.jsonl"}, &out), 0) << out;
    EXPECT_THAT(out, HasSubstr("role    coordinator")) << out;
    for (const auto& site : sites) {
      EXPECT_EQ(AuditCommand({"verify", "--role", "site", Egress(site)}, &out), 0) << out;
      EXPECT_EQ(AuditCommand({"reconcile", state() + "/audit.jsonl", Egress(site)}, &out), 0)
          << out;
      EXPECT_THAT(out, HasSubstr(", 0 differences")) << out;
      // The site kept the coordinator's audit heads it was shown, and the log still holds them.
      EXPECT_THAT(out, Not(HasSubstr(" 0 of 0 coordinator audit heads"))) << out;
    }
  }

 private:
  std::string dir_;
  std::vector<std::string> sites_;
  bool secure_;
  int port_;
  std::string kit_;
};

// Sends the HTTP/2 client preface in clear text and returns what the server answers.
std::string PlaintextAttempt(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
  ::send(fd, preface, sizeof preface - 1, MSG_NOSIGNAL);
  std::string reply(256, '\0');
  ssize_t n = ::recv(fd, reply.data(), reply.size(), 0);
  ::close(fd);
  reply.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return reply;
}

std::string absl_hex(unsigned char c) {
  char buf[4];
  std::snprintf(buf, sizeof buf, "%02x", c);
  return buf;
}

bool HasOpenssl() { return std::system("command -v openssl >/dev/null 2>&1") == 0; }

// openssl s_client with the given extra arguments; returns its exit code and output.
int SClient(int port, const std::vector<std::string>& extra, std::string* out) {
  std::vector<std::string> argv = {"/usr/bin/openssl", "s_client", "-connect",
                                   "127.0.0.1:" + std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return RunCommand({"/bin/sh", "-c",
                     "printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' | (" +
                         [&] {
                           std::string cmd;
                           for (auto& a : argv) cmd += "'" + a + "' ";
                           return cmd;
                         }() +
                         " ; sleep 0) 2>&1"},
                    out);
}

TEST(FederationTest, TrainsOverMutualTlsWhileBadPeersAreTurnedAway) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha", "beta", "intruder", "boston@US", "gamma"},
                 Settings{.rounds = 2, .min_sites = 2, .evaluate_timeout = 6});
  // "intruder" holds a certificate from this federation's CA but is not an admitted site.
  ReplaceInFile(fed.kit() + "/coordinator/coordinator.toml",
                R"(allowed = ["alpha", "beta", "intruder", "boston", "gamma"])",
                R"(allowed = ["alpha", "beta", "boston", "gamma"])");
  // gamma's own policy does not allow the federation's model: it refuses every plan.
  ReplaceInFile(fed.kit() + "/sites/gamma/site.toml", "[policy]\n",
                "[policy]\nallowed_models = [\"cnn_fedavg\"]\n");
  // A second federation with its own CA, whose "alpha" tries to join ours.
  std::string other = Provision(dir + "/other", {"alpha"}, fed.port(), "other");

  auto coordinator = fed.StartCoordinator();
  // gamma joins first, so it is in the first training cohort and refuses that plan.
  auto gamma = fed.StartSite("gamma");
  ASSERT_TRUE(WaitFor(120, [&] {
    return gamma->Log().find("joined federation") != std::string::npos;
  })) << gamma->Log();
  auto alpha = fed.StartSite("alpha");
  auto beta = fed.StartSite("beta");

  // Unknown site: refused at Join, the client stops with the reason.
  auto intruder = fed.StartSite("intruder");
  ASSERT_EQ(intruder->Wait(60).value_or(-1), 1) << intruder->Log();
  EXPECT_THAT(intruder->Log(), HasSubstr("is not part of federation 'test'"));
  // A site from outside the EU/EEA, admitted by name: refused for its jurisdiction.
  auto boston = fed.StartSite("boston");
  ASSERT_EQ(boston->Wait(60).value_or(-1), 1) << boston->Log();
  EXPECT_THAT(boston->Log(), HasSubstr("of 'boston' is not an allowed jurisdiction"));

  // No TLS at all: the server answers a clear-text HTTP/2 preface with a TLS alert or by
  // closing the connection, never with an HTTP/2 frame.
  std::string reply = PlaintextAttempt(fed.port());
  EXPECT_TRUE(reply.empty() || static_cast<uint8_t>(reply[0]) == 0x15)
      << "server answered clear text with " << reply.size() << " bytes: " << [&] {
           std::string hex;
           for (unsigned char c : reply) hex += absl_hex(c);
           return hex;
         }();

  if (HasOpenssl()) {
    std::string ca = fed.kit() + "/sites/alpha/ca.pem";
    std::string cert = fed.kit() + "/sites/alpha/cert.pem";
    std::string key = fed.kit() + "/sites/alpha/key.pem";
    std::string out;
    // TLS 1.2 is refused even with a valid client certificate.
    SClient(fed.port(), {"-tls1_2", "-CAfile", ca, "-cert", cert, "-key", key}, &out);
    EXPECT_THAT(out, HasSubstr("Cipher is (NONE)")) << out;
    // An expired certificate from the right CA is refused by the coordinator.
    auto ca_obj =
        CertificateAuthority::Load(fed.kit() + "/ca/ca.pem", fed.kit() + "/ca/ca-key.pem");
    ASSERT_TRUE(ca_obj.ok()) << ca_obj.status();
    auto expired_key = PrivateKey::Generate();
    CertificateRequest req;
    req.subject = {"alpha", "Site alpha", "DE"};
    req.client_auth = true;
    req.dns_names = {"alpha"};
    req.not_before = absl::Now() - absl::Hours(48);
    req.not_after = absl::Now() - absl::Hours(24);
    auto expired = ca_obj->Issue(req, expired_key->GetPublicKey());
    ASSERT_TRUE(expired.ok()) << expired.status();
    // Straight to gRPC, past hansa-client's own local validity check.
    auto join = [&](const std::string& cert_pem, const std::string& key_pem) {
      TlsFiles files{cert_pem, key_pem, ReadText(ca)};
      auto creds = MakeClientCredentials(files);
      EXPECT_TRUE(creds.ok());
      auto stub = v1::Coordinator::NewStub(
          grpc::CreateChannel("127.0.0.1:" + std::to_string(fed.port()), *creds));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::JoinRequest req;
      v1::JoinReply reply;
      return stub->Join(&ctx, req, &reply);
    };
    grpc::Status refused = join(expired->ToPem(), *expired_key->ToPem());
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
    grpc::Status admitted = join(ReadText(cert), ReadText(key));  // same path, valid cert
    EXPECT_TRUE(admitted.ok()) << admitted.error_message();
  }

  // Certificate from another CA: the handshake fails; the site gives up after its window.
  ReplaceInFile(other + "/sites/alpha/site.toml", "[site]\n", "[site]\nreconnect_seconds = 4\n");
  Process foreign(
      {BuildPath("client/hansa-client"), "--once", "--config", other + "/sites/alpha/site.toml"},
      dir + "/foreign.log");
  ASSERT_EQ(foreign.Wait(60).value_or(-1), 1) << foreign.Log();
  EXPECT_THAT(foreign.Log(), HasSubstr("unreachable"));

  // Meanwhile the federation itself completes normally.
  ASSERT_EQ(coordinator->Wait(240).value_or(-1), 0) << coordinator->Log();
  ASSERT_EQ(alpha->Wait(30).value_or(-1), 0) << alpha->Log();
  ASSERT_EQ(beta->Wait(30).value_or(-1), 0) << beta->Log();
  ASSERT_EQ(gamma->Wait(30).value_or(-1), 0) << gamma->Log();
  EXPECT_THAT(gamma->Log(), HasSubstr("which this site's policy does not allow"));
  fed.ExpectRecordsReconcile({"alpha", "beta", "gamma"});
  std::map<std::string, std::string> refused;  // site -> reason
  std::vector<std::string> declined;
  for (const auto& r : fed.Audit()) {
    if (r["event"] == "site_refused") refused[r["fields"]["site"]] = r["fields"]["reason"];
    if (r["event"] == "site_declined") declined.push_back(r["fields"]["site"]);
    if (r["event"] == "update_received") {
      EXPECT_NE(r["fields"]["site"], "gamma");
    }
  }
  EXPECT_THAT(refused["boston"], HasSubstr("jurisdiction"));
  EXPECT_THAT(refused["intruder"], HasSubstr("not part of federation"));
  EXPECT_THAT(declined, ::testing::Contains("gamma"));
  bool gamma_recorded_refusal = false;
  for (const auto& r : ReadJsonLines(fed.Egress("gamma"))) {
    if (r["event"] == "plan_refused") {
      gamma_recorded_refusal = true;
      EXPECT_THAT(r["fields"]["reason"].get<std::string>(), HasSubstr("policy.allowed_models"));
    }
    EXPECT_FALSE(r["event"] == "message_sent" && r["fields"]["type"] == "upload") << r.dump();
  }
  EXPECT_TRUE(gamma_recorded_refusal);
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 3u);
  double initial = metrics[0]["accuracy"].get<double>();
  double last = metrics[2]["accuracy"].get<double>();
  EXPECT_EQ(metrics[2]["sites"].get<int>(), 2);
  EXPECT_GT(last, initial + 0.3) << "accuracy went from " << initial << " to " << last;
  EXPECT_GT(metrics[2]["bytes_up"].get<int64_t>(), 0);
  auto checkpoint = ReadSafetensorsFile(fed.state() + "/checkpoints/round-0002.safetensors");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE(checkpoint->layout.CheckSameAs(*BuiltinModelLayout("mlp")).ok());
}

TEST(FederationTest, KilledCoordinatorResumesAndSitesReconnect) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha", "beta"}, Settings{.rounds = 3, .min_sites = 2});
  auto coordinator = fed.StartCoordinator();
  auto alpha = fed.StartSite("alpha");
  auto beta = fed.StartSite("beta");
  // Kill it hard as soon as round 1 is recorded, i.e. while round 2 is under way.
  ASSERT_TRUE(WaitFor(180, [&] { return fed.Metrics().size() >= 2; })) << coordinator->Log();
  coordinator->Signal(SIGKILL);
  ASSERT_EQ(coordinator->Wait(10).value_or(-1), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(1));

  auto restarted = fed.StartCoordinator();
  ASSERT_EQ(restarted->Wait(240).value_or(-1), 0) << restarted->Log();
  EXPECT_THAT(restarted->Log(), HasSubstr("resuming after round"));
  ASSERT_EQ(alpha->Wait(30).value_or(-1), 0) << alpha->Log();
  ASSERT_EQ(beta->Wait(30).value_or(-1), 0) << beta->Log();
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 4u);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(metrics[r]["round"].get<int>(), r);
  for (int r = 0; r <= 3; ++r) {
    char name[64];
    std::snprintf(name, sizeof name, "/checkpoints/round-%04d.safetensors", r);
    EXPECT_TRUE(ReadSafetensorsFile(fed.state() + name).ok()) << name;
  }
  EXPECT_GT(metrics[3]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.3);
  // The records survived the crash: one chain, continued after a resume record, and each
  // site's ledger still accounts for every update the coordinator holds.
  fed.ExpectRecordsReconcile({"alpha", "beta"});
  int resumed = 0;
  for (const auto& r : fed.Audit()) resumed += r["event"] == "coordinator_resumed";
  EXPECT_EQ(resumed, 1);
}

TEST(FederationTest, SiteKilledMidRoundIsLeftOutAndTheRoundCompletes) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha", "beta", "gamma"},
                 Settings{.rounds = 2, .min_sites = 2, .upload_timeout = 20});
  // gamma trains on a shard large enough that its round takes seconds, not milliseconds, so
  // the kill below lands while it trains.
  ReplaceInFile(fed.kit() + "/sites/gamma/site.toml", "train_limit = 1500", "train_limit = 20000");
  auto coordinator = fed.StartCoordinator();
  auto alpha = fed.StartSite("alpha");
  auto beta = fed.StartSite("beta");
  auto gamma = fed.StartSite("gamma");
  // gamma dies while it trains in round 2 (the first round whose cohort is sure to hold all
  // three: round 1's may be planned before the last site connected).
  ASSERT_TRUE(WaitFor(180, [&] {
    return coordinator->Log().find("round 2 (attempt 1): 3 sites") != std::string::npos;
  })) << coordinator->Log();
  gamma->Signal(SIGKILL);
  ASSERT_EQ(coordinator->Wait(240).value_or(-1), 0) << coordinator->Log();
  ASSERT_EQ(alpha->Wait(30).value_or(-1), 0);
  ASSERT_EQ(beta->Wait(30).value_or(-1), 0);
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_GE(metrics[1]["sites"].get<int>(), 2);
  EXPECT_EQ(metrics[2]["sites"].get<int>(), 2);
  EXPECT_THAT(coordinator->Log(), HasSubstr("no answer in time from gamma (TRAIN)"));
}

// Runs a provisioned federation to its end; the coordinator's log.
std::string RunToEnd(Federation& fed, const std::vector<std::string>& sites) {
  auto coordinator = fed.StartCoordinator();
  std::vector<std::unique_ptr<Process>> running;
  for (const auto& site : sites) running.push_back(fed.StartSite(site));
  EXPECT_EQ(coordinator->Wait(300).value_or(-1), 0) << coordinator->Log();
  for (auto& site : running) EXPECT_EQ(site->Wait(30).value_or(-1), 0) << site->Log();
  return coordinator->Log();
}

// ---- A study's own model and data (issue 15) ----

std::string SourcePath(const std::string& relative) {
  const char* dir = std::getenv("HANSA_SOURCE_DIR");
  return std::string(dir != nullptr ? dir : HANSA_SOURCE_DIR_FALLBACK) + "/" + relative;
}

// Turns `fed` into a study of the breast-cancer example: the coordinator runs `model` (a
// TorchScript file) as a binary classifier from its initial weights, each site trains on its
// own CSV file (site i on data/site-<a,b,c>.csv) with a copy of the model, and every site in
// `allowing` lets its policy allow the model's hash. Under secure aggregation the sites first
// pool their features' moments. Returns the model's "sha256:<hex>".
std::string MakeStudy(Federation& fed, const std::vector<std::string>& sites,
                      const std::string& model, const std::vector<std::string>& allowing) {
  const std::string coordinator = fed.kit() + "/coordinator/coordinator.toml";
  const std::string init = fed.kit() + "/coordinator/init.safetensors";
  std::string out;
  EXPECT_EQ(
      RunCommand({BuildPath("tools/hansa"), "model", "inspect", model, "--write-init", init}, &out),
      0)
      << out;
  const std::string sha = out.substr(out.find("sha256:"), 7 + 64);
  ReplaceInFile(coordinator, "name = \"mlp\"\n",
                "file = \"" + model + "\"\ninit = \"" + init + "\"\n");
  AppendText(coordinator, "[task]\nkind = \"binary\"\nloss = \"bce_with_logits\"\n");
  ReplaceInFile(coordinator, "epochs = 1\n", "epochs = 2\nmomentum = 0.9\n");  // as the example
  // BatchNorm statistics in the data's units travel in the update: a wide clip, a fine step.
  ReplaceInFile(coordinator, "[aggregation]\n", "[aggregation]\nclip = 1000000.0\nbits = 50\n");
  // The largest sum of squares of a site's feature is 2e8 (site b's areas): a clip of 1e9 is
  // a quantization step of 2.2e-7.
  if (fed.secure()) AppendText(coordinator, "[standardization]\nfeatures = 30\nclip = 1e9\n");
  const std::string data = SourcePath("examples/breast-cancer/data/");
  for (size_t i = 0; i < sites.size(); ++i) {
    const std::string path = fed.kit() + "/sites/" + sites[i] + "/site.toml";
    if (std::find(allowing.begin(), allowing.end(), sites[i]) != allowing.end()) {
      ReplaceInFile(path, "[policy]\n", "[policy]\nallowed_models = [\"" + sha + "\"]\n");
    }
    // A site of a study trains on all of its own file, not on a shard of shared data.
    std::string text = ReadText(path);
    for (const char* key : {"shard_index = ", "shard_count = "}) {
      const size_t at = text.find(key);
      if (at != std::string::npos) text.erase(at, text.find('\n', at) + 1 - at);
    }
    std::ofstream(path, std::ios::trunc) << text;
    ReplaceInFile(path, "train_limit =",
                  "format = \"csv\"\ntrain = \"" + data + "site-" + std::string(1, 'a' + i % 3) +
                      ".csv\"\ntest = \"" + data + "test.csv\"\ntrain_limit =");
    AppendText(path, "[data.csv]\nlabel = \"diagnosis\"\n[model]\nfiles = [\"" + model + "\"]\n");
  }
  return sha;
}

TEST(FederationTest, AStudysOwnModelTrainsOnCsvSitesUnderSecureAggregation) {
  // The breast-cancer example's MLP as saved by PyTorch, and one built in C++ with torch::jit.
  const std::string built = FreshDir("model") + "/mlp.pt";
  ASSERT_TRUE(SaveTorchScriptMlp(built, 30, 8, 1, 5).ok());
  for (const std::string& model : {SourcePath("examples/breast-cancer/mlp.pt"), built}) {
    SCOPED_TRACE(model);
    const std::string dir = FreshDir(model == built ? "cpp" : "python");
    const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
    Federation fed(dir, sites, Settings{.rounds = 3, .min_sites = 3, .secure = true});
    ASSERT_TRUE(fed.secure());
    const std::string sha = MakeStudy(fed, sites, model, sites);
    const std::string log = RunToEnd(fed, sites);
    EXPECT_THAT(log, HasSubstr("unmasked the sum of 3 sites"));
    auto metrics = fed.Metrics();
    ASSERT_EQ(metrics.size(), 4u) << log;
    for (int r = 1; r <= 3; ++r) EXPECT_EQ(metrics[r]["sites"].get<int>(), 3) << log;
    EXPECT_EQ(metrics[3]["examples"].get<int64_t>(), 125 + 211 + 120);  // site-{a,b,c}.csv
    EXPECT_EQ(metrics[3]["evaluated_on"].get<int64_t>(), 3 * 113);      // each site's test.csv
    ASSERT_TRUE(metrics[3].contains("auc")) << metrics[3].dump();
    // On the pooled standardisation, both learn.
    EXPECT_GT(metrics[3]["accuracy"].get<double>(), 0.85) << metrics[3].dump();
    EXPECT_GT(metrics[3]["auc"].get<double>(), 0.9) << metrics[3].dump();
    // The coordinator released the mean and std of the concatenated files, and nothing else
    // about the sites' rows but their total.
    FeatureMoments concatenated;
    for (const char* file : {"site-a.csv", "site-b.csv", "site-c.csv"}) {
      CsvSchema schema;
      schema.label = "diagnosis";
      auto table = LoadCsv(SourcePath("examples/breast-cancer/data/") + file, schema);
      ASSERT_TRUE(table.ok()) << table.status();
      if (concatenated.count == 0) {
        concatenated = FeatureMoments::Of(*table);
      } else {
        ASSERT_TRUE(concatenated.Add(FeatureMoments::Of(*table)).ok());
      }
    }
    std::vector<double> mean, sd;
    ASSERT_TRUE(concatenated.MeanAndStd(&mean, &sd).ok());
    int pooled_records = 0;
    for (const auto& record : fed.Audit()) {
      if (record.value("event", "") != "standardization_pooled") continue;
      ++pooled_records;
      const auto& f = record["fields"];
      EXPECT_EQ(f["examples"].get<int64_t>(), concatenated.count);
      for (size_t j = 0; j < mean.size(); ++j) {
        // Within what the quantization step allows (the least spread feature's variance is
        // 7e-6 over 456 rows).
        EXPECT_NEAR(f["mean"][j].get<double>(), mean[j], 1e-6 * std::abs(mean[j])) << j;
        EXPECT_NEAR(f["std"][j].get<double>(), sd[j], 5e-4 * sd[j]) << j;
      }
    }
    EXPECT_EQ(pooled_records, 1);
    // The plans name the model by its hash, and the records reconcile.
    EXPECT_THAT(ReadText(fed.state() + "/audit.jsonl"), HasSubstr("\"model\":\"" + sha));
    fed.ExpectRecordsReconcile(sites);
  }
}

TEST(FederationTest, AStudyResumesAfterACrashWithItsModelAndPooledStandardisation) {
  const std::string dir = FreshDir();
  const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
  Federation fed(dir, sites, Settings{.rounds = 3, .min_sites = 3, .secure = true});
  MakeStudy(fed, sites, SourcePath("examples/breast-cancer/mlp.pt"), sites);
  // Rounds of about a second, so that the kill lands in one.
  ReplaceInFile(fed.kit() + "/coordinator/coordinator.toml", "epochs = 2\n", "epochs = 150\n");
  auto coordinator = fed.StartCoordinator();
  std::vector<std::unique_ptr<Process>> running;
  for (const auto& site : sites) running.push_back(fed.StartSite(site));
  // Killed once round 1 is recorded: the standardisation and the TorchScript model's
  // checkpoint must carry over.
  ASSERT_TRUE(WaitFor(180, [&] { return fed.Metrics().size() >= 2; })) << coordinator->Log();
  coordinator->Signal(SIGKILL);
  ASSERT_EQ(coordinator->Wait(10).value_or(-1), 128 + SIGKILL);
  auto restarted = fed.StartCoordinator();
  ASSERT_EQ(restarted->Wait(240).value_or(-1), 0) << restarted->Log();
  EXPECT_THAT(restarted->Log(), HasSubstr("resuming after round"));
  for (auto& site : running) EXPECT_EQ(site->Wait(30).value_or(-1), 0) << site->Log();
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 4u);
  EXPECT_GT(metrics[3]["accuracy"].get<double>(), 0.85) << metrics[3].dump();
  // The sites pooled their moments once, before the crash; the restart did not ask again.
  int pooled = 0;
  for (const auto& r : fed.Audit()) pooled += r["event"] == "standardization_pooled";
  EXPECT_EQ(pooled, 1);
  fed.ExpectRecordsReconcile(sites);
}

TEST(FederationTest, ASiteWhosePolicyDoesNotAllowTheModelRefusesItOnBothRecords) {
  const std::string dir = FreshDir();
  const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
  // gamma refuses the evaluations too, and the coordinator waits out their deadline.
  Federation fed(dir, sites, Settings{.rounds = 1, .min_sites = 2, .evaluate_timeout = 4});
  // gamma holds the file but its officer has not approved the hash: it is never loaded.
  MakeStudy(fed, sites, SourcePath("examples/breast-cancer/mlp.pt"), {"alpha", "beta"});
  // gamma joins first: with min_sites = 2, a round planned before a slow gamma joined would
  // leave it out, and it would never see the plan it must refuse.
  auto coordinator = fed.StartCoordinator();
  auto gamma = fed.StartSite("gamma");
  ASSERT_TRUE(WaitFor(
      120, [&] { return coordinator->Log().find("site gamma joined") != std::string::npos; }))
      << coordinator->Log() << gamma->Log();
  auto alpha = fed.StartSite("alpha");
  auto beta = fed.StartSite("beta");
  EXPECT_EQ(coordinator->Wait(300).value_or(-1), 0) << coordinator->Log();
  for (auto* site : {alpha.get(), beta.get(), gamma.get()}) {
    EXPECT_EQ(site->Wait(30).value_or(-1), 0) << site->Log();
  }
  const std::string log = coordinator->Log();
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 2u) << log;
  EXPECT_EQ(metrics[1]["sites"].get<int>(), 2) << log;
  const std::string egress = ReadText(fed.Egress("gamma"));
  EXPECT_THAT(egress, HasSubstr("plan_refused"));
  EXPECT_THAT(egress, HasSubstr("does not allow (policy.allowed_models)"));
  bool declined = false;
  for (const auto& record : fed.Audit()) {
    if (record.value("event", "") == "site_declined" &&
        record["fields"].value("site", "") == "gamma") {
      declined = true;
      EXPECT_THAT(record["fields"].value("reason", ""), HasSubstr("policy.allowed_models"));
    }
  }
  EXPECT_TRUE(declined) << ReadText(fed.state() + "/audit.jsonl");
  std::string gamma_log = ReadText(dir + "/gamma.log");
  EXPECT_THAT(gamma_log, HasSubstr("not loaded"));
}

TEST(FederationTest, SecureAggregationTrainsLikePlaintext) {
  std::string dir = FreshDir();
  const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
  // 3,000 test examples per site: half a point is 45 of them, not 7.
  const Settings secure{.rounds = 2, .min_sites = 3, .test_limit = 3000, .secure = true};
  Settings plaintext = secure;
  plaintext.secure = false;
  Federation fed(dir, sites, secure);
  Federation plain(FreshDir("plaintext"), sites, plaintext);
  const std::string secure_log = RunToEnd(fed, sites);
  EXPECT_THAT(secure_log, HasSubstr("unmasked the sum of 3 sites"));
  const std::string plain_log = RunToEnd(plain, sites);
  auto metrics = fed.Metrics();
  auto reference = plain.Metrics();
  ASSERT_EQ(metrics.size(), 3u);
  ASSERT_EQ(reference.size(), 3u);
  EXPECT_GT(metrics[2]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.3);
  // Same seeds, same data, same cohorts: masking, quantization and the in-vector weight cost
  // less than half a point of accuracy against the plaintext sum.
  for (int r = 1; r <= 2; ++r) {
    ASSERT_EQ(metrics[r]["sites"].get<int>(), 3) << "round " << r << "\n" << secure_log;
    ASSERT_EQ(reference[r]["sites"].get<int>(), 3) << "round " << r << "\n" << plain_log;
    EXPECT_NEAR(metrics[r]["accuracy"].get<double>(), reference[r]["accuracy"].get<double>(), 0.005)
        << "round " << r << "\n"
        << secure_log;
  }
  // The coordinator saw no site's example count, only the total.
  EXPECT_EQ(metrics[2]["examples"].get<int64_t>(), reference[2]["examples"].get<int64_t>());

  // The reviewer's view: ledgers reconcile, and the report states who took part under which
  // protections, from the verified audit log.
  fed.ExpectRecordsReconcile({"alpha", "beta", "gamma"});
  std::string out;
  ASSERT_EQ(RunCommand({BuildPath("tools/hansa"), "report", fed.state(), "--ca",
                        fed.kit() + "/ca/ca.pem", "--out", dir + "/report"},
                       &out),
            0)
      << out;
  nlohmann::json report = nlohmann::json::parse(ReadText(dir + "/report/report.json"));
  EXPECT_TRUE(report["audit"]["verified"].get<bool>()) << report["audit"].dump();
  EXPECT_EQ(report["participants"].size(), 3u);
  ASSERT_EQ(report["rounds"].size(), 2u);
  for (const auto& round : report["rounds"]) {
    EXPECT_EQ(round["aggregation"], "secure");
    EXPECT_EQ(round["secure_aggregation"]["num_sites"], 3);
    EXPECT_EQ(round["attempts"], 1) << round.dump();
    EXPECT_EQ(round["consented"].size(), 3u) << round.dump();
    EXPECT_EQ(round["updates"].size(), 3u) << round.dump();
    EXPECT_EQ(round["aggregated_sites"].size(), 3u) << round.dump();
  }
}

TEST(FederationTest, MaliciousCoordinatorChecksAndTheWideRingRunEndToEnd) {
  std::string dir = FreshDir();
  const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
  Federation fed(dir, sites, Settings{.rounds = 1, .min_sites = 3, .secure = true});
  // 31-bit quantization: three sums of 2^31 levels overflow Z_2^32, so the ring is Z_2^64.
  // Sites sign the survivor set they were shown, with keys bound to their certificates.
  ReplaceInFile(fed.kit() + "/coordinator/coordinator.toml", "[aggregation]\n",
                "[aggregation]\nmalicious_coordinator_checks = true\nbits = 31\n");
  std::string log = RunToEnd(fed, sites);
  EXPECT_THAT(log, HasSubstr("64-bit ring, malicious-coordinator checks"));
  EXPECT_THAT(log, HasSubstr("unmasked the sum of 3 sites"));
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[1]["sites"].get<int>(), 3);
  EXPECT_GT(metrics[1]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.3);
  for (const auto& r : fed.Audit()) {
    if (r["event"] != "round_planned") continue;
    EXPECT_EQ(r["fields"]["attempt"], 0);
    EXPECT_EQ(r["fields"]["secure_aggregation"]["min_survivors"], 3);
    EXPECT_EQ(r["fields"]["secure_aggregation"]["ring_bits"], 64);
    EXPECT_EQ(r["fields"]["secure_aggregation"]["malicious"], true);
  }
}

TEST(FederationTest, SiteKilledAfterItsMaskedUploadIsStillInTheSum) {
  std::string dir = FreshDir();
  // The smallest cohort, three sites (k = t = 2): each survivor's self-mask seed is rebuilt
  // from its own share and the other survivor's. All three must be in the cohort, so the
  // evaluation round needs gamma back too.
  Federation fed(dir, {"alpha", "beta", "gamma"},
                 Settings{.rounds = 1, .min_sites = 3, .evaluate_timeout = 5, .secure = true});
  // gamma trains on a small shard and uploads first; the others take seconds longer, so
  // gamma is dead before the unmasking stage asks it for shares.
  for (const char* slow : {"alpha", "beta"}) {
    ReplaceInFile(fed.kit() + "/sites/" + slow + "/site.toml", "train_limit = 1500",
                  "train_limit = 20000");
  }
  ReplaceInFile(fed.kit() + "/sites/gamma/site.toml", "train_limit = 1500", "train_limit = 300");
  auto coordinator = fed.StartCoordinator();
  auto alpha = fed.StartSite("alpha");
  auto beta = fed.StartSite("beta");
  auto gamma = fed.StartSite("gamma");
  ASSERT_TRUE(WaitFor(180, [&] {
    return gamma->Log().find("masked update accepted") != std::string::npos;
  })) << gamma->Log();
  gamma->Signal(SIGKILL);
  // Once the sum is out, gamma comes back: the evaluation round needs all three again.
  ASSERT_TRUE(WaitFor(240, [&] {
    return coordinator->Log().find("unmasked the sum of") != std::string::npos;
  })) << coordinator->Log();
  gamma->Wait(5);
  gamma = fed.StartSite("gamma");
  ASSERT_EQ(coordinator->Wait(240).value_or(-1), 0) << coordinator->Log();
  for (auto* site : {alpha.get(), beta.get(), gamma.get()}) {
    ASSERT_EQ(site->Wait(30).value_or(-1), 0) << site->Log();
  }
  // The survivors' shares rebuild gamma's self mask: its input stays in the sum.
  EXPECT_THAT(coordinator->Log(), HasSubstr("no answer in time from gamma (SECAGG_UNMASK)"));
  EXPECT_THAT(coordinator->Log(), HasSubstr("unmasked the sum of 3 sites"));
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[1]["sites"].get<int>(), 3);
  EXPECT_GT(metrics[1]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.3);
  bool dropped_at_unmask = false;
  for (const auto& r : fed.Audit()) {
    dropped_at_unmask |= r["event"] == "site_dropped" && r["fields"]["site"] == "gamma" &&
                         r["fields"]["stage"] == "unmask";
  }
  EXPECT_TRUE(dropped_at_unmask);
}

// A site's plan refusals in its egress ledger, each checked to give `reason`; the site must
// have sent no update.
int RefusalsFor(const std::string& egress, const std::string& reason) {
  int refused = 0;
  for (const auto& r : ReadJsonLines(egress)) {
    if (r["event"] == "plan_refused") {
      ++refused;
      EXPECT_THAT(r["fields"]["reason"].get<std::string>(), HasSubstr(reason));
    }
    EXPECT_FALSE(r["event"] == "message_sent" && r["fields"]["type"] == "upload") << r.dump();
  }
  return refused;
}

// The last epsilon a site's egress ledger records, and how many plans it accepted.
// A site's client-level epsilon spent so far, and how many updates it sent (each booked).
std::pair<double, int> SpentAndContributed(const std::string& egress) {
  double epsilon = 0;
  int contributed = 0;
  for (const auto& r : ReadJsonLines(egress)) {
    if (r["event"] == "privacy_spent") epsilon = r["fields"]["epsilon"].get<double>();
    contributed += r["event"] == "contribution_spent";
  }
  return {epsilon, contributed};
}

TEST(FederationTest, ClientLevelPrivacyIsSpentAndEnforcedByTheCoordinatorAndBySites) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha", "beta", "gamma", "delta"},
                 Settings{.rounds = 3, .min_sites = 3, .evaluate_timeout = 10, .secure = true});
  // The distributed discrete Gaussian, with little noise so that four sites still learn.
  DdgParams p;
  p.dimension = BuiltinModelLayout("mlp")->TotalElements();
  p.clip_norm = 2;
  p.granularity = 1e-5;
  p.noise_multiplier = 0.005;
  p.min_survivors = 3;
  std::vector<double> eps;
  for (int rounds = 1; rounds <= 3; ++rounds) {
    auto spent = DdgEpsilon(p, rounds, 1e-5);
    ASSERT_TRUE(spent.ok()) << spent.status();
    eps.push_back(spent->epsilon);
  }
  ASSERT_LT(eps[0], eps[1]);
  ASSERT_LT(eps[1], eps[2]);
  // The federation's budget fits two rounds of the three configured; delta's own budget fits
  // none, so it refuses every plan, whatever the coordinator says.
  AppendText(fed.kit() + "/coordinator/coordinator.toml",
             Federation::absl_format("[privacy]\nmechanism = \"distributed_discrete_gaussian\"\n"
                                     "clip_norm = 2\ngranularity = 1e-5\nnoise_multiplier = 0.005\n"
                                     "epsilon = %.17g\ndelta = 1e-5\n",
                                     (eps[1] + eps[2]) / 2));
  ReplaceInFile(fed.kit() + "/sites/delta/site.toml", "[policy]\n",
                Federation::absl_format("[policy]\nmax_epsilon = %.17g\n", eps[0] / 2));
  ReplaceInFile(fed.kit() + "/sites/alpha/site.toml", "[policy]\n",
                Federation::absl_format("[policy]\nmax_epsilon = %.17g\n", eps[2] * 2));
  std::string log = RunToEnd(fed, {"alpha", "beta", "gamma", "delta"});
  EXPECT_THAT(log, HasSubstr("training stops after round 2"));
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 3u);  // rounds 0, 1, 2: the third would exceed the budget
  for (int r = 1; r <= 2; ++r) {
    EXPECT_EQ(metrics[r]["sites"].get<int>(), 3) << metrics[r].dump();
    EXPECT_NEAR(metrics[r]["epsilon"].get<double>(), eps[r - 1], 1e-9 * eps[r - 1]);
  }
  EXPECT_GT(metrics[2]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.2);
  int spent_records = 0;
  for (const auto& r : fed.Audit()) spent_records += r["event"] == "privacy_spent";
  EXPECT_EQ(spent_records, 2);
  // delta refused for its budget; alpha booked every round it accepted.
  EXPECT_GE(
      RefusalsFor(fed.Egress("delta"), "would exceed this site's client-level privacy budget"), 1);
  // alpha books each update it sends, once (a retried round is a new contribution), and not
  // the plans it only answered: at least the two rounds released.
  const auto [alpha_epsilon, contributed] = SpentAndContributed(fed.Egress("alpha"));
  ASSERT_GE(contributed, 2);
  auto booked = DdgEpsilon(p, contributed, 1e-5);
  ASSERT_TRUE(booked.ok());
  EXPECT_NEAR(alpha_epsilon, booked->epsilon, 1e-9 * booked->epsilon);
  fed.ExpectRecordsReconcile({"alpha", "beta", "gamma", "delta"});
}

// Record-level DP-SGD: every site trains privately under the plan's parameters; the
// coordinator stops at its budget, and each site keeps and enforces its own.
TEST(FederationTest, RecordLevelPrivacyIsSpentAndEnforcedByTheCoordinatorAndBySites) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha", "beta", "gamma"}, Settings{.rounds = 3, .min_sites = 2});
  const double q = 0.04, z = 0.8;
  const int steps = 25;  // one epoch's worth of a 1,500-example shard at q
  std::vector<double> eps;
  for (int rounds = 1; rounds <= 3; ++rounds) {
    auto spent = SampledGaussianEpsilon(q, z, steps * rounds, 1e-5);
    ASSERT_TRUE(spent.ok()) << spent.status();
    eps.push_back(spent->epsilon);
  }
  AppendText(fed.kit() + "/coordinator/coordinator.toml",
             Federation::absl_format("[record_privacy]\nenabled = true\nclip_norm = 1\n"
                                     "noise_multiplier = %g\nsampling_rate = %g\n"
                                     "steps_per_round = %d\nepsilon = %.17g\ndelta = 1e-5\n",
                                     z, q, steps, (eps[1] + eps[2]) / 2));
  // gamma's own budget fits no round; alpha's fits all three; beta only requires DP-SGD.
  ReplaceInFile(fed.kit() + "/sites/gamma/site.toml", "[policy]\n",
                Federation::absl_format("[policy]\nmax_record_epsilon = %.17g\n", eps[0] / 2));
  ReplaceInFile(fed.kit() + "/sites/alpha/site.toml", "[policy]\n",
                Federation::absl_format("[policy]\nmax_record_epsilon = %.17g\n", eps[2] * 2));
  ReplaceInFile(fed.kit() + "/sites/beta/site.toml", "[policy]\n",
                "[policy]\nrequire_record_dp = true\n");
  std::string log = RunToEnd(fed, {"alpha", "beta", "gamma"});
  EXPECT_THAT(log, HasSubstr("training stops after round 2"));
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 3u);  // rounds 0, 1, 2: the third would exceed the budget
  for (int r = 1; r <= 2; ++r) {
    EXPECT_EQ(metrics[r]["sites"].get<int>(), 2) << metrics[r].dump();
    EXPECT_NEAR(metrics[r]["record_epsilon"].get<double>(), eps[r - 1], 1e-9 * eps[r - 1]);
    EXPECT_FALSE(metrics[r].contains("epsilon")) << "no client-level privacy was asked for";
  }
  EXPECT_GT(metrics[2]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.2);
  int spent_records = 0;
  for (const auto& r : fed.Audit()) {
    if (r["event"] == "round_planned") {
      EXPECT_EQ(r["fields"]["record_privacy"]["steps"].get<int>(), steps) << r.dump();
    }
    if (r["event"] != "privacy_spent") continue;
    ++spent_records;
    EXPECT_EQ(r["fields"]["guarantee"], "record-level") << r.dump();
  }
  EXPECT_EQ(spent_records, 2);
  EXPECT_GE(
      RefusalsFor(fed.Egress("gamma"), "would exceed this site's record-level privacy budget"), 1);
  // alpha booked every update it sent, in its own ledger file too.
  const auto [alpha_epsilon, accepted] = SpentAndContributed(fed.Egress("alpha"));
  ASSERT_GE(accepted, 2);
  auto booked = SampledGaussianEpsilon(q, z, steps * accepted, 1e-5);
  ASSERT_TRUE(booked.ok());
  EXPECT_NEAR(alpha_epsilon, booked->epsilon, 1e-6 * booked->epsilon);
  EXPECT_TRUE(std::filesystem::exists(fed.kit() + "/sites/alpha/state/record_privacy.json"));
  std::string table;
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "metrics", fed.state()}, &table), 0) << table;
  EXPECT_THAT(table, HasSubstr("record eps"));
  EXPECT_THAT(table, Not(HasSubstr("site eps")));
  fed.ExpectRecordsReconcile({"alpha", "beta", "gamma"});
}

// A site spanning two processes (Gloo on loopback): rank 0 is the site the coordinator sees,
// rank 1 only trains with it and leaves when the federation is done.
TEST(FederationTest, DataParallelSiteTrainsWithOnlyRankZeroTalkingToTheCoordinator) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha", "beta"}, Settings{.rounds = 2, .min_sites = 2});
  AppendText(
      fed.kit() + "/sites/alpha/site.toml",
      Federation::absl_format("world_size = 2\nrendezvous = \"127.0.0.1:%d\"\n", FreePort()));
  auto coordinator = fed.StartCoordinator();
  auto alpha = fed.StartSite("alpha");
  auto alpha_rank1 = std::make_unique<Process>(
      std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                               fed.kit() + "/sites/alpha/site.toml", "--rank", "1"},
      dir + "/alpha-rank1.log");
  auto beta = fed.StartSite("beta");
  EXPECT_EQ(coordinator->Wait(300).value_or(-1), 0) << coordinator->Log();
  EXPECT_EQ(alpha->Wait(30).value_or(-1), 0) << alpha->Log();
  EXPECT_EQ(beta->Wait(30).value_or(-1), 0) << beta->Log();
  EXPECT_EQ(alpha_rank1->Wait(30).value_or(-1), 0) << alpha_rank1->Log();
  auto metrics = fed.Metrics();
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_EQ(metrics[2]["sites"].get<int>(), 2);
  EXPECT_GT(metrics[2]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.3);
  const std::string rank1 = alpha_rank1->Log();
  int rounds_trained = 0;
  for (size_t at = rank1.find("trained"); at != std::string::npos;
       at = rank1.find("trained", at + 1)) {
    ++rounds_trained;
  }
  EXPECT_EQ(rounds_trained, 2) << rank1;
  EXPECT_THAT(rank1, HasSubstr("rank 0 stopped; data-parallel rank exiting"));
  // The coordinator admitted two sites, and nothing from the second process.
  int admitted = 0;
  for (const auto& r : fed.Audit()) admitted += r["event"] == "site_admitted";
  EXPECT_EQ(admitted, 2);
  fed.ExpectRecordsReconcile({"alpha", "beta"});
}

TEST(FederationTest, CtrlCStopsTheCoordinatorCleanly) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha"}, Settings{.rounds = 1, .min_sites = 1});
  auto coordinator = fed.StartCoordinator();
  ASSERT_TRUE(WaitFor(60, [&] {
    return coordinator->Log().find("listening on") != std::string::npos;
  })) << coordinator->Log();
  coordinator->Signal(SIGINT);
  ASSERT_EQ(coordinator->Wait(20).value_or(-1), 0) << coordinator->Log();
  EXPECT_THAT(coordinator->Log(), HasSubstr("shutting down"));
  EXPECT_THAT(coordinator->Log(), HasSubstr("restart with the same command to resume"));
  // Its records are closed properly: the next start continues them. (Both runs write the
  // same log file: wait for the second "listening on".)
  auto again = fed.StartCoordinator();
  ASSERT_TRUE(WaitFor(60, [&] {
    std::string log = again->Log();
    size_t first = log.find("listening on");
    return first != std::string::npos && log.find("listening on", first + 1) != std::string::npos;
  })) << again->Log();
  again->Signal(SIGTERM);
  ASSERT_EQ(again->Wait(20).value_or(-1), 0) << again->Log();
  std::string out;
  EXPECT_EQ(fed.AuditCommand({"verify", fed.state() + "/audit.jsonl"}, &out), 0) << out;
}

TEST(FederationTest, BadConfigurationsFailWithClearMessages) {
  std::string dir = FreshDir();
  Federation fed(dir, {"alpha"}, Settings{.rounds = 1, .min_sites = 1});
  std::string out;
  // A typo in coordinator.toml.
  ReplaceInFile(fed.kit() + "/coordinator/coordinator.toml", "[rounds]\n",
                "[rounds]\nmin_site = 3\n");
  EXPECT_EQ(RunCommand({BuildPath("coordinator/hansa-coordinator"), "--config",
                        fed.kit() + "/coordinator/coordinator.toml"},
                       &out),
            2);
  EXPECT_THAT(out, HasSubstr("unknown key 'rounds.min_site'"));
  // A missing site.toml.
  EXPECT_EQ(
      RunCommand({BuildPath("client/hansa-client"), "--once", "--config", dir + "/nope/site.toml"},
                 &out),
      2);
  EXPECT_THAT(out, HasSubstr("nope/site.toml"));
  // A kit whose key belongs to another certificate.
  std::filesystem::copy_file(fed.kit() + "/coordinator/key.pem", fed.kit() + "/sites/alpha/key.pem",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(RunCommand({BuildPath("client/hansa-client"), "--once", "--config",
                        fed.kit() + "/sites/alpha/site.toml"},
                       &out),
            2);
  EXPECT_THAT(out, HasSubstr("is not the key of"));
}

}  // namespace
}  // namespace hansa::testing
