// What RoundEngine tests start from: a small all-ones model and plaintext options over a fresh
// state dir, with short timeouts. Each test changes what it is about.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "coordinator/round_engine.h"

namespace hansa::testing {

inline Model OnesModel(int64_t rows, int64_t columns) {
  Model m;
  m.layout = ModelLayout({{"w", DType::kF32, {rows, columns}}, {"b", DType::kF32, {columns}}});
  m.values.assign(m.layout.TotalElements(), 1.0f);
  return m;
}

// Sites a, b, c; one round; two sites needed; plaintext (the cases drive uploads by hand).
inline EngineOptions EngineTestOptions(const std::string& name) {
  EngineOptions o;
  o.federation = "test";
  o.state_dir = ::testing::TempDir() + "engine_" + name;
  std::filesystem::remove_all(o.state_dir);
  o.allowed_sites = {"a", "b", "c"};
  o.rounds = 1;
  o.min_sites = 2;
  o.wait_for_sites = absl::Seconds(10);
  o.upload_timeout = absl::Seconds(3);
  o.evaluate_timeout = absl::Seconds(3);
  o.chunk_bytes = 1024;
  o.max_chunk_bytes = 2048;
  o.secure.enabled = false;
  return o;
}

}  // namespace hansa::testing
