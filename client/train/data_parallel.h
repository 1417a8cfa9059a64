// Data-parallel training inside one site: a site larger than one GPU or one machine trains
// through a DataParallelGroup (parallel_group.h). Rank 0 is the site: it runs the session and
// its Trainer; every other rank only serves training (ServeDataParallelTraining) and never
// opens a connection outside the site (the store and the process group's links are all the
// traffic it makes).
//
// Each rank holds the same data set. Every step, the plan's batch (the same shuffled order on
// every rank) is split across the ranks, each computes its part's gradient, and the gradients
// are summed with allreduce, so every rank takes the same step as single-process training on
// the whole batch, up to floating-point summation order.
//
// Free of LibTorch. Threads: ServeDataParallelTraining occupies its caller's thread until rank
// 0 stops.
#pragma once

#include <memory>

#include "client/data.h"
#include "client/train/parallel_group.h"
#include "client/train/trainer.h"
#include "common/status/status.h"

namespace hansa {

// A rank > 0: trains on `train` whenever rank 0's Trainer trains (the model, settings and
// weights come from rank 0), with a Trainer made from `trainer` (its model is set per round),
// until rank 0 stops. OK when rank 0 stopped; Unavailable when it vanished; InvalidArgument on
// rank 0 or with a group JoinDataParallelGroup did not make.
Status ServeDataParallelTraining(const std::shared_ptr<DataParallelGroup>& group,
                                 const Dataset& train, const TrainerOptions& trainer);

}  // namespace hansa
