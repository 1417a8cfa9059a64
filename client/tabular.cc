#include "client/tabular.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

// Reads CSV records from text, one at a time, keeping the line number.
class CsvReader {
 public:
  CsvReader(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  // Skips `n` physical lines.
  void SkipLines(int n) {
    for (int i = 0; i < n && pos_ < text_.size(); ++i) {
      const size_t end = text_.find('\n', pos_);
      pos_ = end == std::string_view::npos ? text_.size() : end + 1;
      ++line_;
    }
  }

  // The next non-empty record into *fields (views into the text or into scratch storage that
  // lives until the next call); false at the end. InvalidArgument for an unterminated quote or
  // text after a closing quote.
  StatusOr<bool> Next(std::vector<std::string_view>* fields) {
    fields->clear();
    scratch_.clear();
    while (pos_ < text_.size() && (text_[pos_] == '\n' || text_[pos_] == '\r')) {
      if (text_[pos_] == '\n') ++line_;
      ++pos_;
    }
    if (pos_ >= text_.size()) return false;
    record_line_ = line_ + 1;
    for (;;) {
      if (pos_ < text_.size() && text_[pos_] == '"') {
        RETURN_IF_ERROR(Quoted(fields));
      } else {
        size_t end = pos_;
        while (end < text_.size() && text_[end] != ',' && text_[end] != '\n') ++end;
        size_t stop = end;
        if (stop > pos_ && text_[stop - 1] == '\r' && (end == text_.size() || text_[end] == '\n')) {
          --stop;
        }
        fields->push_back(text_.substr(pos_, stop - pos_));
        pos_ = end;
      }
      if (pos_ >= text_.size()) break;
      const char c = text_[pos_++];
      if (c == '\n') break;
    }
    ++line_;
    return true;
  }

  int64_t record_line() const { return record_line_; }
  std::string Where() const { return absl::StrCat(name_, ":", record_line_); }

 private:
  // A quoted field at pos_ (which holds the opening quote); leaves pos_ at the delimiter.
  Status Quoted(std::vector<std::string_view>* fields) {
    std::string value;
    size_t i = pos_ + 1;
    for (;;) {
      if (i >= text_.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(), ": a quoted field is not closed before the end of the file"));
      }
      const char c = text_[i++];
      if (c == '"') {
        if (i < text_.size() && text_[i] == '"') {
          value += '"';
          ++i;
          continue;
        }
        break;
      }
      if (c == '\n') ++line_;
      value += c;
    }
    if (i < text_.size() && text_[i] == '\r') ++i;
    if (i < text_.size() && text_[i] != ',' && text_[i] != '\n') {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(), ": text after the closing quote of a field"));
    }
    pos_ = i;
    scratch_.push_back(std::move(value));
    // Its view is set by FixQuoted once the record is whole: scratch_ may still grow.
    fields->push_back(std::string_view());
    quoted_.push_back({fields->size() - 1, scratch_.size() - 1});
    return absl::OkStatus();
  }

 public:
  // Points the quoted fields' views at their final storage (after scratch_ stopped growing).
  void FixQuoted(std::vector<std::string_view>* fields) {
    for (const auto& [field, value] : quoted_) (*fields)[field] = scratch_[value];
    quoted_.clear();
  }

 private:
  std::string_view text_;
  const std::string& name_;
  size_t pos_ = 0;
  int64_t line_ = 0;
  int64_t record_line_ = 0;
  std::vector<std::string> scratch_;
  std::vector<std::pair<size_t, size_t>> quoted_;
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// What one column of the file is.
struct Column {
  enum Role { kIgnored, kLabel, kNumeric, kCategorical } role = kIgnored;
  int64_t offset = 0;                          // first output feature
  const std::vector<std::string>* categories;  // kCategorical
};

struct Layout {
  std::vector<std::string> names;  // the file's columns
  std::vector<Column> columns;
  std::vector<std::string> feature_names;
};

