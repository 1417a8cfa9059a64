// The coordinator's gRPC service on the callback API: long-polls that wait for a task hold no
// server thread. Real mutual TLS on 127.0.0.1, one certificate per site, the calls made with
// gRPC's asynchronous client so that the process's thread count is the server's (plus a fixed
// client side).
#include "coordinator/service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/ca_registry.h"
#include "common/pki/startup_kit.h"
#include "engine_test_setup.h"

namespace hansa {
namespace {

using testing::EngineTestOptions;
using testing::OnesModel;

constexpr int kSites = 200;

// Threads of this process, from /proc/self/status.
int ProcessThreads() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

bool WaitFor(absl::Duration limit, const std::function<bool()>& done) {
  absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// A provisioned federation of kSites sites, an engine that needs all of them for a round, the
// service behind a server, and one joined channel per site.
class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ProvisionRequest request;
    request.federation = "test";
    request.coordinator = {"coordinator", "DE", "coordinator"};
    for (int i = 0; i < kSites; ++i) {
      std::string name = absl::StrFormat("s%03d", i);
      request.sites.push_back({name, "DE", name});
    }
    StatusOr<StartupKits> kits = IssueStartupKits(request);
    ASSERT_TRUE(kits.ok()) << kits.status();
    const std::string ca = kits->ca.certificate().ToPem();
    auto tls_of = [&](const StartupKit& kit) {
      return TlsFiles{kit.certificate.ToPem(), *kit.key.ToPem(), ca};
    };

    // A state folder of each test's own: ctest runs these tests in parallel processes.
    EngineOptions options = EngineTestOptions(
        absl::StrCat("service_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    options.allowed_sites.clear();
    for (const ParticipantSpec& site : request.sites) options.allowed_sites.push_back(site.name);
    options.min_sites = kSites;
    options.wait_for_sites = absl::Seconds(60);
    auto engine = RoundEngine::Create(options, OnesModel(8, 4));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    service_ = std::make_unique<CoordinatorService>(engine_.get());
    int port = 0;
    auto server = StartServer("127.0.0.1:0", tls_of(kits->kits[0]), service_.get(),
                              engine_->max_chunk_bytes(), &port);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);

    for (int i = 1; i <= kSites; ++i) {
      auto credentials = MakeClientCredentials(tls_of(kits->kits[i]));
      ASSERT_TRUE(credentials.ok()) << credentials.status();
      auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), *credentials,
                                               SiteChannelArguments(engine_->max_chunk_bytes()));
      stubs_.push_back(v1::Coordinator::NewStub(channel));
      auto ctx = ContextWithDeadline(30);
      v1::JoinReply reply;
      grpc::Status joined = stubs_.back()->Join(ctx.get(), v1::JoinRequest(), &reply);
      ASSERT_TRUE(joined.ok()) << joined.error_message();
    }
  }

  void TearDown() override {
    for (Poll& poll : polls_) poll.ctx->TryCancel();  // none may outlive its context
    WaitFor(absl::Seconds(10), [&] { return answered() == static_cast<int>(polls_.size()); });
    if (engine_) engine_->Shutdown();
    if (run_.joinable()) run_.join();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    service_.reset();
  }

  // kSites concurrent GetTask calls of `wait`, one per site, answered into polls_.
  void PollAll(absl::Duration wait) {
    polls_.clear();
    polls_.resize(kSites);
    answered_ = 0;
    request_.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(wait)));
    for (int i = 0; i < kSites; ++i) {
      Poll& poll = polls_[i];
      poll.ctx = ContextWithDeadline(absl::ToDoubleSeconds(wait) + 30);
      stubs_[i]->async()->GetTask(poll.ctx.get(), &request_, &poll.task,
                                  [this, &poll](grpc::Status status) {
                                    absl::MutexLock lock(&mu_);
                                    poll.status = std::move(status);
                                    poll.at = absl::Now();
                                    ++answered_;
                                  });
    }
  }
  int answered() {
    absl::MutexLock lock(&mu_);
    return answered_;
  }

  struct Poll {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::Task task;
    grpc::Status status;
    absl::Time at;
  };
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs_;
  std::thread run_;
  v1::TaskRequest request_;
  absl::Mutex mu_;
  std::vector<Poll> polls_;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
};

// A thread per waiting poll (the synchronous API) would add kSites threads.
constexpr int kThreadBound = kSites / 4;

TEST_F(ServiceTest, ParkedPollsHoldNoThreadsAndAnswerWaitWhenTheirWaitEnds) {
  const int before = ProcessThreads();
  const absl::Time asked = absl::Now();
  PollAll(absl::Milliseconds(1500));
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] { return service_->parked_polls() == kSites; }))
      << service_->parked_polls() << " of " << kSites << " polls parked";
  const int parked = ProcessThreads();
  RecordProperty("threads_before", before);
  RecordProperty("threads_parked", parked);
  EXPECT_LT(parked - before, kThreadBound) << before << " threads before, " << parked << " after";
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] { return answered() == kSites; }));
  absl::MutexLock lock(&mu_);
  for (const Poll& poll : polls_) {
    ASSERT_TRUE(poll.status.ok()) << poll.status.error_message();
    EXPECT_EQ(poll.task.kind(), v1::Task::WAIT);
    EXPECT_GE(poll.at - asked, absl::Milliseconds(1400));  // held for its wait, not answered early
  }
  EXPECT_EQ(service_->parked_polls(), 0);
}

