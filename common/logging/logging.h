// Logs for people (spdlog), separate from audit records and metrics. One call at process
// start; afterwards use spdlog::info/warn/error anywhere.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "spdlog/fmt/fmt.h"

namespace hansa {

// Sets the default logger: "time [name] level message" on stderr. `level` is one of
// trace, debug, info, warn, error; an unknown level falls back to info.
void InitLogging(const std::string& name, const std::string& level = "info");

}  // namespace hansa

// Debian's abseil has its own string_view (not std::string_view); let spdlog print it, so
// spdlog::error("{}", status.message()) works.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
