// What RoundEngine tests start from: a small all-ones model and plaintext options over a fresh
// state dir, with short timeouts. Each test changes what it is about. A test that waits out a
// deadline runs the engine on a StoppedClock and moves it with PassDeadline once only the
// deadline is left, so it sleeps no timeout in real time.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "common/clock/clock.h"
#include "common/crypto/sha256.h"
#include "common/tensor/safetensors.h"
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

// A fake clock at the real time now, so deadlines derived from it (a plan's
// upload_deadline_unix_ms) lie in the future. It moves only when the test moves it: a deadline
// the engine set while it stood still is the phase's timeout after its current reading.
inline std::shared_ptr<FakeClock> StoppedClock() {
  return std::make_shared<FakeClock>(absl::Now());
}

// Waits in real time until `condition` holds; false if it did not within `limit`.
inline bool Eventually(const std::function<bool()>& condition,
                       absl::Duration limit = absl::Seconds(30)) {
  const absl::Time give_up = absl::Now() + limit;
  while (!condition()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// Ends a phase that waits out `timeout` on `clock`, which stood still since the phase opened:
// moves the clock to 1 ms before the deadline, checks that the phase is still `open` after the
// engine had 20 ms of real time (20 of its re-readings) to end it too early, then moves the clock
// onto the deadline.
inline void PassDeadline(FakeClock& clock, absl::Duration timeout,
                         const std::function<bool()>& open) {
  clock.Advance(timeout - absl::Milliseconds(1));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(open()) << "the phase ended before its deadline of " << timeout;
  clock.Advance(absl::Milliseconds(1));
}

// A plaintext update of `site` for `plan`: every value `delta`, in the layout of the engine's
// current global model, as a safetensors payload and the header announcing `examples`.
inline std::pair<std::string, v1::TransferHeader> PlainUpdate(RoundEngine& engine,
                                                              const std::string& site,
                                                              const v1::RoundPlan& plan,
                                                              float delta, uint64_t examples) {
  auto payload = engine.Download(site, plan.round(), plan.global_model_sha256());
  EXPECT_TRUE(payload.ok()) << payload.status();
  if (!payload.ok()) return {};
  Model update = *DecodeSafetensors(payload->view());
  for (float& v : update.values) v = delta;
  std::string bytes = EncodeSafetensors(update);
  v1::TransferHeader header;
  header.set_round(plan.round());
  header.set_num_examples(examples);
  header.set_total_bytes(bytes.size());
  header.set_sha256(ToHex(Sha256(bytes)));
  return {bytes, header};
}

// An evaluation report the engine accepts: 10 examples, accuracy 0.5, loss 1.
inline v1::MetricsReport PlausibleReport(uint64_t round) {
  v1::MetricsReport r;
  r.set_round(round);
  r.set_num_examples(10);
  r.set_accuracy(0.5);
  r.set_loss(1.0);
  return r;
}

}  // namespace hansa::testing
