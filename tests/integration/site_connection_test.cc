// hansa-client's connection to its coordinator as real processes on loopback: how it ends on
// SIGTERM, the coordinator pin in every TLS handshake, and the cap on a declared model size.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "client/link/grpc_link.h"
#include "common/crypto/sha256.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "common/pki/key.h"
#include "common/tensor/safetensors.h"
#include "hansa/v1/hansa.grpc.pb.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Process> StartClient(const std::string& kit, const std::string& site,
                                     const std::string& log) {
  return std::make_unique<Process>(
      std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                               kit + "/sites/" + site + "/site.toml"},
      log);
}

std::unique_ptr<Process> StartCoordinator(const std::string& folder, const std::string& log) {
  return std::make_unique<Process>(
      std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                               folder + "/coordinator.toml"},
      log);
}

// Polls the log every millisecond, so a signal can follow a line within the moments the
// process needs to exit.
bool WaitForLine(Process& p, const std::string& text, double seconds) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < until) {
    if (p.Log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

int CountEvents(const std::vector<nlohmann::json>& records, const std::string& event,
                const std::string& type = "") {
  int n = 0;
  for (const auto& r : records) {
    if (r["event"] != event) continue;
    if (!type.empty() && r["fields"]["type"] != type) continue;
    ++n;
  }
  return n;
}

TEST(SiteConnectionTest, SigtermWhileReconnectingOrAtExitEndsWithAnExitStatus) {
  std::string dir = FreshDir();
  std::string kit = Provision(dir, {"alpha"}, FreePort());  // nobody listens on that port
  std::string config = kit + "/sites/alpha/site.toml";
  ReplaceInFile(config, "[site]\n", "[site]\nreconnect_seconds = 1\nrpc_timeout_seconds = 1\n");
  for (int run = 0; run < 8; ++run) {
    SCOPED_TRACE(::testing::Message() << "run " << run);
    const bool at_exit = run % 2 == 1;
    if (!at_exit) {
      ReplaceInFile(config, "reconnect_seconds = 1\n", "reconnect_seconds = 60\n");
    }
    auto site = StartClient(kit, "alpha", dir + "/run-" + std::to_string(run) + ".log");
    // Reconnecting: the first retry is announced. At exit: the site has given up and main is
    // returning, the moment the detached signal thread used to crash in.
    ASSERT_TRUE(WaitForLine(*site, at_exit ? "unreachable" : "retrying in", 60)) << site->Log();
    site->Signal(SIGTERM);
    std::optional<int> code = site->Wait(30);
    ASSERT_TRUE(code.has_value()) << site->Log();
    // An exit status, never death by a signal (128 + n).
    EXPECT_EQ(*code, at_exit ? 1 : 0) << site->Log();
    if (!at_exit) {
      EXPECT_THAT(site->Log(), HasSubstr("signal 15 received"));
      ReplaceInFile(config, "reconnect_seconds = 60\n", "reconnect_seconds = 1\n");
    }
  }
}

// A site that gives up on a coordinator it cannot reach exits with status 1, never a crash.
// gRPC's threads outlive main (gRPC 1.51 stays initialised once its event engine exists), and
// one of them, still retrying, built a TLS context after OpenSSL's exit handler had freed its
// locks: SIGSEGV in 10 of 36 exits after a 30 s attempt (the length at which it was
// seen), none after 1 or 6 s. Six sites at once give up after 30 s each: before the fix, one of
// them crashed in each of three runs.
TEST(SiteConnectionTest, ASiteThatGivesUpExitsWithAStatusNotACrash) {
  const std::string dir = FreshDir();
  const std::vector<std::string> names = {"s0", "s1", "s2", "s3", "s4", "s5"};
  const std::string kit = Provision(dir, names, FreePort());  // nobody listens on that port
  std::vector<std::unique_ptr<Process>> sites;
  for (const std::string& name : names) {
    ReplaceInFile(kit + "/sites/" + name + "/site.toml", "[site]\n",
                  "[site]\nreconnect_seconds = 1\nrpc_timeout_seconds = 30\n");
    sites.push_back(StartClient(kit, name, dir + "/" + name + ".log"));
  }
  for (auto& site : sites) {
    std::optional<int> code = site->Wait(120);
    ASSERT_TRUE(code.has_value()) << site->Log();
    EXPECT_EQ(*code, 1) << "an exit status of 128 + n is death by signal n\n" << site->Log();
    EXPECT_THAT(site->Log(), HasSubstr("coordinator unreachable"));
  }
}

// --state-dir puts each program's state where a service manager's StateDirectory is, instead
// of the folder the kit's config names (which a hardened service cannot write).
TEST(SiteConnectionTest, StateDirFlagPutsTheStateWhereAServiceWantsIt) {
  const std::string dir = FreshDir();
  const std::string kit = Provision(dir, {"alpha", "beta", "gamma"}, FreePort());
  const std::string coordinator_state = dir + "/var/lib/hansa-coordinator";
  const std::string site_state = dir + "/var/lib/hansa/study";
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config",
                       kit + "/coordinator/coordinator.toml", "--state-dir", coordinator_state},
                      dir + "/coordinator.log");
  ASSERT_TRUE(WaitForLine(coordinator, "state in " + coordinator_state, 60)) << coordinator.Log();
  Process site({BuildPath("client/hansa-client"), "--once", "--config",
                kit + "/sites/alpha/site.toml", "--state-dir", site_state},
               dir + "/alpha.log");
  ASSERT_TRUE(WaitForLine(site, "joined federation", 60)) << site.Log() << coordinator.Log();
  site.Signal(SIGTERM);
  coordinator.Signal(SIGTERM);
  EXPECT_TRUE(site.Wait(30).has_value()) << site.Log();
  EXPECT_TRUE(coordinator.Wait(30).has_value()) << coordinator.Log();
  EXPECT_TRUE(std::filesystem::exists(coordinator_state + "/audit.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(site_state + "/egress.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(kit + "/coordinator/state/audit.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(kit + "/sites/alpha/state/egress.jsonl"));
}

// Copies the provisioned coordinator folder to `folder` with a certificate and key of its own,
// issued by the federation's CA for the same name and addresses: an impostor the CA vouches
// for. Returns the impostor's certificate fingerprint.
std::string MakeImpostor(const std::string& kit, const std::string& folder) {
  std::filesystem::create_directories(folder);
  for (const char* f : {"coordinator.toml", "ca.pem"}) {
    std::filesystem::copy_file(kit + "/coordinator/" + f, folder + "/" + f);
  }
  auto ca = CertificateAuthority::Load(kit + "/ca/ca.pem", kit + "/ca/ca-key.pem");
  EXPECT_TRUE(ca.ok()) << ca.status();
  auto key = PrivateKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  CertificateRequest req;
  req.subject = {"coordinator", "Test Coordinator", "DE"};
  req.server_auth = true;
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1"};
  auto cert = ca->Issue(req, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  std::ofstream(folder + "/cert.pem") << cert->ToPem();
  std::ofstream(folder + "/key.pem") << *key->ToPem();
  return cert->Sha256Fingerprint();
}

TEST(SiteConnectionTest, CoordinatorPinIsCheckedInEveryHandshakeBeforeTheJoinLeaves) {
  std::string dir = FreshDir();
  // Three sites: secure aggregation's minimum, so the real coordinator only waits for them.
  std::string kit = Provision(dir, {"alpha", "beta", "gamma"}, FreePort());
  const std::string site_toml = kit + "/sites/alpha/site.toml";
  ReplaceInFile(site_toml, "[site]\n", "[site]\nreconnect_seconds = 60\nrpc_timeout_seconds = 5\n");
  const std::string pinned = [&] {
    std::string text = ReadText(site_toml);
    size_t at = text.find("coordinator_fingerprint = \"") + 27;
    return text.substr(at, 64);
  }();
  const std::string impostor_dir = dir + "/impostor";
  const std::string impostor_fp = MakeImpostor(kit, impostor_dir);
  ASSERT_NE(impostor_fp, pinned);
  const std::string egress = kit + "/sites/alpha/state/egress.jsonl";
  const std::string impostor_audit = impostor_dir + "/state/audit.jsonl";
  auto expect_refused = [&](Process& site) {
    ASSERT_EQ(site.Wait(60).value_or(-1), 1) << site.Log();
    std::string log = site.Log();
    EXPECT_THAT(log, HasSubstr("coordinator certificate fingerprint " + impostor_fp +
                               " is not the one this site's policy trusts (" + pinned));
    EXPECT_THAT(log, HasSubstr("[policy] coordinator_fingerprint in site.toml"));
    EXPECT_THAT(log, HasSubstr("nothing was sent"));
    EXPECT_EQ(CountEvents(ReadJsonLines(impostor_audit), "site_admitted"), 0);
  };

  {  // First connection: the impostor is refused in the handshake; no join is recorded.
    auto impostor = StartCoordinator(impostor_dir, dir + "/impostor.log");
    ASSERT_TRUE(WaitForLine(*impostor, "listening on", 60)) << impostor->Log();
    auto site = StartClient(kit, "alpha", dir + "/alpha-1.log");
    expect_refused(*site);
    EXPECT_EQ(CountEvents(ReadJsonLines(egress), "message_sent", "join"), 0) << ReadText(egress);
    impostor->Signal(SIGTERM);
    ASSERT_EQ(impostor->Wait(30).value_or(-1), 0) << impostor->Log();
  }
  // The pinned coordinator: the site joins. Then the coordinator goes and the impostor takes
  // its port: the site's reconnection is refused the same way.
  auto coordinator = StartCoordinator(kit + "/coordinator", dir + "/coordinator.log");
  auto site = StartClient(kit, "alpha", dir + "/alpha-2.log");
  ASSERT_TRUE(WaitForLine(*site, "joined federation", 60)) << site->Log();
  EXPECT_EQ(CountEvents(ReadJsonLines(egress), "message_sent", "join"), 1) << ReadText(egress);
  coordinator->Signal(SIGKILL);
  coordinator->Wait(10);
  auto impostor = StartCoordinator(impostor_dir, dir + "/impostor-2.log");
  expect_refused(*site);
  EXPECT_EQ(CountEvents(ReadJsonLines(egress), "message_sent", "join"), 1) << ReadText(egress);
}

// A coordinator that admits any site of the CA, plans one plaintext round whose global model
// it declares to be `declared_bytes` long, and sends only the header of that model; or, as a
// hostile coordinator might, a download stream that is not a model at all (`Reply`).
class OversizedModelCoordinator final : public v1::Coordinator::Service {
 public:
  enum class Reply {
    kHeaderOnly,  // the header, then the stream ends well
    kNothing,     // no message, and the stream ends well
    kDataFirst,   // data chunks with no header before them
    kTwoHeaders,  // the header, then a second header where data belongs
  };
  explicit OversizedModelCoordinator(uint64_t declared_bytes, Reply reply = Reply::kHeaderOnly)
      : declared_(declared_bytes), reply_(reply) {}

  v1::RoundPlan Plan() const {
    v1::RoundPlan plan;
    plan.set_round(1);
    plan.set_attempt(1);
    plan.set_model_name("mlp");
    plan.set_global_model_sha256(std::string(64, 'a'));
    plan.set_global_model_bytes(declared_);
    plan.set_aggregation_mode(v1::AGGREGATION_PLAINTEXT);
    plan.set_chunk_bytes(1 << 20);
    plan.add_cohort("alpha");
    plan.mutable_training()->set_epochs(1);
    plan.mutable_training()->set_batch_size(32);
    plan.mutable_training()->set_learning_rate(0.05);
    return plan;
  }
  int downloads() const { return downloads_; }

  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest*, v1::JoinReply* reply) override {
    reply->set_site("alpha");
    reply->set_federation("test");
    return grpc::Status::OK;
  }
  grpc::Status GetTask(grpc::ServerContext*, const v1::TaskRequest* request,
                       v1::Task* task) override {
    if (!planned_.exchange(true)) {
      task->set_kind(v1::Task::TRAIN);
      *task->mutable_plan() = Plan();
      return grpc::Status::OK;
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min<uint32_t>(request->wait_ms(), 200)));
    task->set_kind(v1::Task::WAIT);
    return grpc::Status::OK;
  }
  grpc::Status RespondToPlan(grpc::ServerContext*, const v1::PlanResponse*, v1::PlanAck*) override {
    return grpc::Status::OK;
  }
  grpc::Status DownloadModel(grpc::ServerContext*, const v1::DownloadRequest*,
                             grpc::ServerWriter<v1::Chunk>* writer) override {
    ++downloads_;
    v1::Chunk header;
    header.mutable_header()->set_round(1);
    header.mutable_header()->set_total_bytes(declared_);
    header.mutable_header()->set_sha256(std::string(64, 'a'));
    v1::Chunk data;
    data.set_offset(0);
    data.set_data(std::string(16, 'x'));
    switch (reply_) {
      case Reply::kHeaderOnly:
        writer->Write(header);
        break;
      case Reply::kNothing:
        break;
      case Reply::kDataFirst:
        for (int i = 0; i < 3; ++i) writer->Write(data);
        break;
      case Reply::kTwoHeaders:
        writer->Write(header);
        writer->Write(header);
        break;
    }
    return grpc::Status::OK;
  }

 private:
  const uint64_t declared_;
  const Reply reply_;
  std::atomic<bool> planned_{false};
  std::atomic<int> downloads_{0};
};

TlsFiles KitTls(const std::string& folder) {
  return TlsFiles{ReadText(folder + "/cert.pem"), ReadText(folder + "/key.pem"),
                  ReadText(folder + "/ca.pem")};
}

// Mutual TLS 1.3 on 127.0.0.1 with the coordinator's kit, as the real coordinator serves.
std::unique_ptr<grpc::Server> Serve(grpc::Service* service, const TlsFiles& tls, int* port) {
  auto creds = MakeServerCredentials(tls);
  EXPECT_TRUE(creds.ok()) << creds.status();
  if (!creds.ok()) return nullptr;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", *creds, port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

TEST(SiteConnectionTest, SiteRefusesADeclaredModelAboveItsLimitBeforeReceivingIt) {
  std::string dir = FreshDir();
  std::string kit = Provision(dir, {"alpha"}, FreePort());
  OversizedModelCoordinator fake(2 << 20);
  int port = 0;
  auto server = Serve(&fake, KitTls(kit + "/coordinator"), &port);
  ASSERT_NE(server, nullptr);
  const std::string site_toml = kit + "/sites/alpha/site.toml";
  std::string text = ReadText(site_toml);
  size_t at = text.find("coordinator = \"127.0.0.1:");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, text.find('\n', at) - at,
               "coordinator = \"127.0.0.1:" + std::to_string(port) + "\"");
  std::ofstream(site_toml, std::ios::trunc) << text;
  ReplaceInFile(site_toml, "[policy]\n",
                "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n"
                "max_model_bytes = 1048576\n");
  AppendText(site_toml, "train_limit = 100\ntest_limit = 100\n[compute]\nthreads = 1\n");
  auto site = StartClient(kit, "alpha", dir + "/alpha.log");
  ASSERT_TRUE(WaitForLine(*site, "declares", 120)) << site->Log();
  EXPECT_THAT(site->Log(),
              HasSubstr("the global model of round 1 (policy.max_model_bytes in site.toml) "
                        "declares 2097152 bytes, more than the limit of 1048576 bytes"));
  EXPECT_EQ(fake.downloads(), 1);
  site->Signal(SIGTERM);
  EXPECT_EQ(site->Wait(30).value_or(-1), 0) << site->Log();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

TEST(SiteConnectionTest, GrpcSiteLinkRefusesADeclaredModelAboveTheCapBeforeReserving) {
  std::string dir = FreshDir();
  std::string kit = Provision(dir, {"alpha"}, FreePort());
  const uint64_t declared = kDefaultMaxModelBytes * 8;  // 64 GiB: reserving it would fail
  OversizedModelCoordinator fake(declared);
  int port = 0;
  auto server = Serve(&fake, KitTls(kit + "/coordinator"), &port);
  ASSERT_NE(server, nullptr);
  auto creds = MakeClientCredentials(KitTls(kit + "/sites/alpha"));
  ASSERT_TRUE(creds.ok()) << creds.status();
  GrpcSiteLink link(grpc::CreateChannel("127.0.0.1:" + std::to_string(port), *creds),
                    GrpcLinkOptions());
  auto model = link.Download(fake.Plan(), kDefaultMaxModelBytes);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
  EXPECT_THAT(std::string(model.status().message()),
              HasSubstr(absl::StrCat(
                  "the global model of round 1 (policy.max_model_bytes in site.toml) "
                  "declares ",
                  declared, " bytes, more than the limit of ", kDefaultMaxModelBytes, " bytes")));
  EXPECT_EQ(fake.downloads(), 1);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

// A download stream that carries no model header where one belongs is refused with a status
// that says so; before, a stream that ended well with no message at all made the site abort
// (an OK status handed to StatusOr).
TEST(SiteConnectionTest, GrpcSiteLinkRefusesADownloadThatIsNotAModel) {
  using Reply = OversizedModelCoordinator::Reply;
  std::string dir = FreshDir();
  std::string kit = Provision(dir, {"alpha"}, FreePort());
  auto creds = MakeClientCredentials(KitTls(kit + "/sites/alpha"));
  ASSERT_TRUE(creds.ok()) << creds.status();
  struct Case {
    Reply reply;
    absl::StatusCode code;
    std::string message;
  };
  for (const Case& c : {Case{Reply::kNothing, absl::StatusCode::kDataLoss,
                             "the coordinator ended the stream before the model's header"},
                        Case{Reply::kDataFirst, absl::StatusCode::kInvalidArgument,
                             "the coordinator's first message is not the model's header"},
                        Case{Reply::kTwoHeaders, absl::StatusCode::kInvalidArgument,
                             "the coordinator sent a second header inside the model"}}) {
    OversizedModelCoordinator fake(1024, c.reply);
    int port = 0;
    auto server = Serve(&fake, KitTls(kit + "/coordinator"), &port);
    ASSERT_NE(server, nullptr);
    GrpcSiteLink link(grpc::CreateChannel("127.0.0.1:" + std::to_string(port), *creds),
                      GrpcLinkOptions());
    auto model = link.Download(fake.Plan(), kDefaultMaxModelBytes);
    EXPECT_EQ(model.status().code(), c.code) << model.status();
    EXPECT_THAT(std::string(model.status().message()), HasSubstr(c.message));
    EXPECT_THAT(std::string(model.status().message()), HasSubstr("downloading the global model"));
    EXPECT_EQ(fake.downloads(), 1);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
}

// A coordinator that joins a site with `max_chunk_bytes` and serves `model` as a single chunk,
// as a coordinator whose transfer.chunk_bytes is the model's size would.
class OneChunkCoordinator final : public v1::Coordinator::Service {
 public:
  OneChunkCoordinator(uint32_t max_chunk_bytes, const Model& model)
      : max_chunk_bytes_(max_chunk_bytes),
        payload_(EncodeSafetensors(model)),
        sha256_(ToHex(Sha256(payload_))) {}

  v1::RoundPlan Plan() const {
    v1::RoundPlan plan;
    plan.set_round(1);
    plan.set_global_model_sha256(sha256_);
    plan.set_global_model_bytes(payload_.size());
    plan.set_chunk_bytes(static_cast<uint32_t>(payload_.size()));
    return plan;
  }
  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest*, v1::JoinReply* reply) override {
    reply->set_site("alpha");
    reply->set_max_chunk_bytes(max_chunk_bytes_);
    return grpc::Status::OK;
  }
  grpc::Status DownloadModel(grpc::ServerContext*, const v1::DownloadRequest*,
                             grpc::ServerWriter<v1::Chunk>* writer) override {
    v1::Chunk header;
    header.mutable_header()->set_round(1);
    header.mutable_header()->set_total_bytes(payload_.size());
    header.mutable_header()->set_sha256(sha256_);
    v1::Chunk data;
    data.set_offset(0);
    data.set_data(payload_);
    writer->Write(header);
    writer->Write(data);
    return grpc::Status::OK;
  }

 private:
  const uint32_t max_chunk_bytes_;
  const std::string payload_;
  const std::string sha256_;
};

// A coordinator may chunk transfers up to kMaxChunkBytes (transfer.chunk_bytes in
// coordinator.toml), and hansa-client's channel takes such chunks: before, it took 4 MiB, so a
// coordinator configured with 8 MiB chunks could not serve a model of over 4 MiB to any site.
// Whatever chunk cap a join names, the site keeps to what a federation may use.
TEST(SiteConnectionTest, GrpcSiteLinkTakesTheLargestChunksAFederationMayUseAndNoneOutside) {
  std::string dir = FreshDir();
  const int port = FreePort();
  std::string kit = Provision(dir, {"alpha"}, port);
  Model model{ModelLayout({TensorSpec{"w", DType::kF32, {6 << 18}}}), {}};  // 6 MiB of values
  model.values.resize(6 << 18);
  for (size_t i = 0; i < model.values.size(); ++i) model.values[i] = static_cast<float>(i % 977);
  struct Case {
    uint32_t joined_with;
    uint32_t kept;
  };
  for (const Case& c :
       {Case{8 << 20, 8 << 20}, Case{1, kMinChunkBytes}, Case{0xffffffffu, kMaxChunkBytes}}) {
    SCOPED_TRACE(c.joined_with);
    OneChunkCoordinator fake(c.joined_with, model);
    grpc::ServerBuilder builder;
    auto creds = MakeServerCredentials(KitTls(kit + "/coordinator"));
    ASSERT_TRUE(creds.ok()) << creds.status();
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), *creds);
    builder.SetMaxReceiveMessageSize(kMaxChunkBytes + kMessageFraming);
    builder.SetMaxSendMessageSize(kMaxChunkBytes + kMessageFraming);
    builder.RegisterService(&fake);
    auto server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    GrpcLinkOptions options;
    options.coordinator = "127.0.0.1:" + std::to_string(port);
    auto link = GrpcSiteLink::Create(KitTls(kit + "/sites/alpha"), options);
    ASSERT_TRUE(link.ok()) << link.status();
    auto joined = (*link)->Join(v1::JoinRequest());
    ASSERT_TRUE(joined.ok()) << joined.status();
    EXPECT_EQ((*link)->max_chunk_bytes(), c.kept);
    if (c.kept > fake.Plan().chunk_bytes()) {
      auto got = (*link)->Download(fake.Plan(), kDefaultMaxModelBytes);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->values, model.values);
    }
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
}

}  // namespace
}  // namespace hansa::testing
