// SIGINT and SIGTERM as a clean stop, and SIGHUP as a reload, for hansa-client and
// hansa-coordinator alike.
#pragma once

#include <signal.h>

#include <functional>
#include <thread>

namespace hansa {

// Blocks SIGINT, SIGTERM and SIGHUP in the constructing thread, and so in every thread it
// starts afterwards (construct it first, before gRPC, LibTorch or any other library makes
// threads). After Start, the watcher's own thread runs `on_hangup` for every SIGHUP (the
// process goes on) and `on_stop` for the first SIGINT or SIGTERM, after which it watches no
// more. Without `on_hangup`, a SIGHUP is ignored (it does not end the process). Stop (or the
// destructor) wakes that thread and joins it, so nothing of the watcher runs once its owner
// has returned: a signal that arrives later stays blocked (a stop ends with the process).
// One owner thread calls Start, Stop and the destructor; the callbacks must be safe to call
// from another thread while the owner runs; they run one at a time.
class SignalWatcher {
 public:
  SignalWatcher();
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  // REQUIRES: not started before.
  void Start(std::function<void(int signal)> on_stop, std::function<void()> on_hangup = nullptr);
  // Joins the watching thread: after it returns, no callback is running and none ever will.
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
