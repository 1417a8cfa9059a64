// The rendezvous of a group of processes the way torchrun makes it: torch's c10d TCPStore,
// served by rank 0 at host:port, every rank a client. Data-parallel sites (parallel_group.h)
// build their process group on it; `hansa simulate` workers (sim/workers.h) pass their run's
// setup and round signals through it. Whoever can reach the port can read and write every key:
// keep the rendezvous on a private network, as torchrun's.
//
// Free of LibTorch: parallel_group.cc reaches the c10d store through internal/torch_store.h.
// Threading: a RendezvousStore may be called from several threads at once (each call holds the
// store's lock while it talks to the server).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace hansa {

struct RendezvousOptions {
  std::string host = "127.0.0.1";
  int port = 29400;
  int rank = 0;
  int world_size = 1;
  // How long joining may wait for every rank, and the default wait of Get.
  std::chrono::milliseconds timeout{600000};
};

class RendezvousStore {
 public:
  virtual ~RendezvousStore() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual Status Set(const std::string& key, const std::string& value) = 0;
  // The key's value once some rank has set it; DeadlineExceeded after `timeout`, Unavailable
  // when the store is gone (rank 0 ended).
  virtual StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds timeout) = 0;
  // Whether every key is set, without waiting. Unavailable when the store is gone.
  virtual StatusOr<bool> Check(const std::vector<std::string>& keys) = 0;
  // Adds `delta` to the counter at `key` (0 when unset) and returns the sum.
  virtual StatusOr<int64_t> Add(const std::string& key, int64_t delta) = 0;
};

// Serves the store (rank 0) or connects to it, waiting until all world_size ranks have joined.
// InvalidArgument for a rank outside 0..world_size-1, a port outside 1..65535 or an empty host;
// Unavailable when the rendezvous fails or times out.
StatusOr<std::unique_ptr<RendezvousStore>> JoinRendezvous(const RendezvousOptions& options);

}  // namespace hansa
