// A site's link straight into a RoundEngine in the same process (site_link.h): the simulator's
// in-process sites, benchmarks and tests. The engine sees the site as `site`, as the gRPC
// service would from its certificate. Downloads and uploads go through the same chunk checks
// as over gRPC (chunks.h), without copies.
//
// Threading: as SiteLink. The engine must outlive the link.
#pragma once

#include <memory>

#include "client/link/site_link.h"
#include "coordinator/round_engine.h"

namespace hansa {

std::unique_ptr<SiteLink> EngineSiteLink(RoundEngine* engine, SiteIdentity site);

}  // namespace hansa
