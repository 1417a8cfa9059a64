// The c10d store under a RendezvousStore (internal to client/train): for process groups built
// on the same rendezvous. REQUIRES: `store` was made by JoinRendezvous.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "client/train/rendezvous.h"

namespace hansa::internal {

c10::intrusive_ptr<c10d::Store> TorchStore(RendezvousStore& store);

}  // namespace hansa::internal
