// `hansa model inspect FILE`: what a study's TorchScript model holds (client/train/torchscript.h)
// for a data-protection officer to approve it by hash: its SHA-256, every parameter and buffer
// with shape and dtype, the parameter count and the bytes of one update.
#include <cstdio>
#include <iostream>

#include "absl/strings/str_join.h"
#include "client/train/torchscript.h"
#include "client/train/trainer.h"
#include "common/model/task.h"
#include "common/tensor/safetensors.h"
#include "nlohmann/json.hpp"
#include "tools/command.h"

namespace hansa::tools {
namespace {

// Prints what the file holds; returns its SHA-256.
std::string Inspect(const std::string& path, bool json) {
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
    return info->sha256;
  }
  std::printf("%s\n  sha256      %s\n  allow it in site.toml: [policy] allowed_models = [\"%s\"]\n",
              path.c_str(), info->sha256.c_str(), ScriptModelName(info->sha256).c_str());
  for (const TorchScriptTensor& t : info->tensors) {
    std::printf("  %-9s  %-32s  [%s]  %s\n", t.parameter ? "parameter" : "buffer", t.name.c_str(),
                absl::StrJoin(t.shape, ", ").c_str(), t.dtype.c_str());
  }
  std::printf("  %lld parameters; one update is %lld bytes\n",
              static_cast<long long>(info->parameter_count),
              static_cast<long long>(info->update_bytes));
  return info->sha256;
}

// The module's own weights in the layout sites train (parameters, then float32 buffers when
// averaged), written as the coordinator's model.init. Returns the number of values.
StatusOr<size_t> WriteInit(const std::string& path, const std::string& out,
                           const std::string& buffers, const std::string& sha256) {
  TrainerOptions options;
  options.model = ScriptModelName(sha256);
  options.script_file = path;
  options.device = "cpu";
  ASSIGN_OR_RETURN(options.task, ParseTask("", "", buffers));
  ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, Trainer::Create(options));
  ASSIGN_OR_RETURN(Model weights, trainer->GetWeights());
  RETURN_IF_ERROR(WriteSafetensorsFile(out, weights, {{"model", options.model}}));
  return weights.values.size();
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
  auto init = std::make_shared<std::string>();
  auto buffers = std::make_shared<std::string>("average");
  inspect->add_option("--write-init", *init,
                      "write the model's weights as safetensors, the coordinator's model.init");
  inspect->add_option("--buffers", *buffers,
                      "with --write-init: \"average\" (buffers are part of the model, the "
                      "default) or \"local\", as the coordinator's model.buffers");
  inspect->callback([path, json, init, buffers] {
    const std::string sha256 = Inspect(*path, *json);
    if (init->empty()) return;
    StatusOr<size_t> values = WriteInit(*path, *init, *buffers, sha256);
    if (!values.ok()) {
      std::cerr << "hansa model inspect --write-init: " << values.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    std::printf("  initial weights: %s (%zu values; model.init in coordinator.toml)\n",
                init->c_str(), *values);
  });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
