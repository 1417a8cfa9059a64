// A site's data-parallel process group: torch's own c10d process groups (ProcessGroupGloo on
// CPUs, ProcessGroupNCCL on GPUs) joined through a TCPStore rendezvous that rank 0 serves. A
// Trainer given a group (TrainerOptions::group) trains with the other ranks; those ranks run
// ServeDataParallelTraining (data_parallel.h).
//
// Free of LibTorch: the group is opaque here (parallel_group.cc holds the torch side, and
// internal/torch_group.h its collectives for the trainer). A group is used by one thread at a
// time: its rank's trainer.
#pragma once

#include <memory>
#include <string>

#include "common/status/status.h"

namespace hansa {

struct DataParallelOptions {
  int world_size = 1;
  int rank = 0;
  // host:port of the TCPStore; rank 0 serves it. Keep it on the site's own network.
  std::string rendezvous = "127.0.0.1:29400";
  // "auto" (nccl when the trainer's device is CUDA, else gloo), "gloo" or "nccl".
  std::string backend = "auto";
  // The address Gloo binds its links to; empty = the rendezvous host.
  std::string interface;
  double timeout_seconds = 600;  // how long a collective may wait for the other ranks
};

// A joined process group. Destroying rank 0's group tells the other ranks to stop.
class DataParallelGroup {
 public:
  virtual ~DataParallelGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;
};

// InvalidArgument for bad options (world_size < 2, rank outside 0..world_size-1, a malformed
// rendezvous, an unknown backend); FailedPrecondition for nccl on a LibTorch without it;
// Unavailable when the rendezvous times out. `device` is the trainer's device option, for
// backend "auto".
StatusOr<std::shared_ptr<DataParallelGroup>> JoinDataParallelGroup(
    const DataParallelOptions& options, const std::string& device);

}  // namespace hansa
