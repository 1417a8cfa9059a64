// The [data.csv] keys of a config file as a CsvSchema (client/tabular.h): one reader, so that
// a site's site.toml and a simulated experiment's file spell a CSV file's columns alike.
//
// Plain data over common/config. Thread-compatible.
#pragma once

#include <string>

#include "client/tabular.h"
#include "common/config/config.h"

namespace hansa {

// Reads `prefix`.label, .label_classes, .regression, .features, .ignore, .columns,
// .skip_lines, .impute_missing and the table `prefix`.categorical (column = [categories]),
// each as known to `cfg` (its Finish() reports type errors); absent keys keep CsvSchema's
// defaults. `prefix` is e.g. "data.csv".
CsvSchema ReadCsvSchema(ConfigReader& cfg, const std::string& prefix);

// The schema as TOML lines under `[<prefix>]` (and `[<prefix>.categorical]`), which
// ReadCsvSchema reads back to the same schema.
std::string CsvSchemaToml(const CsvSchema& schema, const std::string& prefix);

}  // namespace hansa