TEST_F(ServiceTest, ATaskPublishedWhilePollsAreParkedReachesThemPromptly) {
  PollAll(absl::Seconds(20));
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] { return service_->parked_polls() == kSites; }));
  // Every site is joined and waiting: the engine's first task (evaluating the initial model)
  // goes to all of them.
  const absl::Time started = absl::Now();
  run_ = std::thread([this] { engine_->Run().IgnoreError(); });
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] { return answered() == kSites; }))
      << answered() << " of " << kSites << " polls answered";
  absl::MutexLock lock(&mu_);
  for (const Poll& poll : polls_) {
    ASSERT_TRUE(poll.status.ok()) << poll.status.error_message();
    EXPECT_EQ(poll.task.kind(), v1::Task::EVALUATE);
    EXPECT_EQ(poll.task.plan().cohort_size(), kSites);
    EXPECT_LT(poll.at - started, absl::Seconds(5));
  }
}

TEST_F(ServiceTest, EngineShutdownAnswersParkedPollsAtOnce) {
  PollAll(absl::Seconds(20));
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] { return service_->parked_polls() == kSites; }));
  const absl::Time stopped = absl::Now();
  engine_->Shutdown();
  ASSERT_TRUE(WaitFor(absl::Seconds(5), [&] { return answered() == kSites; }));
  absl::MutexLock lock(&mu_);
  for (const Poll& poll : polls_) {
    ASSERT_TRUE(poll.status.ok()) << poll.status.error_message();
    EXPECT_EQ(poll.task.kind(), v1::Task::WAIT);
    EXPECT_LT(poll.at - stopped, absl::Seconds(2));
  }
}

TEST_F(ServiceTest, ACancelledPollLeavesTheList) {
  PollAll(absl::Seconds(20));
  ASSERT_TRUE(WaitFor(absl::Seconds(10), [&] { return service_->parked_polls() == kSites; }));
  for (int i = 0; i < kSites / 2; ++i) polls_[i].ctx->TryCancel();
  ASSERT_TRUE(WaitFor(absl::Seconds(5), [&] { return answered() == kSites / 2; }));
  EXPECT_TRUE(WaitFor(absl::Seconds(5), [&] { return service_->parked_polls() == kSites / 2; }))
      << service_->parked_polls();
  {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < kSites / 2; ++i) {
      EXPECT_EQ(polls_[i].status.error_code(), grpc::StatusCode::CANCELLED);
    }
  }
  // The service's own shutdown answers the rest.
  service_->Shutdown();
  ASSERT_TRUE(WaitFor(absl::Seconds(5), [&] { return answered() == kSites; }));
  absl::MutexLock lock(&mu_);
  for (int i = kSites / 2; i < kSites; ++i) {
    ASSERT_TRUE(polls_[i].status.ok()) << polls_[i].status.error_message();
    EXPECT_EQ(polls_[i].task.kind(), v1::Task::WAIT);
  }
}

// An operator's certificate (OU=operator, for the dashboard) joins no round, even under a name
// that [sites] allowed lists: the service refuses its calls and says why.
TEST(ServiceOperatorTest, AnOperatorCertificateCannotJoinAsASite) {
  ProvisionRequest request;
  request.federation = "test";
  request.coordinator = {"coordinator", "DE", "coordinator"};
  request.sites.push_back({"alpha", "DE", "alpha"});
  StatusOr<StartupKits> kits = IssueStartupKits(request);
  ASSERT_TRUE(kits.ok()) << kits.status();
  const std::string ca = kits->ca.certificate().ToPem();
  CertificateRequest as_operator;
  as_operator.subject = {"alpha", "alpha", "DE"};
  as_operator.organizational_unit = kOperatorUnit;
  as_operator.client_auth = true;
  StatusOr<PrivateKey> key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  StatusOr<Certificate> cert = kits->ca.Issue(as_operator, key->GetPublicKey());
  ASSERT_TRUE(cert.ok()) << cert.status();

  EngineOptions options = EngineTestOptions("service_operator");
  options.allowed_sites = {"alpha"};
  options.min_sites = 1;
  auto engine = RoundEngine::Create(options, OnesModel(8, 4));
  ASSERT_TRUE(engine.ok()) << engine.status();
  CoordinatorService service(engine->get());
  int port = 0;
  const StartupKit& coordinator = kits->kits[0];
  auto server = StartServer("127.0.0.1:0",
                            TlsFiles{coordinator.certificate.ToPem(), *coordinator.key.ToPem(), ca},
                            &service, (*engine)->max_chunk_bytes(), &port);
  ASSERT_TRUE(server.ok()) << server.status();
  auto join = [&](const Certificate& c, const PrivateKey& k) {
    auto credentials = MakeClientCredentials(TlsFiles{c.ToPem(), *k.ToPem(), ca});
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    auto stub = v1::Coordinator::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port), *credentials, SiteChannelArguments(1 << 20)));
    auto ctx = ContextWithDeadline(30);
    v1::JoinReply reply;
    return stub->Join(ctx.get(), v1::JoinRequest(), &reply);
  };
  const grpc::Status refused = join(*cert, *key);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(refused.error_message().find("is an operator's (OU=operator)"), std::string::npos)
      << refused.error_message();
  // The site's own certificate under the same name joins.
  const grpc::Status joined = join(kits->kits[1].certificate, kits->kits[1].key);
  EXPECT_TRUE(joined.ok()) << joined.error_message();
  (*engine)->Shutdown();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace
}  // namespace hansa
