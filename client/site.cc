#include "client/site.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging/logging.h"
#include "spdlog/spdlog.h"

namespace hansa {

StatusOr<std::unique_ptr<Site>> OpenSite(const SiteConfig& config) {
  auto site = std::make_unique<Site>();
  ASSIGN_OR_RETURN(TlsFiles tls,
                   LoadTlsFiles(config.certificate, config.private_key, config.ca_certificate));
  const std::string ledger = config.state_dir + "/egress.jsonl";
  auto egress = AuditLog::OpenWithFiles(ledger, config.private_key, config.certificate);
  if (!egress.ok()) {
    return Annotate(egress.status(), absl::StrCat("egress ledger in ", config.state_dir));
  }
  site->egress = *std::move(egress);
  SiteSessionOptions options;
  options.name = config.name;
  options.policy = config.policy;
  options.state_dir = config.state_dir;
  options.egress = site->egress.get();
  auto spent = SpentContributions::FromEgressLedger(ledger);
  if (!spent.ok()) return Annotate(spent.status(), "contributions in the egress ledger");
  options.spent = *std::move(spent);
  options.ca_certificate_pem = tls.ca_certificate_pem;
  options.private_key_pem = tls.private_key_pem;
  options.reconnect_seconds = config.reconnect_seconds;
  options.connect_seconds = config.rpc_timeout_seconds;

  Dataset train, test;
  RETURN_IF_ERROR(LoadSiteData(config, &train, &test));
  spdlog::info("site {}: shard {}/{}: {} training and {} test examples", config.name,
               config.shard_index + 1, config.shard_count, train.size(), test.size());
  site->trainer =
      std::make_unique<TorchSiteTrainer>(config.trainer, std::move(train), std::move(test));

  GrpcLinkOptions link;
  link.coordinator = config.coordinator;
  link.call_seconds = config.rpc_timeout_seconds;
  link.transfer_seconds = std::max(60.0, config.rpc_timeout_seconds * 10);
  link.coordinator_fingerprint = config.policy.coordinator_fingerprint;
  ASSIGN_OR_RETURN(site->link, GrpcSiteLink::Create(tls, std::move(link)));
  ASSIGN_OR_RETURN(site->session,
                   SiteSession::Create(std::move(options), site->link.get(), site->trainer.get()));
  return site;
}

}  // namespace hansa
