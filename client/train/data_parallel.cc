// The ranks > 0 of a data-parallel site: each command from rank 0 (through the group's store)
// becomes one Train() call with rank 0's settings.
#include "client/train/data_parallel.h"

#include <exception>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/train/internal/torch_group.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace hansa {

Status ServeDataParallelTraining(const std::shared_ptr<DataParallelGroup>& group,
                                 const Dataset& train, const TrainerOptions& base) {
  auto* torch_group = dynamic_cast<internal::TorchGroup*>(group.get());
  if (torch_group == nullptr || group->rank() == 0) {
    return absl::InvalidArgumentError("ServeDataParallelTraining runs on ranks > 0 of a group");
  }
  std::unique_ptr<Trainer> trainer;
  std::string model, script_file;
  Task task;
  for (;;) {
    ASSIGN_OR_RETURN(std::string text, torch_group->NextCommand());
    nlohmann::json command = nlohmann::json::parse(text, nullptr, false);
    if (command.is_discarded() || !command.is_object()) {
      return absl::DataLossError(absl::StrCat("data-parallel command is not JSON: ", text));
    }
    if (command.value("op", "") == "stop") {
      torch_group->AcknowledgeStop();
      return absl::OkStatus();
    }
    TrainSettings s;
    try {
      if (command.at("op") != "train") {
        return absl::DataLossError(absl::StrCat("unknown data-parallel command: ", text));
      }
      s.epochs = command.at("epochs").get<int>();
      s.batch_size = command.at("batch_size").get<int>();
      s.learning_rate = command.at("learning_rate").get<double>();
      s.momentum = command.at("momentum").get<double>();
      s.weight_decay = command.at("weight_decay").get<double>();
      s.seed = command.at("seed").get<uint64_t>();
      s.proximal_mu = command.at("proximal_mu").get<double>();
      s.input_noise_std = command.at("input_noise_std").get<double>();
      s.noise_seed = command.at("noise_seed").get<uint64_t>();
      s.dp.clip_norm = command.at("dp_clip_norm").get<double>();
      s.dp.noise_multiplier = command.at("dp_noise_multiplier").get<double>();
      s.dp.sampling_rate = command.at("dp_sampling_rate").get<double>();
      s.dp.steps = command.at("dp_steps").get<int64_t>();
      s.dp.per_example_loop = command.at("dp_per_example_loop").get<bool>();
      // A study's TorchScript model: rank 0's file (the rank checks its hash itself) and task.
      StatusOr<Task> sent = ParseTask(command.value("task_kind", ""), command.value("loss", ""),
                                      command.value("buffers", ""));
      if (!sent.ok()) return Annotate(sent.status(), "data-parallel command");
      if (command.at("model").get<std::string>() != model ||
          command.value("script_file", "") != script_file || !(*sent == task)) {
        model = command.at("model").get<std::string>();
        script_file = command.value("script_file", "");
        task = *sent;
        trainer.reset();
      }
    } catch (const std::exception& e) {
      return absl::DataLossError(
          absl::StrCat("malformed data-parallel command ", text, ": ", e.what()));
    }
    if (!trainer) {
      TrainerOptions options = base;
      options.model = model;
      options.script_file = script_file;
      options.task = task;
      options.group = group;
      ASSIGN_OR_RETURN(trainer, Trainer::Create(options));
    }
    StatusOr<TrainResult> result = trainer->Train(train, s);
    RETURN_IF_ERROR(Annotate(result.status(), absl::StrCat("data-parallel rank ", group->rank())));
    spdlog::info("data-parallel rank {}: trained {} steps with rank 0 in {:.1f} s", group->rank(),
                 result->steps, result->seconds);
  }
}

}  // namespace hansa
