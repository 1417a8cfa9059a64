// The engine's "state changed" signal: a condition variable for the engine's own waits that
// also calls one listener on every SignalAll, so the gRPC service (service.h) learns that a
// parked long-poll may now have an answer without keeping a thread waiting in the engine.
//
// Threading: SignalAll and WaitWithDeadline are called with the owner's mutex held; the
// listener runs there too (after the owner's lock, under this object's own), so it must be
// quick and must not call back into the owner. set_listener may be called from any thread that
// does not hold a lock the listener takes.
#pragma once

#include <functional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hansa {

class ChangeSignal {
 public:
  void SignalAll() {
    cv_.SignalAll();
    absl::MutexLock lock(&listener_mu_);
    if (listener_) listener_();
  }
  // As absl::CondVar::WaitWithDeadline: true on timeout.
  bool WaitWithDeadline(absl::Mutex* mu, absl::Time deadline) {
    return cv_.WaitWithDeadline(mu, deadline);
  }
  // Replaces the listener (null: none). Once it returns, the old one is not running and will
  // not be called again.
  void set_listener(std::function<void()> listener) {
    absl::MutexLock lock(&listener_mu_);
    listener_ = std::move(listener);
  }

 private:
  absl::CondVar cv_;
  absl::Mutex listener_mu_;
  std::function<void()> listener_ ABSL_GUARDED_BY(listener_mu_);
};

}  // namespace hansa
