#include "coordinator/strategies/internal.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace hansa::strategy_internal {

std::string Short(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::vector<TensorSpec> Prefixed(const ModelLayout& model, const std::string& prefix) {
  std::vector<TensorSpec> out = model.tensors();
  for (TensorSpec& t : out) t.name = prefix + t.name;
  return out;
}

Model PackState(const ModelLayout& model, const std::vector<std::string>& prefixes,
                const std::vector<const std::vector<float>*>& parts) {
  std::vector<TensorSpec> specs;
  Model out;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    std::vector<TensorSpec> p = Prefixed(model, prefixes[i]);
    specs.insert(specs.end(), p.begin(), p.end());
    out.values.insert(out.values.end(), parts[i]->begin(), parts[i]->end());
  }
  out.layout = ModelLayout(std::move(specs));
  return out;
}

Status UnpackState(const Model& state, const ModelLayout& model,
                   const std::vector<std::string>& prefixes, std::vector<std::vector<float>*> parts,
                   const std::string& strategy) {
  Model expected = PackState(model, prefixes,
                             std::vector<const std::vector<float>*>(parts.begin(), parts.end()));
  RETURN_IF_ERROR(Annotate(state.layout.CheckSameAs(expected.layout),
                           absl::StrCat("restoring ", strategy, " state")));
  const size_t n = static_cast<size_t>(model.TotalElements());
  for (size_t i = 0; i < parts.size(); ++i) {
    parts[i]->assign(state.values.begin() + i * n, state.values.begin() + (i + 1) * n);
  }
  return absl::OkStatus();
}

}  // namespace hansa::strategy_internal
