// c10d process groups for data-parallel sites: a TCPStore rendezvous (rank 0 serves it), Gloo
// or NCCL for the collectives, and the store for rank 0's commands to the other ranks.
#include "client/train/parallel_group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <chrono>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/train/internal/nccl_group.h"
#include "client/train/internal/torch_group.h"
#include "client/train/internal/torch_store.h"
#include "client/train/rendezvous.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

constexpr char kCommandPrefix[] = "hansa/command/";
constexpr char kStoppedPrefix[] = "hansa/stopped/";
// How long a waiting rank sleeps in one store wait before it looks again; rounds may be far
// apart (rank 0 waits for the coordinator), so a timeout here is not an error.
constexpr std::chrono::seconds kCommandPoll(30);

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

bool IsTimeout(const std::exception& e) {
  const std::string what = e.what();
  return what.find("imeout") != std::string::npos || what.find("timed out") != std::string::npos;
}

class Group final : public internal::TorchGroup {
 public:
  Group(int rank, int world_size, std::string backend, c10::intrusive_ptr<c10d::Store> store,
        c10::intrusive_ptr<c10d::ProcessGroup> pg, std::chrono::milliseconds timeout)
      : rank_(rank),
        world_size_(world_size),
        backend_(std::move(backend)),
        store_(std::move(store)),
        pg_(std::move(pg)),
        timeout_(timeout) {}

  ~Group() override {
    if (rank_ != 0) return;
    // Tell the other ranks to stop, and keep the store (served here) up until they read it.
    if (!SendCommand(R"({"op":"stop"})").ok()) return;
    try {
      std::vector<std::string> keys;
      for (int r = 1; r < world_size_; ++r) keys.push_back(absl::StrCat(kStoppedPrefix, r));
      store_->wait(keys, std::chrono::seconds(10));
    } catch (const std::exception& e) {
      spdlog::warn("data-parallel group: not every rank confirmed the stop: {}", e.what());
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return backend_; }

  void AllReduceSum(torch::Tensor& tensor) override {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = timeout_;
    pg_->allreduce(tensors, options)->wait();
  }

  void Broadcast(torch::Tensor& tensor) override {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    options.timeout = timeout_;
    pg_->broadcast(tensors, options)->wait();
  }

  Status SendCommand(const std::string& command) override {
    try {
      store_->set(absl::StrCat(kCommandPrefix, sequence_++),
                  std::vector<uint8_t>(command.begin(), command.end()));
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("data-parallel group: cannot hand the ranks their command: ", e.what()));
    }
  }

  StatusOr<std::string> NextCommand() override {
    const std::string key = absl::StrCat(kCommandPrefix, sequence_++);
    for (;;) {
      try {
        store_->wait({key}, kCommandPoll);
        std::vector<uint8_t> bytes = store_->get(key);
        return std::string(bytes.begin(), bytes.end());
      } catch (const std::exception& e) {
        if (IsTimeout(e)) continue;
        return absl::UnavailableError(
            absl::StrCat("data-parallel group: rank 0 is gone (", e.what(), ")"));
      }
    }
  }

  void AcknowledgeStop() override {
    try {
      store_->set(absl::StrCat(kStoppedPrefix, rank_), std::vector<uint8_t>{1});
    } catch (const std::exception& e) {
      spdlog::warn("data-parallel group: could not confirm the stop: {}", e.what());
    }
  }

 private:
  const int rank_, world_size_;
  const std::string backend_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  const std::chrono::milliseconds timeout_;
  int64_t sequence_ = 0;
};

Status CheckOptions(const DataParallelOptions& o, std::string* host, int* port) {
  if (o.world_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-parallel world_size = ", o.world_size, " must be at least 2"));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-parallel rank = ", o.rank, " is outside 0..", o.world_size - 1));
  }
  const size_t colon = o.rendezvous.rfind(':');
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(o.rendezvous.substr(colon + 1), port) || *port < 1 || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-parallel rendezvous '", o.rendezvous, "' is not host:port"));
  }
  *host = o.rendezvous.substr(0, colon);
  if (!(o.timeout_seconds > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data-parallel timeout = ", o.timeout_seconds, " must be positive"));
  }
  return absl::OkStatus();
}

StatusOr<std::shared_ptr<DataParallelGroup>> Join(const DataParallelOptions& o,
                                                  const std::string& device) {
  std::string host;
  int port = 0;
  RETURN_IF_ERROR(CheckOptions(o, &host, &port));
  std::string backend = o.backend;
  if (backend == "auto") backend = device.rfind("cuda", 0) == 0 ? "nccl" : "gloo";
  if (backend != "gloo" && backend != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("data-parallel backend '", o.backend, "' is not one of auto, gloo, nccl"));
  }
  if (backend == "nccl" && !internal::NcclAvailable()) {
    return absl::FailedPreconditionError(
        "data-parallel backend nccl: this LibTorch was built without NCCL (a CPU build); use "
        "backend = \"gloo\" or a CUDA LibTorch");
  }
  const auto timeout = Millis(o.timeout_seconds);
  spdlog::info("data-parallel rank {}/{}: rendezvous at {} ({})", o.rank, o.world_size,
               o.rendezvous, backend);
  RendezvousOptions ro;
  ro.host = host;
  ro.port = port;
  ro.rank = o.rank;
  ro.world_size = o.world_size;
  ro.timeout = timeout;
  ASSIGN_OR_RETURN(std::shared_ptr<RendezvousStore> rendezvous, JoinRendezvous(ro));
  c10::intrusive_ptr<c10d::Store> store = internal::TorchStore(*rendezvous);
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("hansa/pg", store);
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  if (backend == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(o.interface.empty() ? host : o.interface));
    pg = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, o.rank, o.world_size, options);
  } else {
    ASSIGN_OR_RETURN(pg, internal::MakeNcclGroup(pg_store, o.rank, o.world_size, timeout));
  }
  return std::shared_ptr<DataParallelGroup>(
      std::make_shared<Group>(o.rank, o.world_size, backend, store, pg, timeout));
}

}  // namespace

StatusOr<std::shared_ptr<DataParallelGroup>> JoinDataParallelGroup(
    const DataParallelOptions& options, const std::string& device) {
  try {
    return Join(options, device);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("data-parallel rendezvous at ", options.rendezvous, " failed: ", e.what()));
  }
}

}  // namespace hansa
