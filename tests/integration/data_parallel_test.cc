// A data-parallel site over torch's ProcessGroupGloo on loopback: this process is rank 0,
// a real `hansa-client --rank 1` is the other rank. Two ranks must train exactly like one
// process on the same data order (up to floating-point summation order).
#include "client/train/data_parallel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "client/site_config.h"
#include "client/train/torchscript.h"
#include "client/train/trainer.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/model/task.h"
#include "tests/integration/harness.h"
#include "tests/support/vectors.h"

namespace hansa {
namespace {

using testing::AppendText;
using testing::BuildPath;
using testing::FreePort;
using testing::FreshDir;
using ::testing::HasSubstr;
using testing::Process;

using test_support::MaxAbsDifference;

struct Trained {
  std::vector<float> weights;
  TrainResult result;
};

Trained TrainOnce(const TrainerOptions& options, const Dataset& data, const TrainSettings& s) {
  auto trainer = Trainer::Create(options);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  if (!trainer.ok()) return {};
  // A built-in model from fixed weights; a TorchScript one from its file's.
  if (!IsScriptModelName(options.model)) {
    EXPECT_TRUE((*trainer)->SetWeights(*InitialModel(options.model, 1)).ok());
  }
  auto result = (*trainer)->Train(data, s);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return {};
  return {(*trainer)->GetWeights()->values, *result};
}

TEST(DataParallelTest, TwoGlooRanksTrainLikeOneProcess) {
  const std::string dir = FreshDir();
  const int port = FreePort();
  // The other rank's site.toml: no certificate exists, so it could not talk to a coordinator
  // even if it tried; it only needs the data and the rendezvous.
  const std::string toml = dir + "/site.toml";
  AppendText(toml, absl::StrCat("[site]\nname = \"dp\"\ncertificate = \"missing.pem\"\n"
                                "[data]\ntrain_limit = 600\ntest_limit = 10\n"
                                "[compute]\ndevice = \"cpu\"\nthreads = 1\nworld_size = 2\n"
                                "rendezvous = \"127.0.0.1:",
                                port, "\"\n"));
  auto config = LoadSiteConfig(toml);
  ASSERT_TRUE(config.ok()) << config.status();
  Dataset train, test;
  ASSERT_TRUE(LoadSiteData(*config, &train, &test).ok());
  ASSERT_EQ(train.size(), 600);

  Process worker({BuildPath("client/hansa-client"), "--once", "--config", toml, "--rank", "1"},
                 dir + "/rank1.log");
  auto group = JoinDataParallelGroup(config->data_parallel, "cpu");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ((*group)->rank(), 0);
  EXPECT_EQ((*group)->world_size(), 2);
  EXPECT_EQ((*group)->backend(), "gloo");

  // 600 examples in batches of 64 (10 steps an epoch): the last batch (24) is split too. FedProx's
  // term and momentum act on the summed gradient.
  TrainSettings s;
  s.epochs = 2;
  s.batch_size = 64;
  s.learning_rate = 0.05;
  s.momentum = 0.9;
  s.weight_decay = 1e-4;
  s.seed = 7;
  s.proximal_mu = 0.01;
  for (const std::string model : {"simple_cnn", "mlp"}) {
    TrainerOptions alone{model, "cpu", 1};
    TrainerOptions parallel = alone;
    parallel.group = *group;
    const Trained two = TrainOnce(parallel, train, s);
    const Trained one = TrainOnce(alone, train, s);
    ASSERT_FALSE(two.weights.empty());
    EXPECT_LT(MaxAbsDifference(two.weights, one.weights), 1e-5) << model;
    EXPECT_GT(MaxAbsDifference(two.weights, InitialModel(model, 1)->values), 1e-3) << model;
    EXPECT_NEAR(two.result.loss, one.result.loss, 1e-5) << model;
    EXPECT_EQ(two.result.steps, one.result.steps);
  }

  // A study's TorchScript model: rank 1 gets the file's path and task with the command, checks
  // the hash itself and trains with rank 0 as for a built-in model.
  {
    const std::string file = dir + "/script.pt";
    ASSERT_TRUE(SaveTorchScriptMlp(file, 784, 32, 10, 3).ok());
    auto bytes = ReadFile(file);
    ASSERT_TRUE(bytes.ok());
    TrainerOptions alone{ScriptModelName(ToHex(Sha256(*bytes))), "cpu", 1};
    alone.script_file = file;
    TrainerOptions parallel = alone;
    parallel.group = *group;
    auto fresh = Trainer::Create(alone);
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    const std::vector<float> initial = (*fresh)->GetWeights()->values;
    const Trained two = TrainOnce(parallel, train, s);
    const Trained one = TrainOnce(alone, train, s);
    ASSERT_FALSE(two.weights.empty());
    EXPECT_LT(MaxAbsDifference(two.weights, one.weights), 1e-5);
    EXPECT_GT(MaxAbsDifference(two.weights, initial), 1e-3);
    EXPECT_NEAR(two.result.loss, one.result.loss, 1e-5);
  }

  // DP-SGD: with every example in every step (q = 1) and no noise it is deterministic, and two
  // ranks (each clipping its own examples' gradients) equal one process.
  TrainSettings dp = s;
  dp.dp = RecordDpSettings{0.5, 0, 1.0, 3};
  {
    TrainerOptions alone{"mlp", "cpu", 1};
    TrainerOptions parallel = alone;
    parallel.group = *group;
    const Trained two = TrainOnce(parallel, train, dp);
    const Trained one = TrainOnce(alone, train, dp);
    EXPECT_LT(MaxAbsDifference(two.weights, one.weights), 1e-5);
    EXPECT_EQ(two.result.examples_seen, 3 * train.size());
    EXPECT_NEAR(two.result.loss, one.result.loss, 1e-5);
    // With sampling and noise: each rank samples its own half; the sample sizes add up to
    // Binomial(T n, q).
    dp.dp = RecordDpSettings{0.5, 1.0, 0.1, 20};
    const Trained noisy = TrainOnce(parallel, train, dp);
    const double mean = 20 * 600 * 0.1, sd = std::sqrt(20 * 600 * 0.1 * 0.9);
    EXPECT_NEAR(static_cast<double>(noisy.result.examples_seen), mean, 5 * sd);
    EXPECT_GT(MaxAbsDifference(noisy.weights, one.weights), 1e-4);
    // What a group cannot do yet is refused before any rank trains.
    auto trainer = Trainer::Create(parallel);
    ASSERT_TRUE(trainer.ok());
    dp.dp.randomness = std::make_shared<SeededUniformSource>("not shareable");
    EXPECT_EQ((*trainer)->Train(train, dp).status().code(), absl::StatusCode::kFailedPrecondition);
  }

  // Rank 0's group going away (its last holder) stops the other rank, which exits cleanly.
  group->reset();
  EXPECT_EQ(worker.Wait(30), 0) << worker.Log();
  EXPECT_THAT(worker.Log(), HasSubstr("trained 20 steps with rank 0"));
  EXPECT_THAT(worker.Log(), HasSubstr("trained 3 steps with rank 0"));
  EXPECT_THAT(worker.Log(), HasSubstr("rank 0 stopped; data-parallel rank exiting"));
}

TEST(DataParallelTest, BadOptionsAreRefusedWithTheReason) {
  auto expect = [](DataParallelOptions o, absl::StatusCode code, const std::string& text) {
    auto group = JoinDataParallelGroup(o, "cpu");
    EXPECT_EQ(group.status().code(), code) << group.status();
    EXPECT_THAT(std::string(group.status().message()), HasSubstr(text));
  };
  DataParallelOptions o;
  expect(o, absl::StatusCode::kInvalidArgument, "world_size = 1 must be at least 2");
  o.world_size = 2;
  o.rank = 2;
  expect(o, absl::StatusCode::kInvalidArgument, "rank = 2 is outside 0..1");
  o.rank = 0;
  o.rendezvous = "localhost";
  expect(o, absl::StatusCode::kInvalidArgument, "'localhost' is not host:port");
  o.rendezvous = "127.0.0.1:1";
  o.backend = "mpi";
  expect(o, absl::StatusCode::kInvalidArgument, "backend 'mpi' is not one of auto, gloo, nccl");
  o.backend = "nccl";
  expect(o, absl::StatusCode::kFailedPrecondition, "built without NCCL");
  // Nobody else joins: the rendezvous gives up after its timeout.
  o.backend = "gloo";
  o.rendezvous = absl::StrCat("127.0.0.1:", FreePort());
  o.rank = 1;
  o.timeout_seconds = 2;
  expect(o, absl::StatusCode::kUnavailable, "rendezvous at 127.0.0.1:");
}

}  // namespace
}  // namespace hansa
