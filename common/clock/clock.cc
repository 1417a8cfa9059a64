#include "common/clock/clock.h"

namespace hansa {
namespace {

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  absl::Time WaitDeadline(absl::Time deadline) const override { return deadline; }
};

}  // namespace

void Clock::SleepFor(absl::Duration d) const {
  const absl::Time until = Now() + d;
  absl::Mutex mu;
  absl::CondVar never_signalled;
  absl::MutexLock lock(&mu);
  while (Now() < until) never_signalled.WaitWithDeadline(&mu, WaitDeadline(until));
}

std::shared_ptr<Clock> Clock::Real() {
  static const auto* real = new std::shared_ptr<Clock>(std::make_shared<RealClock>());
  return *real;
}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

absl::Time FakeClock::WaitDeadline(absl::Time deadline) const {
  const absl::Time real = absl::Now();
  return Now() >= deadline ? real : real + kPoll;
}

void FakeClock::Advance(absl::Duration by) {
  absl::MutexLock lock(&mu_);
  now_ += by;
}

void FakeClock::Set(absl::Time to) {
  absl::MutexLock lock(&mu_);
  if (to > now_) now_ = to;
}

}  // namespace hansa
