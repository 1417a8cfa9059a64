// `hansa model inspect FILE`: what a study's TorchScript model holds (client/train/torchscript.h)
// for a data-protection officer to approve it by hash: its SHA-256, every parameter and buffer
// with shape and dtype, the parameter count and the bytes of one update.
#include <cstdio>
#include <iostream>

#include "absl/strings/str_join.h"
#include "client/train/torchscript.h"
#include "nlohmann/json.hpp"
#include "tools/command.h"

namespace hansa::tools {
namespace {

void Inspect(const std::string& path, bool json) {
  StatusOr<TorchScriptInfo> info = InspectTorchScript(path);
  if (!info.ok()) {
    std::cerr << "hansa model inspect: " << info.status().message() << "\n";
    throw CLI::RuntimeError(2);
  }
  if (json) {
    nlohmann::ordered_json j;
    j["file"] = path;
    j["sha256"] = info->sha256;
    j["file_bytes"] = info->file_bytes;
    j["parameter_count"] = info->parameter_count;
    j["update_bytes"] = info->update_bytes;
    j["tensors"] = nlohmann::json::array();
    for (const TorchScriptTensor& t : info->tensors) {
      j["tensors"].push_back({{"name", t.name},
                              {"kind", t.parameter ? "parameter" : "buffer"},
                              {"shape", t.shape},
                              {"dtype", t.dtype}});
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%s\n  sha256      %s  (allow it in site.toml: [policy] allowed_models)\n",
              path.c_str(), info->sha256.c_str());
  for (const TorchScriptTensor& t : info->tensors) {
    std::printf("  %-9s  %-32s  [%s]  %s\n", t.parameter ? "parameter" : "buffer", t.name.c_str(),
                absl::StrJoin(t.shape, ", ").c_str(), t.dtype.c_str());
  }
  std::printf("  %lld parameters; one update is %lld bytes\n",
              static_cast<long long>(info->parameter_count),
              static_cast<long long>(info->update_bytes));
}

void Register(CLI::App& root) {
  CLI::App* model = root.add_subcommand("model", "a study's own model (TorchScript)");
  model->require_subcommand(1);
  CLI::App* inspect = model->add_subcommand(
      "inspect", "print a TorchScript model's SHA-256, parameters, buffers and update size");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  inspect->add_option("file", *path, "the model file (torch.jit.save)")->required();
  inspect->add_flag("--json", *json, "print JSON");
  inspect->callback([path, json] { Inspect(*path, *json); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