int IndexOf(const std::vector<std::string>& names, const std::string& name) {
  auto it = std::find(names.begin(), names.end(), name);
  return it == names.end() ? -1 : static_cast<int>(it - names.begin());
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The roles of the file's columns and the output features, from the header and the schema.
StatusOr<Layout> MakeLayout(std::vector<std::string> names, const std::string& name,
                            const CsvSchema& schema) {
  Layout l;
  l.names = std::move(names);
  l.columns.resize(l.names.size());
  for (size_t i = 0; i < l.names.size(); ++i) {
    if (IndexOf(l.names, l.names[i]) != static_cast<int>(i)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": column '", l.names[i], "' appears twice in the header"));
    }
  }
  auto find = [&](const std::string& column, const char* what) -> StatusOr<int> {
    const int i = IndexOf(l.names, column);
    if (i < 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": no ", what, " column '", column,
                                                     "' (columns: ", absl::StrJoin(l.names, ", "),
                                                     ")"));
    }
    return i;
  };
  ASSIGN_OR_RETURN(const int label, find(schema.label, "label"));
  l.columns[label].role = Column::kLabel;
  std::vector<std::string> numeric = schema.features;
  if (numeric.empty()) {
    for (const std::string& c : l.names) {
      if (c != schema.label && !schema.categorical.count(c) && !Contains(schema.ignore, c)) {
        numeric.push_back(c);
      }
    }
  }
  for (const std::string& c : numeric) {
    ASSIGN_OR_RETURN(const int i, find(c, "feature"));
    if (l.columns[i].role != Column::kIgnored) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": column '", c, "' cannot be a feature and the label"));
    }
    l.columns[i] = {Column::kNumeric, static_cast<int64_t>(l.feature_names.size()), nullptr};
    l.feature_names.push_back(c);
  }
  for (const auto& [c, categories] : schema.categorical) {
    ASSIGN_OR_RETURN(const int i, find(c, "categorical"));
    if (l.columns[i].role != Column::kIgnored) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": column '", c, "' is categorical and has another role too"));
    }
    l.columns[i] = {Column::kCategorical, static_cast<int64_t>(l.feature_names.size()),
                    &categories};
    for (const std::string& v : categories) l.feature_names.push_back(absl::StrCat(c, "=", v));
  }
  return l;
}

// A finite number, or the imputation of an empty cell.
StatusOr<double> Number(std::string_view cell, const CsvSchema& schema, const std::string& where,
                        const std::string& column) {
  cell = Trim(cell);
  if (cell.empty()) {
    if (schema.impute_missing) return *schema.impute_missing;
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": column '", column, "' is empty and the schema declares no imputation"));
  }
  double v = 0;
  const char* end = cell.data() + cell.size();
  auto [ptr, ec] = std::from_chars(cell.data(), end, v);
  if (ec != std::errc() || ptr != end) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": column '", column, "' holds '",
                                                   std::string(cell), "', which is not a number"));
  }
  if (!std::isfinite(v)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": column '", column, "' holds '",
                                                   std::string(cell), "' (NaN or infinite)"));
  }
  return v;
}

StatusOr<float> Label(std::string_view cell, const CsvSchema& schema, const std::string& where) {
  cell = Trim(cell);
  if (schema.regression) {
    CsvSchema strict = schema;
    strict.impute_missing.reset();  // a missing target is never imputed
    ASSIGN_OR_RETURN(double v, Number(cell, strict, where, schema.label));
    return static_cast<float>(v);
  }
  if (!schema.label_classes.empty()) {
    const int i = IndexOf(schema.label_classes, std::string(cell));
    if (i < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": label '", std::string(cell), "' is not one of the study's classes (",
          absl::StrJoin(schema.label_classes, ", "), ")"));
    }
    return static_cast<float>(i);
  }
  int64_t id = -1;
  const char* end = cell.data() + cell.size();
  auto [ptr, ec] = std::from_chars(cell.data(), end, id);
  if (ec != std::errc() || ptr != end || id < 0 || id > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": label '", std::string(cell),
                                                   "' is not a class id (a non-negative integer)"));
  }
  return static_cast<float>(id);
}

