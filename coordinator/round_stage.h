// The stages of a round as the engine runs them: what a site is asked for in each, and the name
// a site that did not finish one is recorded under. Plain functions, any thread.
#pragma once

#include <vector>

#include "hansa/v1/hansa.pb.h"

namespace hansa {

enum class RoundPhase {
  kIdle,
  kTrain,
  kEvaluate,
  kDone,
  kSecAggAdvertise,
  kSecAggShare,
  kSecAggConsistency,
  kSecAggUnmask
};

// The task a cohort site gets while `phase` is open (WAIT for kIdle).
v1::Task::Kind StageTaskKind(RoundPhase phase);
// The stage a site that did not answer `phase` is recorded as dropped at (SiteDropped), and
// the name the status board and the metrics give the stage: "idle", "advertise_keys",
// "share_keys", "upload", "consistency", "unmask", "evaluate", "done".
const char* StageName(RoundPhase phase);
// Every phase, in the order a secure round passes them (idle first, done last).
const std::vector<RoundPhase>& AllRoundPhases();
// One of the four SecAgg+ stages (advertise, share, consistency, unmask).
bool IsSecAggPhase(RoundPhase phase);

}  // namespace hansa
