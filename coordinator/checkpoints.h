// Checkpoints of the global model at the coordinator: state_dir/checkpoints/round-NNNN.safetensors
// (loadable by PyTorch users with `safetensors`) and the strategy's state beside it, written to a
// temp file, fsynced and renamed; and reading the last one back to resume.
//
// Const and stateless beyond its paths: any thread, though the engine writes from its driver.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/state_store.h"
#include "coordinator/strategy.h"

namespace hansa {

// The global model as published: the model, the safetensors payload sites download (tagged with
// the round and the model name) and the payload's SHA-256 (lowercase hex).
struct PublishedModel {
  Model model;
  std::shared_ptr<const std::string> payload;
  std::string sha256;
};

class Checkpoints {
 public:
  Checkpoints(std::string state_dir, std::string model_name)
      : state_dir_(std::move(state_dir)), model_name_(std::move(model_name)) {}

  std::string ModelPath(int64_t round) const;
  // The strategy's state after `round` (momentum, moments), beside the checkpoint.
  std::string StrategyStatePath(int64_t round) const;

  // `model` as published after `round`.
  PublishedModel Encode(int64_t round, Model model) const;
  // Writes `published` as the checkpoint of `round`, and `strategy`'s state after a round > 0
  // when it has any; the file system's error.
  Status Write(int64_t round, const PublishedModel& published, const Strategy& strategy) const;
  // The checkpoint `last` names, as published; DataLoss when its digest is not the one the
  // state database recorded.
  StatusOr<PublishedModel> Load(const RoundRecord& last) const;

 private:
  const std::string state_dir_;
  const std::string model_name_;
};

}  // namespace hansa
