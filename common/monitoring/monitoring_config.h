// The [monitoring] section of coordinator.toml and site.toml, and the server options it gives.
// Plain functions.
#pragma once

#include <string>

#include "common/config/config.h"
#include "common/monitoring/http_server.h"
#include "common/status/status.h"

namespace hansa {

struct MonitoringConfig {
  // [monitoring] listen: "127.0.0.1:9464"; empty (the default): no metrics server.
  std::string listen;
  // [monitoring] certificate / private_key: what the server presents over HTTPS, which it speaks
  // whenever `listen` is not a loopback address; default: the participant's own.
  std::string certificate;
  std::string private_key;
};

// Reads [monitoring] listen, certificate and private_key (paths relative to the file);
// `certificate` and `private_key` are the participant's own, the defaults.
MonitoringConfig ReadMonitoringConfig(ConfigReader& cfg, const std::string& certificate,
                                      const std::string& private_key);

// The server options for `config`: plain HTTP on a loopback address; HTTPS with the configured
// certificate and key and client certificates from `ca_certificate` on any other (their files'
// errors, named). `listen` must not be empty.
StatusOr<HttpServerOptions> MonitoringServerOptions(const MonitoringConfig& config,
                                                    const std::string& ca_certificate);

}  // namespace hansa
