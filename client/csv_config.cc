#include "client/csv_config.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hansa {
namespace {

std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string List(const std::vector<std::string>& values) {
  std::vector<std::string> quoted;
  quoted.reserve(values.size());
  for (const std::string& v : values) quoted.push_back(Quoted(v));
  return absl::StrCat("[", absl::StrJoin(quoted, ", "), "]");
}

}  // namespace

CsvSchema ReadCsvSchema(ConfigReader& cfg, const std::string& prefix) {
  const std::string p = prefix + ".";
  CsvSchema s;
  s.label = cfg.String(p + "label", "");
  s.label_classes = cfg.StringList(p + "label_classes", {});
  s.regression = cfg.Bool(p + "regression", false);
  s.features = cfg.StringList(p + "features", {});
  s.ignore = cfg.StringList(p + "ignore", {});
  s.columns = cfg.StringList(p + "columns", {});
  s.skip_lines = static_cast<int>(cfg.Int(p + "skip_lines", 0, 0, 1000000));
  if (cfg.Has(p + "impute_missing")) {
    s.impute_missing = cfg.Double(p + "impute_missing", 0, -1e300, 1e300);
  }
  for (const std::string& column : cfg.Keys(p + "categorical")) {
    s.categorical[column] = cfg.StringList(p + "categorical." + column, {});
  }
  return s;
}

std::string CsvSchemaToml(const CsvSchema& s, const std::string& prefix) {
  std::string out = absl::StrCat(
      "[", prefix, "]\nlabel = ", Quoted(s.label), "\n", "label_classes = ", List(s.label_classes),
      "\n", "regression = ", s.regression ? "true" : "false", "\n", "features = ", List(s.features),
      "\n", "ignore = ", List(s.ignore), "\n", "columns = ", List(s.columns), "\n",
      "skip_lines = ", s.skip_lines, "\n");
  if (s.impute_missing) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", *s.impute_missing);
    std::string v = buf;
    if (v.find_first_of(".eE") == std::string::npos) v += ".0";
    absl::StrAppend(&out, "impute_missing = ", v, "\n");
  }
  if (!s.categorical.empty()) {
    absl::StrAppend(&out, "\n[", prefix, ".categorical]\n");
    for (const auto& [column, categories] : s.categorical) {
      absl::StrAppend(&out, Quoted(column), " = ", List(categories), "\n");
    }
  }
  return out;
}

}  // namespace hansa
