// The audit records (common/audit/events.h) whose fields the round engine gathers from its
// options and plans: what a federation started with, and what a round plan announced.
// Plain functions, any thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/audit/events.h"
#include "coordinator/engine_options.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// federation_started for `options` (which must have an audit log: its certificate names the
// coordinator).
AuditEvent FederationStartedOf(const EngineOptions& options);
// round_planned for `plan` (named `plan_sha256`), the `attempt`-th retry of its round (0 for the
// first plan); the privacy targets come from `options`.
AuditEvent RoundPlannedOf(const v1::RoundPlan& plan, const std::string& plan_sha256,
                          int64_t attempt, const EngineOptions& options);

}  // namespace hansa
