// Helpers shared by the strategies' files (coordinator/strategies/*.cc, coordinator/strategy.cc):
// model-shaped state under tensor-name prefixes, and numbers in labels. Not for use elsewhere.
// Pure functions; any thread.
#pragma once

#include <string>
#include <vector>

#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace hansa::strategy_internal {

// `x` in %g form ("0.01"), for labels.
std::string Short(double x);

// The model's tensors, each renamed with `prefix`.
std::vector<TensorSpec> Prefixed(const ModelLayout& model, const std::string& prefix);

// State tensors: groups of model-shaped vectors, each under its own prefix ("momentum.").
Model PackState(const ModelLayout& model, const std::vector<std::string>& prefixes,
                const std::vector<const std::vector<float>*>& parts);

// The inverse of PackState into `parts` (each resized to the model). InvalidArgument, naming
// `strategy`, when `state` does not have the layout PackState would give.
Status UnpackState(const Model& state, const ModelLayout& model,
                   const std::vector<std::string>& prefixes, std::vector<std::vector<float>*> parts,
                   const std::string& strategy);

}  // namespace hansa::strategy_internal
