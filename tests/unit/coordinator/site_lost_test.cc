// RoundEngine::SiteLost: a site known to be gone (the simulator's dead worker) is not waited for.
// The engine runs on a stopped clock, so no deadline ever passes: the round ends only because
// the lost site is no longer waited for.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "common/crypto/sha256.h"
#include "common/tensor/safetensors.h"
#include "coordinator/federation_status.h"
#include "coordinator/round_engine.h"
#include "tests/unit/coordinator/engine_test_setup.h"

namespace hansa {
namespace {

// A site that answers every task until DONE: reports its evaluation, uploads `delta` for each
// weight with 100 examples.
void RunSite(RoundEngine* engine, const std::string& name, float delta, std::atomic<int>* uploads) {
  for (int i = 0; i < 600; ++i) {
    StatusOr<v1::Task> task = engine->NextTask(name, absl::Milliseconds(100));
    ASSERT_TRUE(task.ok()) << task.status();
    if (task->kind() == v1::Task::DONE) return;
    if (task->kind() == v1::Task::EVALUATE) {
      v1::MetricsReport r;
      r.set_round(task->plan().round());
      r.set_num_examples(10);
      ASSERT_TRUE(engine->ReportMetrics(name, r).ok());
    }
    if (task->kind() != v1::Task::TRAIN) continue;
    const v1::RoundPlan& plan = task->plan();
    auto payload = engine->Download(name, plan.round(), plan.global_model_sha256());
    ASSERT_TRUE(payload.ok()) << payload.status();
    StatusOr<Model> update = DecodeSafetensors(payload->view());
    ASSERT_TRUE(update.ok()) << update.status();
    for (float& v : update->values) v = delta;
    const std::string bytes = EncodeSafetensors(*update);
    v1::TransferHeader header;
    header.set_round(plan.round());
    header.set_num_examples(100);
    header.set_total_bytes(bytes.size());
    header.set_sha256(ToHex(Sha256(bytes)));
    ASSERT_TRUE(engine->Accept(name, plan).ok());
    auto sink = engine->BeginUpload(name, header);
    ASSERT_TRUE(sink.ok()) << sink.status();
    ASSERT_TRUE((*sink)->Write(0, bytes).ok());
    ASSERT_TRUE((*sink)->Finish().ok());
    ++*uploads;
  }
}

TEST(SiteLostTest, ALostSiteInTheCohortIsDroppedWithoutWaitingForItsDeadline) {
  EngineOptions o = testing::EngineTestOptions("site_lost");
  o.clock = testing::StoppedClock();
  o.upload_timeout = absl::Hours(72);
  o.evaluate_timeout = absl::Hours(72);
  auto board = std::make_shared<FederationStatusBoard>();
  o.status = board;
  auto engine = RoundEngine::Create(o, testing::OnesModel(5, 4));
  ASSERT_TRUE(engine.ok()) << engine.status();
  RoundEngine* e = engine->get();
  for (const char* site : {"a", "b", "c"}) ASSERT_TRUE(e->Join({site, "Org", "DE", "00"}).ok());
  Status run;
  std::thread driver([&] { run = e->Run(); });
  std::atomic<int> uploads{0};
  std::thread a([&] { RunSite(e, "a", 0.5f, &uploads); });
  std::thread b([&] { RunSite(e, "b", 0.25f, &uploads); });
  // c answers round 0's evaluation, is asked to train in round 1, and then goes silent.
  bool asked = false;
  for (int i = 0; i < 600 && !asked; ++i) {
    StatusOr<v1::Task> task = e->NextTask("c", absl::Milliseconds(100));
    ASSERT_TRUE(task.ok()) << task.status();
    if (task->kind() == v1::Task::EVALUATE) {
      v1::MetricsReport r;
      r.set_num_examples(10);
      ASSERT_TRUE(e->ReportMetrics("c", r).ok());
    }
    asked = task->kind() == v1::Task::TRAIN;
  }
  ASSERT_TRUE(asked);
  ASSERT_TRUE(testing::Eventually([&] { return uploads.load() == 2; }));
  EXPECT_EQ(e->completed_round(), 0);  // the round still waits for c
  e->SiteLost("c");
  const bool finished = testing::Eventually([&] { return e->completed_round() == 1; });
  if (!finished) e->Shutdown();  // fail rather than hang
  EXPECT_TRUE(finished);
  a.join();
  b.join();
  driver.join();
  EXPECT_TRUE(run.ok()) << run;
  ASSERT_EQ(e->completed_round(), 1);
  StatusOr<Model> model = e->global_model();
  ASSERT_TRUE(model.ok()) << model.status();
  for (float v : model->values) ASSERT_EQ(v, 1.375f);  // a and b, weighted alike
  const FederationStatus status = board->Snapshot();
  EXPECT_EQ(status.sites.at("c").dropouts, 1);  // dropped from the upload, not asked again
  EXPECT_EQ(status.sites.at("a").dropouts, 0);
  EXPECT_EQ(status.history.back().sites, 2);
}

}  // namespace
}  // namespace hansa
