#include "coordinator/strategies/registry.h"

#include <algorithm>
#include <map>
#include <utility>

#include "common/status/check.h"

namespace hansa {
namespace {

// Function-local, so it exists before the first registrar of any file runs.
std::map<std::string, StrategyEntry>& Registry() {
  static auto* entries = new std::map<std::string, StrategyEntry>;
  return *entries;
}

std::vector<std::string> NamesWhere(const std::function<bool(const StrategyEntry&)>& keep) {
  std::vector<const StrategyEntry*> entries;
  for (const auto& [name, entry] : Registry()) {
    if (keep(entry)) entries.push_back(&entry);
  }
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const StrategyEntry* a, const StrategyEntry* b) { return a->order < b->order; });
  std::vector<std::string> names;
  names.reserve(entries.size());
  for (const StrategyEntry* e : entries) names.push_back(e->name);
  return names;
}

}  // namespace

StrategyRegistrar::StrategyRegistrar(StrategyEntry entry) {
  HANSA_CHECK(!entry.name.empty() && entry.create != nullptr);
  const std::string name = entry.name;
  HANSA_CHECK(Registry().emplace(name, std::move(entry)).second);
}

const StrategyEntry* FindStrategy(const std::string& name) {
  auto it = Registry().find(name);
  return it == Registry().end() ? nullptr : &it->second;
}

std::vector<std::string> StrategyNames() {
  return NamesWhere([](const StrategyEntry&) { return true; });
}

std::vector<std::string> DeployableStrategies() {
  return NamesWhere([](const StrategyEntry& e) { return e.deployable; });
}

}  // namespace hansa
