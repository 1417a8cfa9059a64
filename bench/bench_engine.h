// The engine options the transfer and memory benchmarks give the real coordinator: a federation
// "bench" of the named sites, every one needed each round, with timeouts long enough for
// gigabyte models on a loaded 2-core machine.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/engine_options.h"

namespace hansa {

inline EngineOptions BenchEngineOptions(std::string state_dir, std::vector<std::string> sites,
                                        int64_t rounds, bool secure) {
  EngineOptions o;
  o.federation = "bench";
  o.coordinator_country = "DE";
  o.state_dir = std::move(state_dir);
  o.model = "bench";
  o.min_sites = static_cast<int>(sites.size());
  o.allowed_sites = std::move(sites);
  o.rounds = rounds;
  o.wait_for_sites = absl::Minutes(2);
  o.upload_timeout = absl::Minutes(10);
  o.evaluate_timeout = absl::Minutes(2);
  o.site_idle = absl::Minutes(10);
  o.secure.enabled = secure;
  return o;
}

}  // namespace hansa
