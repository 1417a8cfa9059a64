// Data-parallel training inside one site: a site larger than one GPU or one machine trains
// through torch's own c10d process groups (ProcessGroupGloo on CPUs, ProcessGroupNCCL on GPUs)
// with a TCPStore rendezvous. Rank 0 is the site: it runs the session and its Trainer; every
// other rank only serves training (ServeDataParallelTraining) and never opens a connection
// outside the site (the store and the process group's links are all the traffic it makes).
//
// Each rank holds the same data set. Every step, the plan's batch (the same shuffled order on
// every rank) is split across the ranks, each computes its part's gradient, and the gradients
// are summed with allreduce, so every rank takes the same step as single-process training on
// the whole batch, up to floating-point summation order.
//
// Free of LibTorch: the group is opaque here (data_parallel.cc holds the torch side).
#pragma once

#include <memory>
#include <string>

#include "client/data.h"
#include "common/status/status.h"

namespace hansa {

struct TrainerOptions;

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

// A rank > 0: trains on `train` whenever rank 0's Trainer trains (the model, settings and
// weights come from rank 0), with a Trainer made from `trainer` (its model is set per round),
// until rank 0 stops. OK when rank 0 stopped; Unavailable when it vanished.
Status ServeDataParallelTraining(const std::shared_ptr<DataParallelGroup>& group,
                                 const Dataset& train, const TrainerOptions& trainer);

}  // namespace hansa
