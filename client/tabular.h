// A site's tabular data from CSV files (issue 15's `[data] format = "csv"`): a label column,
// numeric feature columns and categorical columns one-hot encoded with categories fixed by the
// study's plan, so that every site encodes alike. Everything else about a row is an error that
// names the file, the line and the column; a file with any bad row yields no data at all, so a
// site sends nothing computed from half a file.
//
// Also the per-feature moments that pooled standardisation adds up across sites (sums, sums of
// squares, counts) and the standardisation itself.
//
// Plain data, free of LibTorch. Thread-compatible: no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/data.h"
#include "common/status/status.h"

namespace hansa {

struct CsvSchema {
  // The label column's name. Classification labels are non-negative integers (class ids) or,
  // when `label_classes` is set, one of its names (id = its position); regression labels
  // (`regression`) are any finite number.
  std::string label;
  std::vector<std::string> label_classes;
  bool regression = false;
  // Numeric feature columns, in this order; empty: every column that is not the label, not
  // categorical and not in `ignore`, in file order.
  std::vector<std::string> features;
  std::vector<std::string> ignore;
  // Categorical columns and their categories, fixed by the plan: each becomes one 0/1 feature
  // per category ("column=category"), after the numeric features, in this map's order. A value
  // outside its list is an error.
  std::map<std::string, std::vector<std::string>> categorical;
  // An empty numeric cell: an error, or this value when set (a declared imputation).
  std::optional<double> impute_missing;
  // Files without a header row (sklearn's bundled CSVs): the columns' names, in order. Lines to
  // skip before the first row (sklearn's first line holds counts, not names).
  std::vector<std::string> columns;
  int skip_lines = 0;
};

struct TabularData {
  std::vector<std::string> feature_names;  // after one-hot encoding
  std::vector<float> features;             // rows() x feature_names.size(), row-major
  std::vector<float> labels;               // one per row (class id or target)

  int64_t rows() const { return static_cast<int64_t>(labels.size()); }
  int64_t width() const { return static_cast<int64_t>(feature_names.size()); }
};

// Largest CSV file read unless the caller gives another cap.
inline constexpr size_t kDefaultMaxCsvBytes = size_t{4} << 30;

// Parses CSV text (RFC 4180: commas, double-quoted fields with "" for a quote, LF or CRLF line
// ends). `name` (the file) starts every error. InvalidArgument for an empty file (no rows), a
// header without the label or a named column, a ragged row, a non-numeric, NaN or infinite
// value, a missing value without imputation, an unknown category or class, or an unterminated
// quote, naming "file:line: column 'c'".
StatusOr<TabularData> ParseCsv(std::string_view text, const std::string& name,
                               const CsvSchema& schema);
// Reads and parses a file; NotFound when it is absent.
StatusOr<TabularData> LoadCsv(const std::string& path, const CsvSchema& schema,
                              size_t max_bytes = kDefaultMaxCsvBytes);

// What one site adds to pooled standardisation: per feature, the sum, the sum of squares and
// the count of its rows. Sites' moments add up (Add) to those of their concatenated data.
struct FeatureMoments {
  std::vector<double> sum, sum_squares;
  int64_t count = 0;

  static FeatureMoments Of(const TabularData& data) { return OfRows(data.features, data.width()); }
  static FeatureMoments Of(const Dataset& data) { return OfRows(data.features, data.cols); }
  // Of rows of `width` features each, row-major.
  static FeatureMoments OfRows(const std::vector<float>& features, int64_t width);
  // InvalidArgument when the widths differ.
  Status Add(const FeatureMoments& other);
  // The mean and the population standard deviation of each feature (1 where it is 0, so that
  // a constant feature stays finite). FailedPrecondition without rows.
  Status MeanAndStd(std::vector<double>* mean, std::vector<double>* std) const;
};

// The table as training examples (data.h's tabular Dataset). For classification the labels
// must be class ids 0..255 (InvalidArgument naming the first other one).
StatusOr<Dataset> TableToDataset(TabularData table, bool classification);

// Replaces each feature x by (x - mean) / std. InvalidArgument when the widths differ.
Status StandardizeRows(const std::vector<double>& mean, const std::vector<double>& std,
                       int64_t width, std::vector<float>* features);
inline Status Standardize(const std::vector<double>& mean, const std::vector<double>& std,
                          TabularData* data) {
  return StandardizeRows(mean, std, data->width(), &data->features);
}
inline Status Standardize(const std::vector<double>& mean, const std::vector<double>& std,
                          Dataset* data) {
  return StandardizeRows(mean, std, data->cols, &data->features);
}

}  // namespace hansa
