// The simulator's LibTorch backend: `pool` Trainers (client/train/trainer.h) over the run's data.
#include <algorithm>
#include <thread>
#include <utility>

#include "sim/simulation.h"

namespace hansa {
namespace {

class TorchBackend : public SimulationBackend {
 public:
  TorchBackend(const Dataset* train, const Dataset* test) : train_(train), test_(test) {}
  std::vector<std::unique_ptr<Trainer>> trainers;

  StatusOr<Model> Train(int slot, const Model& start, const std::vector<int64_t>& indices,
                        const TrainSettings& settings, TrainResult* result) override {
    Trainer* t = trainers.at(slot).get();
    ASSIGN_OR_RETURN(Dataset data, Subset(*train_, indices));
    RETURN_IF_ERROR(t->SetWeights(start));
    ASSIGN_OR_RETURN(*result, t->Train(data, settings));
    return t->GetWeights();
  }
  StatusOr<EvalResult> Evaluate(int slot, const Model& model) override {
    Trainer* t = trainers.at(slot).get();
    RETURN_IF_ERROR(t->SetWeights(model));
    return t->Evaluate(*test_);
  }

 private:
  const Dataset* train_;
  const Dataset* test_;
};

}  // namespace

StatusOr<std::unique_ptr<SimulationBackend>> CreateTorchBackend(const Dataset* train,
                                                                const Dataset* test,
                                                                const std::string& model,
                                                                const std::string& device,
                                                                int threads, int pool) {
  auto backend = std::make_unique<TorchBackend>(train, test);
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  if (threads == 0 && pool > 1) threads = std::max(1, cores / pool);
  TrainerOptions options;
  options.model = model;
  options.device = device;
  options.threads = threads;
  for (int i = 0; i < std::max(1, pool); ++i) {
    ASSIGN_OR_RETURN(auto trainer, Trainer::Create(options));
    backend->trainers.push_back(std::move(trainer));
  }
  return std::unique_ptr<SimulationBackend>(std::move(backend));
}

}  // namespace hansa
