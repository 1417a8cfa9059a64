// A study's TorchScript model (client/train/torchscript.h): built in C++ with torch::jit as a
// study would save one from Python, then inspected as `hansa model inspect` shows it.
#include "client/train/torchscript.h"

#include <cmath>
#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "client/train/trainer.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/metrics/metrics.h"
#include "common/model/task.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "ts_" + name; }

TEST(TorchScriptTest, InspectNamesEveryParameterWithShapeAndTheFilesHash) {
  const std::string path = TempPath("mlp.pt");
  ASSERT_TRUE(SaveTorchScriptMlp(path, 30, 16, 2, 7).ok());
  auto info = InspectTorchScript(path);
  ASSERT_TRUE(info.ok()) << info.status();
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(info->sha256, ToHex(Sha256(*bytes)));
  EXPECT_EQ(info->file_bytes, bytes->size());
  ASSERT_EQ(info->tensors.size(), 4u);
  EXPECT_EQ(info->tensors[0].name, "fc1.weight");
  EXPECT_THAT(info->tensors[0].shape, ElementsAre(16, 30));
  EXPECT_EQ(info->tensors[0].dtype, "float32");
  EXPECT_TRUE(info->tensors[0].parameter);
  EXPECT_EQ(info->tensors[3].name, "fc2.bias");
  EXPECT_THAT(info->tensors[3].shape, ElementsAre(2));
  EXPECT_EQ(info->parameter_count, 30 * 16 + 16 + 16 * 2 + 2);
  EXPECT_EQ(info->update_bytes, info->parameter_count * 4);
  // The same architecture from another seed is another model: another hash.
  const std::string other = TempPath("mlp2.pt");
  ASSERT_TRUE(SaveTorchScriptMlp(other, 30, 16, 2, 8).ok());
  auto second = InspectTorchScript(other);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->sha256, info->sha256);
  EXPECT_EQ(second->parameter_count, info->parameter_count);
}

TEST(TorchScriptTest, AFileThatIsNoTorchScriptIsRefusedClearly) {
  const std::string path = TempPath("garbage.pt");
  std::ofstream(path) << "not a zip archive";
  auto info = InspectTorchScript(path);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(info.status().message()),
              HasSubstr("is not a TorchScript model LibTorch can load"));
  EXPECT_EQ(InspectTorchScript(TempPath("absent.pt")).status().code(), absl::StatusCode::kNotFound);
}

// ---- Training a study's TorchScript model (client/train/trainer.h) ----

// `n` rows of `width` features from a fixed generator; binary labels from the sign of a fixed
// linear score, regression targets equal to that score, multiclass labels from its tertiles.
Dataset SyntheticTable(int64_t n, int64_t width, TaskKind kind, uint64_t seed) {
  Dataset data;
  data.tabular = true;
  data.rows = 1;
  data.cols = width;
  uint64_t state = seed;
  auto uniform = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) * 0x1.0p-53 * 2.0 - 1.0;
  };
  for (int64_t i = 0; i < n; ++i) {
    double score = 0;
    for (int64_t j = 0; j < width; ++j) {
      const double x = uniform();
      data.features.push_back(static_cast<float>(x));
      score += (j % 2 == 0 ? 1.0 : -0.5) * x;
    }
    float target = static_cast<float>(score);
    if (kind == TaskKind::kBinary) target = score > 0 ? 1.0f : 0.0f;
    if (kind == TaskKind::kMulticlass) target = score < -0.3 ? 0.0f : score < 0.3 ? 1.0f : 2.0f;
    data.targets.push_back(target);
    if (kind != TaskKind::kRegression) data.labels.push_back(static_cast<uint8_t>(target));
  }
  return data;
}

struct ScriptFile {
  std::string path;
  std::string name;  // "sha256:<hex>"
};

ScriptFile SaveMlp(const std::string& file, int64_t inputs, int64_t outputs, uint64_t seed,
                   bool batch_norm = false) {
  ScriptFile out{TempPath(file), ""};
  EXPECT_TRUE(SaveTorchScriptMlp(out.path, inputs, 16, outputs, seed, batch_norm).ok());
  auto bytes = ReadFile(out.path);
  EXPECT_TRUE(bytes.ok());
  out.name = ScriptModelName(ToHex(Sha256(bytes.ok() ? *bytes : "")));
  return out;
}

StatusOr<std::unique_ptr<Trainer>> ScriptTrainer(const ScriptFile& file, TaskKind kind,
                                                 Buffers buffers = Buffers::kAverage) {
  TrainerOptions options;
  options.model = file.name;
  options.script_file = file.path;
  options.device = "cpu";
  options.threads = 1;
  auto task = ParseTask(TaskKindName(kind), "", BuffersName(buffers));
  if (!task.ok()) return task.status();
  options.task = *task;
  return Trainer::Create(options);
}

