// SIGINT and SIGTERM as a clean stop, for hansa-client and hansa-coordinator alike.
#pragma once

#include <signal.h>

#include <functional>
#include <thread>

namespace hansa {

// Blocks SIGINT and SIGTERM in the constructing thread, and so in every thread it starts
// afterwards (construct it first, before gRPC, LibTorch or any other library makes threads).
// After Start, the first of them runs `on_signal` on the watcher's own thread. Stop (or the
// destructor) wakes that thread and joins it, so nothing of the watcher runs once its owner
// has returned: a signal that arrives later stays blocked and ends with the process.
// One owner thread calls Start, Stop and the destructor; `on_signal` must be safe to call
// from another thread while the owner runs.
class SignalWatcher {
 public:
  SignalWatcher();
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  // REQUIRES: not started before.
  void Start(std::function<void(int signal)> on_signal);
  // Joins the watching thread: after it returns, `on_signal` is not running and never will.
  // Idempotent; a no-op before Start.
  void Stop();
  // Unblocks the signals again in the calling thread, so their default action (ending the
  // process) applies; for a process that has nothing to stop cleanly. REQUIRES: not started.
  void Release();

 private:
  sigset_t set_;
  std::thread thread_;
};

}  // namespace hansa
