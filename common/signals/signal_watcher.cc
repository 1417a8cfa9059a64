#include "common/signals/signal_watcher.h"

#include <pthread.h>

#include <utility>

namespace hansa {
namespace {

// The watcher's own wake-up at Stop: never one of the signals it reports.
constexpr int kWakeUp = SIGUSR1;

}  // namespace

SignalWatcher::SignalWatcher() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGHUP);
  sigaddset(&set_, kWakeUp);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

SignalWatcher::~SignalWatcher() { Stop(); }

void SignalWatcher::Start(std::function<void(int signal)> on_stop,
                          std::function<void()> on_hangup) {
  thread_ = std::thread([this, on_stop = std::move(on_stop), on_hangup = std::move(on_hangup)] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set_, &sig) != 0 || sig == kWakeUp) return;
      if (sig == SIGHUP) {
        if (on_hangup) on_hangup();
        continue;
      }
      on_stop(sig);
      return;
    }
  });
}

void SignalWatcher::Stop() {
  if (!thread_.joinable()) return;
  // Harmless when the thread already returned after a signal: SIGUSR1 is blocked everywhere,
  // so it stays pending until the process ends.
  pthread_kill(thread_.native_handle(), kWakeUp);
  thread_.join();
}

void SignalWatcher::Release() { pthread_sigmask(SIG_UNBLOCK, &set_, nullptr); }

}  // namespace hansa
