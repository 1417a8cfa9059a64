// The [record_privacy] section, read the same way from coordinator.toml and from hansa
// simulate's experiment files.
#pragma once

#include "common/config/config.h"
#include "common/privacy/record_privacy.h"

namespace hansa {

// Reads record_privacy.{enabled, clip_norm, noise_multiplier, sampling_rate, steps_per_round,
// epsilon, delta}; out-of-range values are reported by cfg.Finish().
RecordPrivacyOptions ReadRecordPrivacy(ConfigReader& cfg);

}  // namespace hansa
