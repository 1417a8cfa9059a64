// torch's c10d TCPStore behind RendezvousStore: every torch exception becomes a Status here.
#include "client/train/rendezvous.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <exception>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/train/internal/torch_store.h"

namespace hansa {
namespace {

class TcpRendezvous final : public RendezvousStore {
 public:
  TcpRendezvous(const RendezvousOptions& o, c10::intrusive_ptr<c10d::Store> store)
      : options_(o), store_(std::move(store)) {}
  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }

  Status Set(const std::string& key, const std::string& value) override {
    try {
      std::lock_guard<std::mutex> lock(mu_);
      store_->set(key, std::vector<uint8_t>(value.begin(), value.end()));
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return Gone(key, e);
    }
  }

  StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds timeout) override {
    // Polled rather than c10d's blocking wait, which would hold the store's one connection
    // (and other threads' calls) for as long as it waits.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      try {
        std::lock_guard<std::mutex> lock(mu_);
        if (store_->check({key})) {
          std::vector<uint8_t> bytes = store_->get(key);
          return std::string(bytes.begin(), bytes.end());
        }
      } catch (const std::exception& e) {
        return Gone(key, e);
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("rendezvous: '", key, "' not set within ", timeout.count(), " ms"));
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(20));
    }
  }

  StatusOr<bool> Check(const std::vector<std::string>& keys) override {
    try {
      std::lock_guard<std::mutex> lock(mu_);
      return store_->check(keys);
    } catch (const std::exception& e) {
      return Gone(keys.empty() ? "" : keys[0], e);
    }
  }

  StatusOr<int64_t> Add(const std::string& key, int64_t delta) override {
    try {
      std::lock_guard<std::mutex> lock(mu_);
      return store_->add(key, delta);
    } catch (const std::exception& e) {
      return Gone(key, e);
    }
  }

  c10::intrusive_ptr<c10d::Store> store() const { return store_; }

 private:
  Status Gone(const std::string& key, const std::exception& e) const {
    return absl::UnavailableError(absl::StrCat("rendezvous at ", options_.host, ":", options_.port,
                                               " (key '", key, "'): ", e.what()));
  }
  const RendezvousOptions options_;
  std::mutex mu_;
  c10::intrusive_ptr<c10d::Store> store_;
};

}  // namespace

StatusOr<std::unique_ptr<RendezvousStore>> JoinRendezvous(const RendezvousOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous rank ", o.rank, " is outside 0..", o.world_size - 1));
  }
  if (o.port < 1 || o.port > 65535 || o.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous address '", o.host, ":", o.port, "' is not host:port"));
  }
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(o.port);
  so.isServer = o.rank == 0;
  so.numWorkers = static_cast<size_t>(o.world_size);
  so.waitWorkers = true;
  so.timeout = o.timeout;
  try {
    return std::unique_ptr<RendezvousStore>(
        std::make_unique<TcpRendezvous>(o, c10::make_intrusive<c10d::TCPStore>(o.host, so)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("rendezvous at ", o.host, ":", o.port, " failed: ", e.what()));
  }
}

namespace internal {
c10::intrusive_ptr<c10d::Store> TorchStore(RendezvousStore& store) {
  return static_cast<TcpRendezvous&>(store).store();
}
}  // namespace internal

}  // namespace hansa
