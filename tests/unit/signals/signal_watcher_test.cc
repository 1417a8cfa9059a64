#include "common/signals/signal_watcher.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace hansa {
namespace {

// Waits (bounded) until `pred` holds; the signal thread runs on its own schedule.
template <typename Pred>
bool WaitFor(Pred pred) {
  for (int i = 0; i < 6000 && !pred(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

TEST(SignalWatcherTest, HangupReloadsAndDoesNotStop) {
  SignalWatcher watcher;
  std::atomic<int> hangups{0}, stopped_by{0};
  watcher.Start([&](int sig) { stopped_by = sig; }, [&] { ++hangups; });
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  ASSERT_TRUE(WaitFor([&] { return hangups == 1; }));
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  ASSERT_TRUE(WaitFor([&] { return hangups == 2; }));
  EXPECT_EQ(stopped_by, 0);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return stopped_by != 0; }));
  EXPECT_EQ(stopped_by, SIGTERM);
  watcher.Stop();
  EXPECT_EQ(hangups, 2);
}

TEST(SignalWatcherTest, HangupWithoutACallbackIsIgnored) {
  SignalWatcher watcher;
  std::atomic<int> stopped_by{0};
  watcher.Start([&](int sig) { stopped_by = sig; });
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);  // would end the process were it not watched
  ASSERT_EQ(kill(getpid(), SIGINT), 0);
  ASSERT_TRUE(WaitFor([&] { return stopped_by != 0; }));
  EXPECT_EQ(stopped_by, SIGINT);
  watcher.Stop();
}

}  // namespace
}  // namespace hansa
