#include "common/monitoring/prometheus_text.h"

#include "prometheus/text_serializer.h"

namespace hansa {

std::string PrometheusText(const prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace hansa
