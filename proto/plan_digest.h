// The name of a round plan that both sides compute on their own: the coordinator records it
// in audit.jsonl (round_planned), the site in egress.jsonl (plan_accepted / plan_refused) and
// in its PlanResponse, so a reviewer can match a site's consent to the plan it consented to.
#pragma once

#include <string>

#include "hansa/v1/hansa.pb.h"

namespace hansa {

// Lowercase hex SHA-256 of the plan's deterministic serialization, without its upload
// deadline (which the coordinator sets only when training starts, after the site consented).
std::string PlanSha256(const v1::RoundPlan& plan);

}  // namespace hansa