// One record into the output.
Status AddRow(const std::vector<std::string_view>& fields, const Layout& l, const CsvSchema& schema,
              const std::string& where, TabularData* out) {
  const size_t base = out->features.size();
  out->features.resize(base + l.feature_names.size(), 0.0f);
  for (size_t i = 0; i < fields.size(); ++i) {
    const Column& c = l.columns[i];
    switch (c.role) {
      case Column::kIgnored:
        break;
      case Column::kLabel: {
        ASSIGN_OR_RETURN(float label, Label(fields[i], schema, where));
        out->labels.push_back(label);
        break;
      }
      case Column::kNumeric: {
        ASSIGN_OR_RETURN(double v, Number(fields[i], schema, where, l.names[i]));
        out->features[base + c.offset] = static_cast<float>(v);
        break;
      }
      case Column::kCategorical: {
        const std::string_view value = Trim(fields[i]);
        const int k = IndexOf(*c.categories, std::string(value));
        if (k < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": column '", l.names[i], "' holds '", std::string(value),
                           "', which is not one of the study's categories (",
                           absl::StrJoin(*c.categories, ", "), ")"));
        }
        out->features[base + c.offset + k] = 1.0f;
        break;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<TabularData> ParseCsv(std::string_view text, const std::string& name,
                               const CsvSchema& schema) {
  CsvReader reader(text, name);
  reader.SkipLines(schema.skip_lines);
  std::vector<std::string_view> fields;
  std::vector<std::string> names = schema.columns;
  if (names.empty()) {
    ASSIGN_OR_RETURN(bool header, reader.Next(&fields));
    if (!header) return absl::InvalidArgumentError(absl::StrCat(name, ": the file is empty"));
    reader.FixQuoted(&fields);
    for (std::string_view f : fields) names.emplace_back(Trim(f));
  }
  ASSIGN_OR_RETURN(const Layout layout, MakeLayout(std::move(names), name, schema));
  TabularData out;
  out.feature_names = layout.feature_names;
  for (;;) {
    ASSIGN_OR_RETURN(bool more, reader.Next(&fields));
    if (!more) break;
    reader.FixQuoted(&fields);
    if (fields.size() != layout.names.size()) {
      return absl::InvalidArgumentError(absl::StrCat(reader.Where(), ": ", fields.size(),
                                                     " fields, but the header has ",
                                                     layout.names.size()));
    }
    RETURN_IF_ERROR(AddRow(fields, layout, schema, reader.Where(), &out));
  }
  if (out.rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the file has no data rows"));
  }
  return out;
}

StatusOr<TabularData> LoadCsv(const std::string& path, const CsvSchema& schema, size_t max_bytes) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, max_bytes));
  return ParseCsv(text, path, schema);
}

FeatureMoments FeatureMoments::OfRows(const std::vector<float>& features, int64_t width) {
  FeatureMoments m;
  const size_t w = static_cast<size_t>(width);
  m.sum.assign(w, 0.0);
  m.sum_squares.assign(w, 0.0);
  m.count = w == 0 ? 0 : static_cast<int64_t>(features.size() / w);
  for (int64_t r = 0; r < m.count; ++r) {
    const float* row = features.data() + r * static_cast<int64_t>(w);
    for (size_t j = 0; j < w; ++j) {
      const double x = row[j];
      m.sum[j] += x;
      m.sum_squares[j] += x * x;
    }
  }
  return m;
}

Status FeatureMoments::Add(const FeatureMoments& other) {
  if (other.sum.size() != sum.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature moments of ", other.sum.size(), " features added to ", sum.size()));
  }
  for (size_t j = 0; j < sum.size(); ++j) {
    sum[j] += other.sum[j];
    sum_squares[j] += other.sum_squares[j];
  }
  count += other.count;
  return absl::OkStatus();
}

Status FeatureMoments::MeanAndStd(std::vector<double>* mean, std::vector<double>* std) const {
  if (count <= 0) return absl::FailedPreconditionError("no rows to standardise by");
  mean->resize(sum.size());
  std->resize(sum.size());
  const double n = static_cast<double>(count);
  for (size_t j = 0; j < sum.size(); ++j) {
    (*mean)[j] = sum[j] / n;
    const double var = std::max(0.0, sum_squares[j] / n - (*mean)[j] * (*mean)[j]);
    (*std)[j] = var > 0 ? std::sqrt(var) : 1.0;
  }
  return absl::OkStatus();
}

Status StandardizeRows(const std::vector<double>& mean, const std::vector<double>& std,
                       int64_t width, std::vector<float>* features) {
  const size_t w = static_cast<size_t>(width);
  if (mean.size() != w || std.size() != w) {
    return absl::InvalidArgumentError(absl::StrCat("standardising ", w, " features with ",
                                                   mean.size(), " means and ", std.size(),
                                                   " deviations"));
  }
  for (size_t at = 0; at + w <= features->size(); at += w) {
    float* row = features->data() + at;
    for (size_t j = 0; j < w; ++j) {
      row[j] = static_cast<float>((row[j] - mean[j]) / std[j]);
    }
  }
  return absl::OkStatus();
}

StatusOr<Dataset> TableToDataset(TabularData table, bool classification) {
  Dataset out;
  out.tabular = true;
  out.rows = 1;
  out.cols = std::max<int64_t>(table.width(), 1);
  if (table.width() == 0) {
    return absl::InvalidArgumentError("the table has no feature columns");
  }
  if (classification) {
    out.labels.resize(table.labels.size());
    for (size_t i = 0; i < table.labels.size(); ++i) {
      const float label = table.labels[i];
      if (!(label >= 0 && label <= 255) || label != std::floor(label)) {
        return absl::InvalidArgumentError(
            absl::StrCat("row ", i + 1, " has label ", label, "; classes are numbered 0..255"));
      }
      out.labels[i] = static_cast<uint8_t>(label);
    }
  }
  out.features = std::move(table.features);
  out.targets = std::move(table.labels);
  return out;
}

}  // namespace hansa