TrainSettings Sgd(int epochs) {
  TrainSettings s;
  s.epochs = epochs;
  s.batch_size = 16;
  s.learning_rate = 0.1;
  s.momentum = 0.9;
  s.seed = 3;
  return s;
}

TEST(ScriptTrainingTest, ABinaryClassifierLearnsAndReportsItsScoreHistograms) {
  const ScriptFile file = SaveMlp("binary.pt", 6, 1, 11);
  auto trainer = ScriptTrainer(file, TaskKind::kBinary);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  EXPECT_EQ((*trainer)->layout().size(), 4u);
  EXPECT_EQ((*trainer)->layout().tensors()[0].name, "fc1.weight");
  const Dataset train = SyntheticTable(800, 6, TaskKind::kBinary, 1);
  const Dataset test = SyntheticTable(400, 6, TaskKind::kBinary, 2);
  auto before = (*trainer)->Evaluate(test);
  ASSERT_TRUE(before.ok()) << before.status();
  auto trained = (*trainer)->Train(train, Sgd(5));
  ASSERT_TRUE(trained.ok()) << trained.status();
  auto after = (*trainer)->Evaluate(test);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GT(after->accuracy, 0.9);
  EXPECT_LT(after->loss, before->loss);
  ASSERT_EQ(after->classes, 2);
  ASSERT_EQ(after->confusion.size(), 4u);
  int64_t positives = 0;
  for (uint8_t label : test.labels) positives += label;
  auto histogram = ScoreHistogram::FromCounts(after->positive_scores, after->negative_scores);
  ASSERT_TRUE(histogram.ok()) << histogram.status();
  int64_t positive_total = 0, negative_total = 0;
  for (int64_t c : after->positive_scores) positive_total += c;
  for (int64_t c : after->negative_scores) negative_total += c;
  EXPECT_EQ(positive_total, positives);
  EXPECT_EQ(negative_total, test.size() - positives);
  EXPECT_EQ(after->confusion[2] + after->confusion[3], positives);  // truth 1, either prediction
  auto auc = histogram->Auc();
  ASSERT_TRUE(auc.ok());
  EXPECT_GT(*auc, 0.95);
}

TEST(ScriptTrainingTest, ARegressionLearnsAndReportsItsErrorSums) {
  const ScriptFile file = SaveMlp("regression.pt", 6, 1, 12);
  auto trainer = ScriptTrainer(file, TaskKind::kRegression);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  const Dataset train = SyntheticTable(800, 6, TaskKind::kRegression, 1);
  const Dataset test = SyntheticTable(400, 6, TaskKind::kRegression, 2);
  TrainSettings settings = Sgd(10);
  settings.learning_rate = 0.02;
  ASSERT_TRUE((*trainer)->Train(train, settings).ok());
  auto result = (*trainer)->Evaluate(test);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->confusion.empty());
  EXPECT_EQ(result->regression.count, test.size());
  EXPECT_NEAR(result->regression.Mse(), result->loss, 1e-4);  // the loss is the MSE
  double target = 0;
  for (float t : test.targets) target += t;
  EXPECT_NEAR(result->regression.target, target, 1e-3);
  EXPECT_GT(result->regression.R2(), 0.9);
}

TEST(ScriptTrainingTest, AMulticlassModelTrainsWithCrossEntropy) {
  const ScriptFile file = SaveMlp("multiclass.pt", 6, 3, 13);
  auto trainer = ScriptTrainer(file, TaskKind::kMulticlass);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Train(SyntheticTable(900, 6, TaskKind::kMulticlass, 1), Sgd(5)).ok());
  auto result = (*trainer)->Evaluate(SyntheticTable(300, 6, TaskKind::kMulticlass, 2));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->classes, 3);
  EXPECT_GT(result->accuracy, 0.8);
  EXPECT_TRUE(result->positive_scores.empty());
}

TEST(ScriptTrainingTest, RecordLevelDpSgdTrainsAScriptModelByThePerExampleLoop) {
  const ScriptFile file = SaveMlp("dp.pt", 6, 1, 14);
  auto trainer = ScriptTrainer(file, TaskKind::kBinary);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  TrainSettings settings = Sgd(1);
  settings.dp.clip_norm = 1.0;
  settings.dp.noise_multiplier = 0.5;
  settings.dp.sampling_rate = 0.05;
  settings.dp.steps = 20;
  auto result = (*trainer)->Train(SyntheticTable(400, 6, TaskKind::kBinary, 1), settings);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 20);
  EXPECT_TRUE(std::isfinite(result->loss));
  auto eval = (*trainer)->Evaluate(SyntheticTable(400, 6, TaskKind::kBinary, 2));
  ASSERT_TRUE(eval.ok());
  EXPECT_GT(eval->accuracy, 0.7);
}

