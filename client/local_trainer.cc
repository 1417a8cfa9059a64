#include "client/local_trainer.h"

#include "absl/strings/str_cat.h"
#include "common/plan/plan_readers.h"

namespace hansa {

TrainSettings SettingsOfPlan(const v1::RoundPlan& plan) {
  TrainSettings s;
  s.epochs = static_cast<int>(plan.training().epochs());
  s.batch_size = static_cast<int>(plan.training().batch_size());
  s.learning_rate = plan.training().learning_rate();
  s.momentum = plan.training().momentum();
  s.weight_decay = plan.training().weight_decay();
  s.seed = plan.training().seed();
  if (HasRecordPrivacy(plan)) {
    const v1::RecordPrivacyPlan& r = plan.record_privacy();
    s.dp.clip_norm = r.clip_norm();
    s.dp.noise_multiplier = r.noise_multiplier();
    s.dp.sampling_rate = r.sampling_rate();
    s.dp.steps = r.steps();
  }
  return s;
}

StatusOr<TrainResult> FixedUpdateTrainer::Train(const v1::RoundPlan& plan, const Model& global) {
  if (global.values.size() != update_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("the global model has ", global.values.size(),
                                                   " values, the fixed update ", update_.size()));
  }
  ++trained_;
  TrainResult r;
  r.num_examples = examples_;
  r.examples_seen = examples_;
  r.steps = 1;
  return r;
}

StatusOr<std::vector<float>> FixedUpdateTrainer::HostUpdate(Model global) {
  // Written over the global model's values: no new buffer beside them.
  global.values.assign(update_.begin(), update_.end());
  return std::move(global.values);
}

StatusOr<EvalResult> FixedUpdateTrainer::Evaluate(const v1::RoundPlan& plan, const Model& global) {
  EvalResult r;
  r.num_examples = examples_;
  r.accuracy = 0.5;
  r.loss = 1.0;
  return r;
}

}  // namespace hansa
