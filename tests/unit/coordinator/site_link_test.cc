// The simulator's loopback transport: real gRPC with mutual TLS on 127.0.0.1, each site known
// to the engine by its own certificate. (That a loopback run equals an in-process run to the
// bit is checked in tests/unit/simulation.)
#include "sim/loopback.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/net/rpc.h"
#include "engine_test_setup.h"

namespace hansa {
namespace {

using testing::EngineTestOptions;
using ::testing::HasSubstr;
using testing::OnesModel;

TEST(SiteLinkTest, LoopbackSitesAreKnownByTheirCertificates) {
  // "z" holds a certificate of the run's CA but is not on the engine's list.
  auto federation = LoopbackFederation::Create({"a", "b", "z"}, "DE");
  ASSERT_TRUE(federation.ok()) << federation.status();
  auto engine = RoundEngine::Create(EngineTestOptions("site_link_names"), OnesModel(8, 4));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto server = (*federation)->Serve(engine->get());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  auto a = (*federation)->Connect(0, **server);
  auto z = (*federation)->Connect(2, **server);
  ASSERT_TRUE(a.ok() && z.ok());
  EXPECT_TRUE((*a)->Join(v1::JoinRequest()).ok());
  Status refused = (*z)->Join(v1::JoinRequest()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_EQ((*federation)->Connect(3, **server).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(SiteLinkTest, ALoopbackServerRefusesASiteOfAnotherFederation) {
  auto ours = LoopbackFederation::Create({"a", "b"}, "DE");
  auto theirs = LoopbackFederation::Create({"a", "b"}, "DE");
  ASSERT_TRUE(ours.ok() && theirs.ok());
  auto engine = RoundEngine::Create(EngineTestOptions("site_link_foreign"), OnesModel(8, 4));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto server = (*ours)->Serve(engine->get());
  ASSERT_TRUE(server.ok()) << server.status();
  // Same name, but the certificate comes from another CA: the TLS handshake fails.
  auto stranger = (*theirs)->Connect(0, **server);
  ASSERT_TRUE(stranger.ok());
  auto task = (*stranger)->NextTask(absl::Milliseconds(100));
  EXPECT_EQ(task.status().code(), absl::StatusCode::kUnavailable) << task.status();
  auto member = (*ours)->Connect(0, **server);
  ASSERT_TRUE(member.ok());
  EXPECT_TRUE((*member)->Join(v1::JoinRequest()).ok());
}

// One server and one connection for a whole simulated run, each round in a fresh engine.
TEST(SiteLinkTest, ALoopbackServerMovesToTheNextRoundsEngineAndKeepsItsSites) {
  auto federation = LoopbackFederation::Create({"a", "b"}, "DE");
  ASSERT_TRUE(federation.ok()) << federation.status();
  auto first = RoundEngine::Create(EngineTestOptions("site_link_first"), OnesModel(8, 4));
  auto second = RoundEngine::Create(EngineTestOptions("site_link_second"), OnesModel(8, 4));
  ASSERT_TRUE(first.ok() && second.ok());
  auto server = (*federation)->Serve(first->get());
  ASSERT_TRUE(server.ok()) << server.status();
  auto a = (*federation)->Connect(0, **server);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Join(v1::JoinRequest()).ok());
  (*server)->Retarget(nullptr);
  Status between = (*a)->Join(v1::JoinRequest()).status();
  EXPECT_EQ(between.code(), absl::StatusCode::kUnavailable) << between;
  EXPECT_THAT(std::string(between.message()), HasSubstr("no round in progress"));
  (*server)->Retarget(second->get());
  EXPECT_TRUE((*a)->Join(v1::JoinRequest()).ok());
  auto task = (*a)->NextTask(absl::Milliseconds(10));
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->kind(), v1::Task::WAIT);
}

TEST(SiteLinkTest, DownloadOverLoopbackIsTheEnginesModelAndChecksThePlan) {
  auto federation = LoopbackFederation::Create({"a", "b"}, "DE");
  ASSERT_TRUE(federation.ok()) << federation.status();
  auto engine = RoundEngine::Create(EngineTestOptions("site_link_download"), OnesModel(64, 40));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto server = (*federation)->Serve(engine->get());
  ASSERT_TRUE(server.ok()) << server.status();
  std::thread run([&] { (void)(*engine)->Run(); });
  struct StopEngine {
    RoundEngine* engine;
    std::thread* run;
    ~StopEngine() {
      engine->Shutdown();
      run->join();
    }
  } stop{engine->get(), &run};
  std::vector<std::unique_ptr<SiteLink>> sites;
  for (int i = 0; i < 2; ++i) {
    auto link = (*federation)->Connect(i, **server);
    ASSERT_TRUE(link.ok());
    ASSERT_TRUE((*link)->Join(v1::JoinRequest()).ok());
    sites.push_back(*std::move(link));
  }
  // Both sites answer the evaluation of the initial model, as sites do; then a trains.
  v1::RoundPlan plan;
  bool training = false;
  for (int polls = 0; polls < 40 && !training; ++polls) {
    for (auto& site : sites) {
      auto task = site->NextTask(absl::Milliseconds(100));
      ASSERT_TRUE(task.ok()) << task.status();
      if (task->kind() == v1::Task::EVALUATE) {
        v1::MetricsReport report;
        report.set_round(task->plan().round());
        report.set_num_examples(1);
        (void)site->ReportMetrics(report);  // AlreadyExists on a repeated poll
      }
      if (site == sites[0] && task->kind() == v1::Task::TRAIN) {
        training = true;
        plan = task->plan();
      }
    }
  }
  ASSERT_TRUE(training);
  ASSERT_GT(plan.global_model_bytes(), 2048u);  // several chunks of at most 1024 bytes
  auto model = sites[0]->Download(plan, kDefaultMaxModelBytes);
  ASSERT_TRUE(model.ok()) << model.status();
  auto direct = (*engine)->Download("a", plan.round(), plan.global_model_sha256());
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(**model, **direct);
  v1::RoundPlan wrong = plan;
  wrong.set_global_model_bytes(plan.global_model_bytes() + 1);
  auto short_model = sites[0]->Download(wrong, kDefaultMaxModelBytes);
  EXPECT_EQ(short_model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(short_model.status().message()),
              HasSubstr(absl::StrCat("declares ", plan.global_model_bytes(), " bytes with SHA-256 ",
                                     plan.global_model_sha256(), " but the plan of round ",
                                     plan.round(), " names ", wrong.global_model_bytes())));
}

}  // namespace
}  // namespace hansa