TEST(ScriptTrainingTest, AFileWhoseHashIsNotTheNamedOneIsNeverLoaded) {
  const ScriptFile file = SaveMlp("pinned.pt", 6, 1, 15);
  const ScriptFile other = SaveMlp("other.pt", 6, 1, 16);
  ScriptFile swapped{other.path, file.name};  // the plan names one file, the site holds another
  auto trainer = ScriptTrainer(swapped, TaskKind::kBinary);
  EXPECT_EQ(trainer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(trainer.status().message()), HasSubstr("not the"));
  EXPECT_THAT(std::string(trainer.status().message()), HasSubstr(file.name.substr(7)));
  TrainerOptions builtin;
  builtin.model = "mlp";
  builtin.task.kind = TaskKind::kBinary;
  builtin.task.loss = Loss::kBceWithLogits;
  EXPECT_THAT(std::string(Trainer::Create(builtin).status().message()),
              HasSubstr("needs a TorchScript model"));
}

TEST(ScriptTrainingTest, WeightsOfAnotherLayoutAreRefusedNamingTheTensorsThatDiffer) {
  const ScriptFile file = SaveMlp("layout.pt", 6, 1, 17);
  auto trainer = ScriptTrainer(file, TaskKind::kBinary);
  ASSERT_TRUE(trainer.ok());
  const ScriptFile wider = SaveMlp("wider.pt", 7, 1, 17);
  auto other = ScriptTrainer(wider, TaskKind::kBinary);
  ASSERT_TRUE(other.ok());
  auto weights = (*other)->GetWeights();
  ASSERT_TRUE(weights.ok());
  Status set = (*trainer)->SetWeights(*weights);
  EXPECT_EQ(set.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(set.message()), HasSubstr("fc1.weight"));
}

TEST(ScriptTrainingTest, AveragedBuffersArePartOfTheModelAndLocalOnesStayAtTheSite) {
  const ScriptFile file = SaveMlp("bn.pt", 6, 1, 18, /*batch_norm=*/true);
  auto averaged = ScriptTrainer(file, TaskKind::kBinary, Buffers::kAverage);
  ASSERT_TRUE(averaged.ok()) << averaged.status();
  const ModelLayout& layout = (*averaged)->layout();
  ASSERT_EQ(layout.size(), 8u);
  EXPECT_EQ(layout.tensors()[2].name, "bn.weight");
  EXPECT_EQ(layout.tensors()[6].name, "bn.running_mean");
  EXPECT_EQ(layout.tensors()[7].name, "bn.running_var");

  auto local = ScriptTrainer(file, TaskKind::kBinary, Buffers::kLocal);
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_EQ((*local)->layout().size(), 6u);
  auto global = (*local)->GetWeights();
  ASSERT_TRUE(global.ok());
  const Dataset data = SyntheticTable(400, 6, TaskKind::kBinary, 1);
  const Dataset test = SyntheticTable(200, 6, TaskKind::kBinary, 2);
  ASSERT_TRUE((*local)->Train(data, Sgd(2)).ok());
  auto trained_eval = (*local)->Evaluate(test);
  // The next round sets the global weights again: the running statistics the site learnt stay.
  ASSERT_TRUE((*local)->SetWeights(*global).ok());
  auto kept = (*local)->Evaluate(test);
  auto fresh = ScriptTrainer(file, TaskKind::kBinary, Buffers::kLocal);
  ASSERT_TRUE(fresh.ok());
  auto untrained = (*fresh)->Evaluate(test);
  ASSERT_TRUE(trained_eval.ok() && kept.ok() && untrained.ok());
  // Same weights, different buffers: the site's own statistics change its predictions.
  EXPECT_NE(kept->loss, untrained->loss);

  // Averaged: the trained buffers travel in the weights, and setting them restores them.
  ASSERT_TRUE((*averaged)->Train(data, Sgd(2)).ok());
  auto with_buffers = (*averaged)->GetWeights();
  ASSERT_TRUE(with_buffers.ok());
  const int64_t mean_at = with_buffers->layout.Offset(6);
  EXPECT_NE(with_buffers->values[mean_at], 0.0f);  // running_mean moved from its zeros
}

}  // namespace
}  // namespace hansa
