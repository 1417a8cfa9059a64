// coordinator.toml: everything the coordinator binary reads, with demo-friendly defaults.
#pragma once

#include <string>

#include "common/monitoring/monitoring_config.h"
#include "common/status/status.h"
#include "coordinator/round_engine.h"

namespace hansa {

struct CoordinatorConfig {
  std::string listen = "127.0.0.1:50051";
  std::string certificate;
  std::string private_key;
  std::string ca_certificate;
  // [pki] revocation_list: the federation CA's certificate revocation list (PEM "X509 CRL", as
  // `hansa ca revoke` writes it); empty: none. Re-read whenever the file changes.
  std::string revocation_list;
  std::string initial_model;  // optional safetensors file; else built-in init by seed
  uint64_t seed = 1;
  // Seconds the coordinator lingers after the last round so sites can learn it finished.
  double linger_seconds = 10;
  EngineOptions engine;
  // [monitoring]: Prometheus metrics and the operator's pages over HTTP(S); off by default.
  MonitoringConfig monitoring;
};

// Reads and validates the file; unknown keys and bad values are errors naming the key.
StatusOr<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path);

// The study's identifier and GDPR facts ([federation] study, purpose, legal_basis, controllers,
// retention_days, dpia_reference) are each optional, but a study should be named and state why
// and on what legal basis it processes personal data: "" when the config names the study and
// states a purpose and a legal basis, else the warning the coordinator logs at start.
std::string StudyFactsWarning(const CoordinatorConfig& config);

}  // namespace hansa
