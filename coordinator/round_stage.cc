#include "coordinator/round_stage.h"

namespace hansa {

v1::Task::Kind StageTaskKind(RoundPhase phase) {
  switch (phase) {
    case RoundPhase::kTrain:
      return v1::Task::TRAIN;
    case RoundPhase::kEvaluate:
      return v1::Task::EVALUATE;
    case RoundPhase::kSecAggAdvertise:
      return v1::Task::SECAGG_ADVERTISE;
    case RoundPhase::kSecAggShare:
      return v1::Task::SECAGG_SHARE;
    case RoundPhase::kSecAggConsistency:
      return v1::Task::SECAGG_CONSISTENCY;
    case RoundPhase::kSecAggUnmask:
      return v1::Task::SECAGG_UNMASK;
    case RoundPhase::kDone:
      return v1::Task::DONE;
    case RoundPhase::kIdle:
      break;
  }
  return v1::Task::WAIT;
}

const char* StageName(RoundPhase phase) {
  switch (phase) {
    case RoundPhase::kSecAggAdvertise:
      return "advertise_keys";
    case RoundPhase::kSecAggShare:
      return "share_keys";
    case RoundPhase::kTrain:
      return "upload";
    case RoundPhase::kSecAggConsistency:
      return "consistency";
    case RoundPhase::kSecAggUnmask:
      return "unmask";
    case RoundPhase::kEvaluate:
      return "evaluate";
    case RoundPhase::kDone:
      return "done";
    case RoundPhase::kIdle:
      break;
  }
  return "idle";
}

const std::vector<RoundPhase>& AllRoundPhases() {
  static const std::vector<RoundPhase> kPhases = {RoundPhase::kIdle,
                                                  RoundPhase::kSecAggAdvertise,
                                                  RoundPhase::kSecAggShare,
                                                  RoundPhase::kTrain,
                                                  RoundPhase::kSecAggConsistency,
                                                  RoundPhase::kSecAggUnmask,
                                                  RoundPhase::kEvaluate,
                                                  RoundPhase::kDone};
  return kPhases;
}

bool IsSecAggPhase(RoundPhase phase) {
  return phase == RoundPhase::kSecAggAdvertise || phase == RoundPhase::kSecAggShare ||
         phase == RoundPhase::kSecAggConsistency || phase == RoundPhase::kSecAggUnmask;
}

}  // namespace hansa
