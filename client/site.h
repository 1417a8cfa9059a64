// One deployed site, assembled from its site.toml: the egress ledger, the gRPC link with mutual
// TLS (and the coordinator pin), LibTorch training on the site's data shards, and the
// conversation over them (site_session.h). What hansa-client runs.
//
// Threading: as SiteSession.
#pragma once

#include <memory>

#include "client/link/grpc_link.h"
#include "client/site_config.h"
#include "client/site_session.h"
#include "client/torch_site_trainer.h"
#include "common/audit/audit_log.h"

namespace hansa {

struct Site {
  // Destroyed in reverse: the session before what it uses.
  std::unique_ptr<AuditLog> egress;
  std::unique_ptr<GrpcSiteLink> link;
  std::unique_ptr<TorchSiteTrainer> trainer;
  std::unique_ptr<SiteSession> session;
};

// Loads the site's data shards and TLS material (errors name the file), opens the egress
// ledger (FailedPrecondition when another client holds it) and the privacy ledgers.
StatusOr<std::unique_ptr<Site>> OpenSite(const SiteConfig& config);

}  // namespace hansa
