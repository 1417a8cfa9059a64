#include "common/cores/usable_cores.h"

#include <sched.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

std::optional<int> CoresOf(int64_t quota, int64_t period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<int>(std::max<int64_t>(1, (quota + period - 1) / period));
}

std::optional<std::string> ReadTrimmed(const std::string& path) {
  StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(*text));
}

// The quota of the cgroup this process is in, as /proc/self/cgroup names it: the v2 entry
// ("0::/path") or the v1 hierarchy that holds the cpu controller.
std::optional<int> CgroupCores() {
  std::optional<std::string> cgroups = ReadTrimmed("/proc/self/cgroup");
  if (!cgroups) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*cgroups, '\n')) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    const std::string path(parts[2]);
    if (parts[0] == "0" && parts[1].empty()) {
      if (auto max = ReadTrimmed("/sys/fs/cgroup" + path + "/cpu.max")) {
        return CoresOfCpuMax(*max);
      }
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
      if (controller != "cpu") continue;
      for (const char* mount : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
        auto quota = ReadTrimmed(std::string(mount) + path + "/cpu.cfs_quota_us");
        auto period = ReadTrimmed(std::string(mount) + path + "/cpu.cfs_period_us");
        if (quota && period) return CoresOfCfsQuota(*quota, *period);
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<int> CoresOfCpuMax(std::string_view cpu_max) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(cpu_max.data(), cpu_max.size()), ' ', absl::SkipEmpty());
  int64_t quota = 0, period = 0;
  if (fields.size() != 2 || fields[0] == "max" || !absl::SimpleAtoi(fields[0], &quota) ||
      !absl::SimpleAtoi(fields[1], &period)) {
    return std::nullopt;
  }
  return CoresOf(quota, period);
}

std::optional<int> CoresOfCfsQuota(std::string_view quota_us, std::string_view period_us) {
  int64_t quota = 0, period = 0;
  if (!absl::SimpleAtoi(absl::string_view(quota_us.data(), quota_us.size()), &quota) ||
      !absl::SimpleAtoi(absl::string_view(period_us.data(), period_us.size()), &period)) {
    return std::nullopt;
  }
  return CoresOf(quota, period);
}

int UsableCores() {
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  if (std::optional<int> quota = CgroupCores()) cores = std::min(cores, *quota);
  return std::max(1, cores);
}

}  // namespace hansa
