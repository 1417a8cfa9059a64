#include "common/cores/usable_cores.h"

#include <sched.h>

#include <thread>

#include "gtest/gtest.h"

namespace hansa {
namespace {

TEST(UsableCoresTest, ReadsTheCgroupQuotaRoundedUp) {
  EXPECT_EQ(CoresOfCpuMax("200000 100000"), 2);
  EXPECT_EQ(CoresOfCpuMax("150000 100000"), 2);
  EXPECT_EQ(CoresOfCpuMax("50000 100000"), 1);
  EXPECT_EQ(CoresOfCpuMax("max 100000"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("100000"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("x 100000"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("100000 0"), std::nullopt);
  EXPECT_EQ(CoresOfCfsQuota("400000", "100000"), 4);
  EXPECT_EQ(CoresOfCfsQuota("-1", "100000"), std::nullopt);
  EXPECT_EQ(CoresOfCfsQuota("", "100000"), std::nullopt);
}

// A thread pinned to one core (as `taskset -c 0` or a Slurm task would pin it) may use one,
// whatever the machine has.
TEST(UsableCoresTest, FollowsTheThreadsAffinity) {
  const int all = UsableCores();
  EXPECT_GE(all, 1);
  EXPECT_LE(all, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  int pinned = 0;
  std::thread([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    cpu_set_t mine;
    ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &mine)) {
        CPU_SET(cpu, &one);
        break;
      }
    }
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    pinned = UsableCores();
  }).join();
  EXPECT_EQ(pinned, 1);
}

}  // namespace
}  // namespace hansa
