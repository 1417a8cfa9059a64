#include "coordinator/privacy_config.h"

#include "common/secagg/encoding.h"

namespace hansa {

RecordPrivacyOptions ReadRecordPrivacy(ConfigReader& cfg) {
  RecordPrivacyOptions r;
  r.enabled = cfg.Bool("record_privacy.enabled", false);
  r.clip_norm = cfg.Double("record_privacy.clip_norm", r.clip_norm, 1e-9, 1e9);
  r.noise_multiplier = cfg.Double("record_privacy.noise_multiplier", 0, 0, 1e6);
  r.sampling_rate = cfg.Double("record_privacy.sampling_rate", r.sampling_rate, 1e-9, 1);
  r.steps = cfg.Int("record_privacy.steps_per_round", 0, 0, 1 << 24);
  r.budget.epsilon = cfg.Double("record_privacy.epsilon", r.budget.epsilon, 1e-6, 1e12);
  r.budget.delta = cfg.Double("record_privacy.delta", r.budget.delta, 1e-300, 0.5);
  return r;
}

SecureOptions ReadSecureOptions(ConfigReader& cfg) {
  SecureOptions so;
  so.degree = static_cast<int>(cfg.Int("aggregation.degree", 0, 0, 100000));
  so.threshold = static_cast<int>(cfg.Int("aggregation.threshold", 0, 0, 100000));
  so.malicious = cfg.Bool("aggregation.malicious_coordinator_checks", false);
  so.clip = cfg.Double("aggregation.clip", so.clip, 1e-9, 1e9);
  so.bits = static_cast<int>(cfg.Int("aggregation.bits", so.bits, 0, kMaxQuantizationBits));
  so.max_examples = cfg.Int("aggregation.max_examples", so.max_examples, 1, INT64_MAX);
  so.unmask_device = cfg.String("aggregation.unmask_device", so.unmask_device);
  so.stage_timeout = absl::Seconds(cfg.Double("aggregation.stage_timeout_seconds", 120, 1, 86400));
  return so;
}

}  // namespace hansa
