// ProcessGroupNCCL for data-parallel sites on GPUs, when LibTorch has it (a CUDA build; the
// build defines HANSA_WITH_NCCL then). Otherwise NcclAvailable() is false and MakeNcclGroup
// says so.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

#include "common/status/status.h"

namespace hansa::internal {

bool NcclAvailable();

StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>> MakeNcclGroup(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
    std::chrono::milliseconds timeout);

}  // namespace hansa::internal
