// FakeClock: time moves only by hand, and a wait with a deadline on it ends once the time is
// moved past that deadline, not before, without anyone signalling.
#include "common/clock/clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace hansa {
namespace {

TEST(FakeClockTest, MovesOnlyByHandAndNeverBackwards) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(clock.Now(), start + absl::Seconds(3));
  clock.Set(start);
  EXPECT_EQ(clock.Now(), start + absl::Seconds(3));
  clock.Set(start + absl::Hours(1));
  EXPECT_EQ(clock.Now(), start + absl::Hours(1));
}

// A waiter loops as the engine does: until its deadline by the clock has passed.
TEST(FakeClockTest, AWaitEndsWhenTheClockPassesItsDeadlineAndNotBefore) {
  auto clock = std::make_shared<FakeClock>();
  absl::Mutex mu;
  absl::CondVar cv;
  std::atomic<bool> woke{false};
  const absl::Time deadline = clock->Now() + absl::Minutes(10);
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    while (clock->Now() < deadline) clock->WaitWithDeadline(&cv, &mu, deadline);
    woke = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(woke);  // ten fake minutes have not passed, whatever the real time
  clock->Advance(absl::Minutes(9));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(woke);
  const absl::Time real_start = absl::Now();
  clock->Advance(absl::Minutes(2));  // no signal: the clock alone ends the wait
  waiter.join();
  EXPECT_TRUE(woke);
  EXPECT_LT(absl::Now() - real_start, absl::Seconds(1));
}

TEST(FakeClockTest, ASignalStillWakesAWaiter) {
  FakeClock clock;
  absl::Mutex mu;
  absl::CondVar cv;
  bool ready = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    while (!ready) clock.WaitWithDeadline(&cv, &mu, clock.Now() + absl::Hours(1));
  });
  {
    absl::MutexLock lock(&mu);
    ready = true;
    cv.SignalAll();
  }
  waiter.join();
}

TEST(RealClockTest, IsAbslTime) {
  auto clock = Clock::Real();
  EXPECT_EQ(clock, Clock::Real());
  EXPECT_LT(absl::AbsDuration(clock->Now() - absl::Now()), absl::Seconds(1));
  absl::Mutex mu;
  absl::CondVar cv;
  absl::MutexLock lock(&mu);
  const absl::Time start = absl::Now();
  clock->WaitWithDeadline(&cv, &mu, start + absl::Milliseconds(20));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(15));
}

}  // namespace
}  // namespace hansa
