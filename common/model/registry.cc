#include "common/model/registry.h"

#include <algorithm>
#include <map>
#include <utility>

#include "common/status/check.h"

namespace hansa {
namespace {

// Function-local, so it exists before the first registrar of any file runs.
std::map<std::string, ModelEntry>& Registry() {
  static auto* entries = new std::map<std::string, ModelEntry>;
  return *entries;
}

}  // namespace

ModelRegistrar::ModelRegistrar(ModelEntry entry) {
  HANSA_CHECK(!entry.name.empty() && !entry.layers.empty());
  const std::string name = entry.name;
  HANSA_CHECK(Registry().emplace(name, std::move(entry)).second);
}

const ModelEntry* FindModel(const std::string& name) {
  auto it = Registry().find(name);
  return it == Registry().end() ? nullptr : &it->second;
}

std::vector<std::string> ModelNames() {
  std::vector<const ModelEntry*> entries;
  for (const auto& [name, entry] : Registry()) entries.push_back(&entry);
  std::stable_sort(entries.begin(), entries.end(),
                   [](const ModelEntry* a, const ModelEntry* b) { return a->order < b->order; });
  std::vector<std::string> names;
  names.reserve(entries.size());
  for (const ModelEntry* e : entries) names.push_back(e->name);
  return names;
}

}  // namespace hansa
