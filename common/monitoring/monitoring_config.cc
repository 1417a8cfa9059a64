#include "common/monitoring/monitoring_config.h"

namespace hansa {

MonitoringConfig ReadMonitoringConfig(ConfigReader& cfg, const std::string& certificate,
                                      const std::string& private_key) {
  MonitoringConfig m;
  m.listen = cfg.String("monitoring.listen", "");
  m.certificate = cfg.Path("monitoring.certificate", "");
  m.private_key = cfg.Path("monitoring.private_key", "");
  if (m.certificate.empty()) m.certificate = certificate;
  if (m.private_key.empty()) m.private_key = private_key;
  return m;
}

StatusOr<HttpServerOptions> MonitoringServerOptions(const MonitoringConfig& config,
                                                    const std::string& ca_certificate) {
  HttpServerOptions options;
  options.listen = config.listen;
  const size_t colon = config.listen.rfind(':');
  std::string host = colon == std::string::npos ? config.listen : config.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (!IsLoopbackHost(host)) {
    StatusOr<TlsFiles> tls = LoadTlsFiles(config.certificate, config.private_key, ca_certificate);
    if (!tls.ok()) return Annotate(tls.status(), "[monitoring] over HTTPS");
    options.tls = *std::move(tls);
  }
  return options;
}

}  // namespace hansa
