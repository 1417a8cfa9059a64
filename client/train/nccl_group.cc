#include "client/train/internal/nccl_group.h"

#ifdef HANSA_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace hansa::internal {

#ifdef HANSA_WITH_NCCL

bool NcclAvailable() { return true; }

StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>> MakeNcclGroup(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
    std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::intrusive_ptr<c10d::ProcessGroup>(
      c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options));
}

#else

bool NcclAvailable() { return false; }

StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>> MakeNcclGroup(
    const c10::intrusive_ptr<c10d::Store>&, int, int, std::chrono::milliseconds) {
  return absl::FailedPreconditionError("this LibTorch was built without NCCL");
}

#endif

}  // namespace hansa::internal
