// The Prometheus text exposition of a prometheus-cpp registry (Debian's prometheus-cpp core),
// and the content type to serve it with. A registry is thread-safe (prometheus-cpp's own
// locking); so is this function.
#pragma once

#include <string>

#include "prometheus/registry.h"

namespace hansa {

inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

std::string PrometheusText(const prometheus::Registry& registry);

}  // namespace hansa
