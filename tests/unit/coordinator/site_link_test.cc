// The simulator's loopback transport: real gRPC with mutual TLS on 127.0.0.1, each site known
// to the engine by its own certificate. (That a loopback run equals an in-process run to the
// bit is checked in tests/unit/simulation.)
#include "sim/loopback.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "client/link/chunks.h"
#include "common/crypto/sha256.h"
#include "common/net/rpc.h"
#include "common/tensor/safetensors.h"
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

// A running engine behind a loopback server, two joined sites, and the plan of the round in
// which site a trains (both answered the initial evaluation first, as sites do).
class LoopbackRound {
 public:
  // Sets the round up; the test stops at a fatal failure in here (HasFatalFailure).
  void Start(const std::string& name) {
    auto federation = LoopbackFederation::Create({"a", "b"}, "DE");
    ASSERT_TRUE(federation.ok()) << federation.status();
    federation_ = *std::move(federation);
    auto engine = RoundEngine::Create(EngineTestOptions(name), OnesModel(64, 40));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    auto server = federation_->Serve(engine_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    run_ = std::thread([this] { (void)engine_->Run(); });
    for (int i = 0; i < 2; ++i) {
      auto link = federation_->Connect(i, *server_);
      ASSERT_TRUE(link.ok());
      ASSERT_TRUE((*link)->Join(v1::JoinRequest()).ok());
      sites_.push_back(*std::move(link));
    }
    for (int polls = 0; polls < 40 && plan_.round() == 0; ++polls) {
      for (auto& site : sites_) {
        auto task = site->NextTask(absl::Milliseconds(100));
        ASSERT_TRUE(task.ok()) << task.status();
        if (task->kind() == v1::Task::EVALUATE) {
          v1::MetricsReport report;
          report.set_round(task->plan().round());
          report.set_num_examples(1);
          (void)site->ReportMetrics(report);  // AlreadyExists on a repeated poll
        }
        if (site == sites_[0] && task->kind() == v1::Task::TRAIN) plan_ = task->plan();
      }
    }
    ASSERT_GT(plan_.round(), 0u) << "site a was never asked to train";
  }
  ~LoopbackRound() {
    if (engine_) engine_->Shutdown();
    if (run_.joinable()) run_.join();
  }

  RoundEngine& engine() { return *engine_; }
  SiteLink& a() { return *sites_[0]; }
  const v1::RoundPlan& plan() const { return plan_; }

 private:
  std::unique_ptr<LoopbackFederation> federation_;
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<LoopbackServer> server_;
  std::thread run_;
  std::vector<std::unique_ptr<SiteLink>> sites_;
  v1::RoundPlan plan_;
};

TEST(SiteLinkTest, DownloadOverLoopbackIsTheEnginesModelAndChecksThePlan) {
  LoopbackRound round;
  round.Start("site_link_download");
  if (::testing::Test::HasFatalFailure()) return;
  const v1::RoundPlan& plan = round.plan();
  ASSERT_GT(plan.global_model_bytes(), 2048u);  // several chunks of at most 1024 bytes
  auto model = round.a().Download(plan, kDefaultMaxModelBytes);
  ASSERT_TRUE(model.ok()) << model.status();
  auto direct = round.engine().Download("a", plan.round(), plan.global_model_sha256());
  ASSERT_TRUE(direct.ok()) << direct.status();
  auto decoded = DecodeSafetensors(direct->view());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(model->values, decoded->values);
  EXPECT_EQ(model->layout.TotalElements(), decoded->layout.TotalElements());
  v1::RoundPlan wrong = plan;
  wrong.set_global_model_bytes(plan.global_model_bytes() + 1);
  auto short_model = round.a().Download(wrong, kDefaultMaxModelBytes);
  EXPECT_EQ(short_model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(short_model.status().message()),
              HasSubstr(absl::StrCat("declares ", plan.global_model_bytes(), " bytes with SHA-256 ",
                                     plan.global_model_sha256(), " but the plan of round ",
                                     plan.round(), " names ", wrong.global_model_bytes())));
}

// The coordinator reads an upload's chunks where they lie in gRPC's buffers: the whole payload
// is still checked against its header's SHA-256 before the update counts.
TEST(SiteLinkTest, UploadOverLoopbackCountsOnlyWhenItsDigestHolds) {
  LoopbackRound round;
  round.Start("site_link_upload");
  if (::testing::Test::HasFatalFailure()) return;
  const v1::RoundPlan& plan = round.plan();
  ASSERT_TRUE(round.engine().Accept("a", plan).ok());
  Model delta = OnesModel(64, 40);
  for (size_t i = 0; i < delta.values.size(); ++i) delta.values[i] = 1e-3f * (i % 7);
  std::string payload = EncodeSafetensors(delta);
  v1::TransferHeader header;
  header.set_round(plan.round());
  header.set_num_examples(5);
  header.set_total_bytes(payload.size());
  header.set_sha256(ToHex(Sha256(payload)));
  // Chunks of 1000 bytes: the values cross chunk boundaries at every alignment.
  const uint32_t chunk = 1000;

  std::string corrupted = payload;
  corrupted[corrupted.size() / 2] ^= 0x01;  // still finite: only the digest can tell
  auto refused = round.a().Upload(plan, header, CutChunks(corrupted, chunk, chunk));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("corrupted in transit"));

  auto accepted = round.a().Upload(plan, header, CutChunks(payload, chunk, chunk));
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->bytes(), payload.size());
  EXPECT_EQ(accepted->sha256(), header.sha256());
  auto again = round.a().Upload(plan, header, CutChunks(payload, chunk, chunk));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
}

}  // namespace
}  // namespace hansa
