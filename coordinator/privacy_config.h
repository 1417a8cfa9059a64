// The [record_privacy] section and the secure-aggregation keys of [aggregation], read the same
// way from coordinator.toml and from hansa simulate's experiment files.
#pragma once

#include "common/config/config.h"
#include "common/privacy/record_privacy.h"
#include "coordinator/round_engine.h"

namespace hansa {

// Reads record_privacy.{enabled, clip_norm, noise_multiplier, sampling_rate, steps_per_round,
// epsilon, delta}; out-of-range values are reported by cfg.Finish().
RecordPrivacyOptions ReadRecordPrivacy(ConfigReader& cfg);

// Reads aggregation.{degree, threshold, malicious_coordinator_checks, clip, bits, max_examples,
// unmask_device, stage_timeout_seconds}. `enabled` is left true: the caller sets it from
// aggregation.mode, whose default differs (secure in a deployment, plaintext in simulation).
SecureOptions ReadSecureOptions(ConfigReader& cfg);

}  // namespace hansa
