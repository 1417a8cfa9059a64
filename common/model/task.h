// What a model predicts and the loss it learns by (issue 15's `[task]`): the built-in models
// are multiclass classifiers on cross-entropy; a study's own model may instead be a binary
// classifier (one logit, binary cross-entropy with logits, or two logits and cross-entropy) or
// a regression (one output, mean squared error). Also how a model's buffers (BatchNorm's
// running statistics) are shared: averaged with the weights, or kept at each site (FedBN).
//
// And the name a study's own model has in plans and policies: "sha256:" and the hex SHA-256
// of its TorchScript file's bytes.
//
// Plain data, torch-free. Thread-compatible.
#pragma once

#include <string>
#include <string_view>

#include "common/status/status.h"

namespace hansa {

enum class TaskKind { kMulticlass, kBinary, kRegression };
enum class Loss { kCrossEntropy, kBceWithLogits, kMse };
enum class Buffers { kAverage, kLocal };

struct Task {
  TaskKind kind = TaskKind::kMulticlass;
  Loss loss = Loss::kCrossEntropy;
  Buffers buffers = Buffers::kAverage;

  bool operator==(const Task& o) const {
    return kind == o.kind && loss == o.loss && buffers == o.buffers;
  }
};

std::string_view TaskKindName(TaskKind kind);   // "multiclass", "binary", "regression"
std::string_view LossName(Loss loss);           // "cross_entropy", "bce_with_logits", "mse"
std::string_view BuffersName(Buffers buffers);  // "average", "local"

// A task from its names as configs and plans spell them. An empty kind is multiclass; an
// empty loss is the kind's usual one (cross-entropy, BCE with logits, MSE); empty buffers are
// "average". InvalidArgument, listing the choices, for an unknown name or a loss that does not
// fit the kind (MSE for a classifier, a classification loss for a regression).
StatusOr<Task> ParseTask(std::string_view kind, std::string_view loss, std::string_view buffers);

// "sha256:<hex>", the plan's and policy's name of a TorchScript model file.
std::string ScriptModelName(std::string_view sha256_hex);
// Whether `model` names a TorchScript file by hash (and not a built-in architecture); when it
// does and `sha256_hex` is not null, the hex digest. A name with the prefix but not 64
// lower-case hex digits is no such name.
bool IsScriptModelName(std::string_view model, std::string* sha256_hex = nullptr);

}  // namespace hansa
