// `hansa dp epsilon` and `hansa dp plan`: the sampled-Gaussian accountant (common/privacy/rdp.h)
// from the command line, for data-protection officers and researchers planning a budget.
#include <cstdio>
#include <iostream>

#include "common/privacy/rdp.h"
#include "nlohmann/json.hpp"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct DpFlags {
  double noise_multiplier = 0;
  double sampling_rate = 0;
  int64_t steps = 0;
  double delta = 0;
  double epsilon = 0;
  bool json = false;
};

[[noreturn]] void Fail(const Status& status) {
  std::cerr << "hansa dp: " << status.message() << "\n";
  throw CLI::RuntimeError(2);
}

void RunEpsilon(const DpFlags& f) {
  auto spent = SampledGaussianEpsilon(f.sampling_rate, f.noise_multiplier, f.steps, f.delta);
  if (!spent.ok()) Fail(spent.status());
  if (f.json) {
    nlohmann::json j = {{"epsilon", spent->epsilon},
                        {"delta", spent->delta},
                        {"order", spent->order},
                        {"noise_multiplier", f.noise_multiplier},
                        {"sampling_rate", f.sampling_rate},
                        {"steps", f.steps}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("epsilon = %.6g at delta = %g (optimal RDP order %g)\n", spent->epsilon,
                spent->delta, spent->order);
  }
}

void RunPlan(const DpFlags& f) {
  auto z = PlanNoiseMultiplier(f.epsilon, f.delta, f.sampling_rate, f.steps);
  if (!z.ok()) Fail(z.status());
  auto spent = SampledGaussianEpsilon(f.sampling_rate, *z, f.steps, f.delta);
  if (!spent.ok()) Fail(spent.status());
  if (f.json) {
    nlohmann::json j = {{"noise_multiplier", *z},
                        {"epsilon", spent->epsilon},
                        {"target_epsilon", f.epsilon},
                        {"delta", f.delta},
                        {"order", spent->order},
                        {"sampling_rate", f.sampling_rate},
                        {"steps", f.steps},
                        {"relative_tolerance", kPlanRelativeTolerance}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("noise multiplier = %.6g (epsilon %.6g <= %g at delta = %g, RDP order %g)\n", *z,
                spent->epsilon, f.epsilon, f.delta, spent->order);
  }
}

void AddDpCommand(CLI::App& root) {
  auto flags = std::make_shared<DpFlags>();
  CLI::App* dp = root.add_subcommand("dp", "differential privacy accounting (Rényi DP, DP-SGD)");
  dp->require_subcommand(1);

  CLI::App* eps =
      dp->add_subcommand("epsilon", "epsilon spent by T steps of the sampled Gaussian mechanism");
  eps->add_option("--noise-multiplier", flags->noise_multiplier, "noise stddev / clip norm")
      ->required();
  eps->add_option("--sampling-rate", flags->sampling_rate, "q = batch size / dataset size")
      ->required();
  eps->add_option("--steps", flags->steps, "number of steps T")->required();
  eps->add_option("--delta", flags->delta, "target delta, e.g. 1e-5")->required();
  eps->add_flag("--json", flags->json, "print one JSON object");
  eps->callback([flags] { RunEpsilon(*flags); });

  CLI::App* plan =
      dp->add_subcommand("plan", "smallest noise multiplier whose epsilon fits the budget");
  plan->add_option("--epsilon", flags->epsilon, "maximum epsilon")->required();
  plan->add_option("--delta", flags->delta, "target delta, e.g. 1e-5")->required();
  plan->add_option("--sampling-rate", flags->sampling_rate, "q = batch size / dataset size")
      ->required();
  plan->add_option("--steps", flags->steps, "number of steps T")->required();
  plan->add_flag("--json", flags->json, "print one JSON object");
  plan->callback([flags] { RunPlan(*flags); });
}

HANSA_REGISTER_COMMAND(AddDpCommand);

}  // namespace
}  // namespace hansa::tools
