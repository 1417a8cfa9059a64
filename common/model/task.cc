#include "common/model/task.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hansa {
namespace {

constexpr char kScriptPrefix[] = "sha256:";
constexpr size_t kHexDigits = 64;

template <typename Enum, size_t N>
StatusOr<Enum> Lookup(std::string_view what, std::string_view name,
                      const std::array<std::pair<std::string_view, Enum>, N>& choices) {
  std::string known;
  for (const auto& [spelled, value] : choices) {
    if (spelled == name) return value;
    absl::StrAppend(&known, known.empty() ? "" : ", ", "\"", std::string(spelled), "\"");
  }
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(what), " \"", std::string(name), "\" is not one of ", known));
}

constexpr std::array<std::pair<std::string_view, TaskKind>, 3> kKinds = {{
    {"multiclass", TaskKind::kMulticlass},
    {"binary", TaskKind::kBinary},
    {"regression", TaskKind::kRegression},
}};
constexpr std::array<std::pair<std::string_view, Loss>, 3> kLosses = {{
    {"cross_entropy", Loss::kCrossEntropy},
    {"bce_with_logits", Loss::kBceWithLogits},
    {"mse", Loss::kMse},
}};
constexpr std::array<std::pair<std::string_view, Buffers>, 2> kBuffers = {{
    {"average", Buffers::kAverage},
    {"local", Buffers::kLocal},
}};

template <typename Enum, size_t N>
std::string_view NameOf(Enum value, const std::array<std::pair<std::string_view, Enum>, N>& all) {
  for (const auto& [spelled, v] : all) {
    if (v == value) return spelled;
  }
  return "?";
}

}  // namespace

std::string_view TaskKindName(TaskKind kind) { return NameOf(kind, kKinds); }
std::string_view LossName(Loss loss) { return NameOf(loss, kLosses); }
std::string_view BuffersName(Buffers buffers) { return NameOf(buffers, kBuffers); }

StatusOr<Task> ParseTask(std::string_view kind, std::string_view loss, std::string_view buffers) {
  Task task;
  if (!kind.empty()) {
    ASSIGN_OR_RETURN(task.kind, Lookup("task kind", kind, kKinds));
  }
  if (!buffers.empty()) {
    ASSIGN_OR_RETURN(task.buffers, Lookup("model buffers", buffers, kBuffers));
  }
  if (loss.empty()) {
    task.loss = task.kind == TaskKind::kMulticlass ? Loss::kCrossEntropy
                : task.kind == TaskKind::kBinary   ? Loss::kBceWithLogits
                                                   : Loss::kMse;
    return task;
  }
  ASSIGN_OR_RETURN(task.loss, Lookup("loss", loss, kLosses));
  const bool regression_loss = task.loss == Loss::kMse;
  const bool fits = task.kind == TaskKind::kRegression
                        ? regression_loss
                        : task.loss == Loss::kCrossEntropy ||
                              (task.kind == TaskKind::kBinary && task.loss == Loss::kBceWithLogits);
  if (!fits) {
    return absl::InvalidArgumentError(absl::StrCat("loss \"", std::string(loss),
                                                   "\" does not fit a ", std::string(kind),
                                                   " task (multiclass: cross_entropy; binary: "
                                                   "bce_with_logits or cross_entropy; "
                                                   "regression: mse)"));
  }
  return task;
}

std::string ScriptModelName(std::string_view sha256_hex) {
  return absl::StrCat(kScriptPrefix, std::string(sha256_hex));
}

bool IsScriptModelName(std::string_view model, std::string* sha256_hex) {
  const std::string_view prefix = kScriptPrefix;
  if (model.substr(0, prefix.size()) != prefix) return false;
  const std::string_view hex = model.substr(prefix.size());
  if (hex.size() != kHexDigits) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  if (sha256_hex != nullptr) *sha256_hex = std::string(hex);
  return true;
}

}  // namespace hansa
