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
// `wait_for_next_study`: the session outlives a study (SiteSessionOptions); false: --once.
StatusOr<std::unique_ptr<Site>> OpenSite(const SiteConfig& config,
                                         bool wait_for_next_study = false);

// The [policy] of the site.toml at `path`, read and checked as a whole as when the site starts
// (errors name the file and the key), for a running site to take (SIGHUP). Reads nothing else
// of the site: data, keys and the coordinator address change only with a restart.
StatusOr<SitePolicy> ReadSitePolicy(const std::string& path);

}  // namespace hansa
