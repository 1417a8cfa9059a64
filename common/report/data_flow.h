// The plain-language data-flow statement of a report: what stays at a site, what leaves it and
// in which form, what the coordinator can see, and what protects the released model. Worded
// for a data-protection impact assessment (DPIA) appendix, from the facts the audit log
// records about this federation (aggregation mode, secure-aggregation and privacy parameters,
// jurisdictions), never from what the configuration merely intended.
#pragma once

#include "nlohmann/json.hpp"

namespace hansa {

// {title, paragraphs[{heading, text}]}. `report` is a report under construction (report.h)
// holding at least federation, participants, rounds, privacy and audit.
nlohmann::json DataFlowStatement(const nlohmann::json& report);

}  // namespace hansa
