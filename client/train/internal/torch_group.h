// The torch side of a DataParallelGroup, for the trainer's sources (trainer.cc, dp_sgd.cc,
// parallel_group.cc, data_parallel.cc; all include torch). Collectives throw as LibTorch does;
// callers are inside CatchTorch.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "client/train/parallel_group.h"
#include "common/status/status.h"

namespace hansa::internal {

class TorchGroup : public DataParallelGroup {
 public:
  // In place: the sum over all ranks.
  virtual void AllReduceSum(torch::Tensor& tensor) = 0;
  // In place: rank 0's values on every rank.
  virtual void Broadcast(torch::Tensor& tensor) = 0;
  // Rank 0: hands the other ranks their next command (through the store).
  virtual Status SendCommand(const std::string& command) = 0;
  // Ranks > 0: waits for rank 0's next command. Unavailable when rank 0 is gone.
  virtual StatusOr<std::string> NextCommand() = 0;
  // Ranks > 0: tells rank 0 that the stop command arrived.
  virtual void AcknowledgeStop() = 0;
};

// The tensors as one flat tensor (one copy), e.g. to reduce a parameter list in one collective.
inline torch::Tensor Flatten(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}));
  return torch::cat(flat);
}

// Copies `flat` back into `tensors`, in order (the inverse of Flatten).
inline void Unflatten(const torch::Tensor& flat, std::vector<torch::Tensor>& tensors) {
  int64_t offset = 0;
  for (auto& t : tensors) {
    const int64_t n = t.numel();
    t.detach().copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace hansa::internal
