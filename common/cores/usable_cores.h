// How many cores this process may use, for sizing thread pools (LibTorch's CPU threads, the
// mask streams, a simulation's trainers). std::thread::hardware_concurrency() counts the
// machine's cores; a Slurm task, a Kubernetes pod with a CPU limit or `taskset` gets fewer, and
// a pool sized to the machine then oversubscribes its share. Plain functions, any thread.
#pragma once

#include <optional>
#include <string_view>

namespace hansa {

// The cores the calling thread may run on (sched_getaffinity), capped by the CPU quota of the
// process's cgroup (v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us), rounded up; at
// least 1. Reads /proc/self/cgroup and the cgroup's files on each call.
int UsableCores();

// The cores a cgroup v2 cpu.max line allows ("200000 100000": 2; "150000 100000": 2, rounded
// up; "max 100000": no limit, nullopt). nullopt for a line that does not parse.
std::optional<int> CoresOfCpuMax(std::string_view cpu_max);
// The same for cgroup v1's quota and period (quota -1: no limit).
std::optional<int> CoresOfCfsQuota(std::string_view quota_us, std::string_view period_us);

}  // namespace hansa
