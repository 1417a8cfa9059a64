// Strict TOML configuration reading. Every option has a default that works for the demo;
// a key the program does not know is an error (a typo must not silently fall back to a
// default), and so is a value of the wrong type.
//
// Usage: load, read every option through the typed getters (each records the key as known),
// then call Finish(), which reports the first problem: a type error, a missing required key,
// or an unknown key. Not thread-safe; one owner.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace toml {
inline namespace v3 {
class table;
}
}  // namespace toml

namespace hansa {

// `s` as a TOML basic string, for programs that write TOML: quoted, with quotes, backslashes and
// control characters (U+0000..U+001F, U+007F) escaped, so reading it back gives `s` again.
std::string TomlString(const std::string& s);

class ConfigReader {
 public:
  // NotFound when the file is missing, InvalidArgument (with line and column) on bad TOML.
  static StatusOr<ConfigReader> Load(const std::string& path);
  static StatusOr<ConfigReader> Parse(std::string_view text, const std::string& name,
                                      const std::string& base_dir);
  ConfigReader(ConfigReader&&) noexcept;
  ConfigReader& operator=(ConfigReader&&) noexcept;
  ~ConfigReader();

  // `key` is dotted: "coordinator.listen".
  std::string String(const std::string& key, const std::string& fallback);
  std::string RequiredString(const std::string& key);
  int64_t Int(const std::string& key, int64_t fallback, int64_t min, int64_t max);
  double Double(const std::string& key, double fallback, double min, double max);
  bool Bool(const std::string& key, bool fallback);
  std::vector<std::string> StringList(const std::string& key,
                                      const std::vector<std::string>& fallback);
  // A path; relative paths are resolved against the config file's folder.
  std::string Path(const std::string& key, const std::string& fallback);
  std::string RequiredPath(const std::string& key);
  bool Has(const std::string& key) const;
  // `path` relative to the config file's folder (unchanged when absolute), as Path() reads.
  std::string Resolve(const std::string& path) const;
  // The keys directly under table `key` (e.g. the columns of [data.csv.categorical]), in key
  // order; empty when there is no such table. The caller reads each as `key.<name>`.
  std::vector<std::string> Keys(const std::string& key) const;

  // The first error found while reading, or an unknown key; OK otherwise.
  Status Finish() const;

  const std::string& path() const { return name_; }
  const std::string& base_dir() const { return base_dir_; }

 private:
  ConfigReader(std::unique_ptr<toml::table> table, std::string name, std::string base_dir);
  void Fail(const std::string& key, const std::string& what);

  std::unique_ptr<toml::table> table_;
  std::string name_;
  std::string base_dir_;
  std::set<std::string> known_;
  Status first_error_;
};

}  // namespace hansa
