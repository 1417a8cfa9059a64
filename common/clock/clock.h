// The one seam for time (as leveldb's Env supplies NowMicros): what time it is, and waiting on a
// condition variable until a deadline by that time. The real clock is absl's; FakeClock is
// moved by hand, so tests of deadlines run without sleeping.
//
// Thread-safe: any thread may call any method.
#pragma once

#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hansa {

class Clock {
 public:
  virtual ~Clock() = default;
  // The process-wide real clock (absl::Now, absl's timed waits); never destroyed.
  static std::shared_ptr<Clock> Real();

  virtual absl::Time Now() const = 0;
  // The real-time deadline to give a condition-variable wait for `deadline` on this clock (the
  // same for the real clock; soon for a fake one, which is read again after it). Callers loop on
  // their condition and Now().
  virtual absl::Time WaitDeadline(absl::Time deadline) const = 0;
  // Returns once `d` has passed on this clock (a site's backoff between reconnections).
  void SleepFor(absl::Duration d) const;
  // cv->WaitWithDeadline(mu, WaitDeadline(deadline)). REQUIRES: `mu` held.
  void WaitWithDeadline(absl::CondVar* cv, absl::Mutex* mu, absl::Time deadline) const {
    cv->WaitWithDeadline(mu, WaitDeadline(deadline));
  }
};

// Time that moves only when a test says so. A wait on it returns once Advance or Set carried the
// time past its deadline (within kPoll of real time), when signalled, or spuriously: a waiter
// re-reads the fake time every kPoll, so an advance never needs the waiter's mutex (no lock
// order between the clock and its users) and is never lost.
class FakeClock : public Clock {
 public:
  static constexpr absl::Duration kPoll = absl::Milliseconds(1);
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1700000000)) : now_(start) {}

  absl::Time Now() const override;
  // Now (real time) once `deadline` passed on this clock, else kPoll of real time from now.
  absl::Time WaitDeadline(absl::Time deadline) const override;
  void Advance(absl::Duration by);
  void Set(absl::Time to);  // never backwards: an earlier time is ignored

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hansa
