// The strategies known by name. Each file in coordinator/strategies/ registers its own
// strategies with a StrategyRegistrar at static initialisation, so a new strategy is one file
// (and its test) and no list elsewhere; ParseStrategySpec, Strategy::Create, the names in error
// messages and CheckStrategyCompatible all read the registry. docs/extending.md walks through
// adding one.
//
// Threads: registration happens during static initialisation (one thread); afterwards the
// registry is only read, from any thread. hansa_strategy is linked whole (WHOLE_ARCHIVE), so no
// registering object file is dropped by the linker.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/strategy.h"

namespace hansa {

struct StrategyEntry {
  std::string name;  // as in ParseStrategySpec: lower case, no ':' or ','
  // Where the name is listed in names lists and error messages (ascending; ties by name).
  int order = 0;
  // Makes the strategy from options that Strategy::Create has checked (options.name == name).
  std::function<std::unique_ptr<Strategy>(const StrategyOptions&, const ModelLayout&)> create;
  // Appends the strategy's own parameters to its label, e.g. "mu=0.01"; null: none.
  std::function<void(const StrategyOptions&, std::vector<std::string>*)> label;
  // A robust aggregator that needs every site's update (Strategy::ApplyIndividual): refused
  // under secure aggregation.
  bool individual_updates = false;
  // Runs in a deployed federation: its sites train plain SGD (no ClientRecipe) and its server
  // step needs only the mean. Otherwise only `hansa simulate` runs it (CheckEngineStrategy).
  bool deployable = false;
};

// Registers `entry` while it is constructed: declare one per strategy, at namespace scope in
// the strategy's file. A second entry with the same name, or one without name or create, is a
// bug and aborts.
class StrategyRegistrar {
 public:
  explicit StrategyRegistrar(StrategyEntry entry);
};

// The entry registered under `name`, or null.
const StrategyEntry* FindStrategy(const std::string& name);

// Every registered name, in listing order.
std::vector<std::string> StrategyNames();

// The names of the strategies a deployed federation runs (StrategyEntry::deployable).
std::vector<std::string> DeployableStrategies();

}  // namespace hansa
