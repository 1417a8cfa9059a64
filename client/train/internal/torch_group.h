// The torch side of a DataParallelGroup, for trainer.cc and data_parallel.cc (both include
// torch). Collectives throw as LibTorch does; callers are inside CatchTorch.
#pragma once

#include <torch/types.h>

#include <string>

#include "client/train/data_parallel.h"
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

}  // namespace hansa::internal
