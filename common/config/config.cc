#include "common/config/config.h"

#include <cstdio>

#include <filesystem>

#include "absl/strings/str_join.h"
#include "common/fileio/fileio.h"
#include "toml++/toml.h"

namespace hansa {

std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

ConfigReader::ConfigReader(std::unique_ptr<toml::table> table, std::string name,
                           std::string base_dir)
    : table_(std::move(table)), name_(std::move(name)), base_dir_(std::move(base_dir)) {}
ConfigReader::ConfigReader(ConfigReader&&) noexcept = default;
ConfigReader& ConfigReader::operator=(ConfigReader&&) noexcept = default;
ConfigReader::~ConfigReader() = default;

StatusOr<ConfigReader> ConfigReader::Load(const std::string& path) {
  auto text = ReadFile(path, 1 << 20);
  if (!text.ok()) {
    return Annotate(text.status(), "reading configuration (check the --config path)");
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return Parse(*text, path, dir.empty() ? "." : dir);
}

StatusOr<ConfigReader> ConfigReader::Parse(std::string_view text, const std::string& name,
                                           const std::string& base_dir) {
  std::unique_ptr<toml::table> table;
  try {
    table = std::make_unique<toml::table>(toml::parse(text, name));
  } catch (const toml::parse_error& err) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", err.source().begin.line, ":", err.source().begin.column,
                     ": invalid TOML: ", std::string(err.description())));
  }
  return ConfigReader(std::move(table), name, base_dir);
}

void ConfigReader::Fail(const std::string& key, const std::string& what) {
  if (first_error_.ok()) {
    first_error_ = absl::InvalidArgumentError(absl::StrCat(name_, ": '", key, "' ", what));
  }
}

bool ConfigReader::Has(const std::string& key) const {
  return static_cast<bool>(table_->at_path(key));
}

std::vector<std::string> ConfigReader::Keys(const std::string& key) const {
  std::vector<std::string> out;
  const toml::table* table = table_->at_path(key).as_table();
  if (table == nullptr) return out;
  for (const auto& [name, node] : *table) out.emplace_back(name.str());
  return out;
}

std::string ConfigReader::String(const std::string& key, const std::string& fallback) {
  known_.insert(key);
  toml::node_view<toml::node> node = table_->at_path(key);
  if (!node) return fallback;
  if (!node.is_string()) {
    Fail(key, "must be a string");
    return fallback;
  }
  return std::string(*node.value<std::string>());
}

std::string ConfigReader::RequiredString(const std::string& key) {
  if (!Has(key)) {
    known_.insert(key);
    Fail(key, "is required");
    return "";
  }
  return String(key, "");
}

int64_t ConfigReader::Int(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  known_.insert(key);
  toml::node_view<toml::node> node = table_->at_path(key);
  if (!node) return fallback;
  if (!node.is_integer()) {
    Fail(key, "must be an integer");
    return fallback;
  }
  int64_t v = *node.value<int64_t>();
  if (v < min || v > max) {
    Fail(key, absl::StrCat("is ", v, " but must be between ", min, " and ", max));
    return fallback;
  }
  return v;
}

double ConfigReader::Double(const std::string& key, double fallback, double min, double max) {
  known_.insert(key);
  toml::node_view<toml::node> node = table_->at_path(key);
  if (!node) return fallback;
  if (!node.is_floating_point() && !node.is_integer()) {
    Fail(key, "must be a number");
    return fallback;
  }
  double v = *node.value<double>();
  if (!(v >= min && v <= max)) {
    Fail(key, absl::StrCat("is ", v, " but must be between ", min, " and ", max));
    return fallback;
  }
  return v;
}

bool ConfigReader::Bool(const std::string& key, bool fallback) {
  known_.insert(key);
  toml::node_view<toml::node> node = table_->at_path(key);
  if (!node) return fallback;
  if (!node.is_boolean()) {
    Fail(key, "must be true or false");
    return fallback;
  }
  return *node.value<bool>();
}

std::vector<std::string> ConfigReader::StringList(const std::string& key,
                                                  const std::vector<std::string>& fallback) {
  known_.insert(key);
  toml::node_view<toml::node> node = table_->at_path(key);
  if (!node) return fallback;
  const toml::array* arr = node.as_array();
  if (arr == nullptr) {
    Fail(key, "must be a list of strings");
    return fallback;
  }
  std::vector<std::string> out;
  for (const toml::node& item : *arr) {
    if (!item.is_string()) {
      Fail(key, "must be a list of strings");
      return fallback;
    }
    out.push_back(std::string(*item.value<std::string>()));
  }
  return out;
}

std::string ConfigReader::Resolve(const std::string& path) const {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(base_dir_) / path).lexically_normal().string();
}

std::string ConfigReader::Path(const std::string& key, const std::string& fallback) {
  return Resolve(String(key, fallback));
}

std::string ConfigReader::RequiredPath(const std::string& key) {
  return Resolve(RequiredString(key));
}

namespace {

void CollectLeaves(const toml::table& table, const std::string& prefix,
                   std::vector<std::pair<std::string, int>>* out) {
  for (const auto& [k, v] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = v.as_table()) {
      CollectLeaves(*sub, key, out);
    } else {
      out->emplace_back(key, static_cast<int>(v.source().begin.line));
    }
  }
}

}  // namespace

Status ConfigReader::Finish() const {
  if (!first_error_.ok()) return first_error_;
  std::vector<std::pair<std::string, int>> leaves;
  CollectLeaves(*table_, "", &leaves);
  for (const auto& [key, line] : leaves) {
    if (known_.count(key) == 0) {
      std::string section = key.substr(0, key.rfind('.') == std::string::npos ? 0 : key.rfind('.'));
      std::vector<std::string> siblings;
      for (const std::string& k : known_) {
        if (k.rfind(section + ".", 0) == 0 ||
            (section.empty() && k.find('.') == std::string::npos)) {
          siblings.push_back(k.substr(section.empty() ? 0 : section.size() + 1));
        }
      }
      std::string hint =
          siblings.empty()
              ? std::string(" (no keys are known in this section)")
              : absl::StrCat(" (known keys here: ", absl::StrJoin(siblings, ", "), ")");
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ":", line, ": unknown key '", key, "'", hint));
    }
  }
  return absl::OkStatus();
}

}  // namespace hansa
