// ParseCsv (client/tabular.h) on any bytes, with a header and without, categorical columns
// and an imputation: an error or a table whose sizes agree, never a crash.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "client/tabular.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  hansa::CsvSchema header;
  header.label = "y";
  header.categorical["ward"] = {"icu", "general"};
  hansa::CsvSchema plain;
  plain.label = "c";
  plain.columns = {"a", "b", "c"};
  plain.skip_lines = 1;
  plain.impute_missing = 0.5;
  plain.regression = true;
  for (const hansa::CsvSchema* schema : {&header, &plain}) {
    auto table = hansa::ParseCsv(text, "fuzz.csv", *schema);
    if (!table.ok()) continue;
    if (table->features.size() != static_cast<size_t>(table->rows() * table->width())) abort();
  }
  return 0;
}
