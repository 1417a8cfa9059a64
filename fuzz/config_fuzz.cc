// The TOML reader behind coordinator.toml, site.toml and experiment files
// (common/config/config.h): any text parses to a reader or an error, and reading keys of every
// type from it never crashes.
#include <cstdint>
#include <string_view>

#include "common/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto cfg = hansa::ConfigReader::Parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                        "fuzz.toml", "/tmp");
  if (!cfg.ok()) return 0;
  cfg->String("site.name", "");
  cfg->Int("rounds.total", 1, 0, 1000);
  cfg->Double("aggregation.clip", 1, 0, 1e9);
  cfg->Bool("policy.require_secure_aggregation", true);
  cfg->StringList("policy.allowed_models", {});
  cfg->Path("data.train", "");
  for (const std::string& column : cfg->Keys("data.csv.categorical")) {
    cfg->StringList("data.csv.categorical." + column, {});
  }
  (void)cfg->Finish();
  return 0;
}
