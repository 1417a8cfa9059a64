#include "client/site.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/train/torchscript.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "common/model/task.h"
#include "spdlog/spdlog.h"

namespace hansa {

constexpr uint64_t kMaxModelFileBytes = uint64_t{4} << 30;

namespace {

// The site's copies of allowed TorchScript models. A file is hashed before anything else; one
// whose hash the policy does not list is never loaded (LibTorch would run its code).
StatusOr<std::map<std::string, ScriptModel>> AllowedScripts(const SiteConfig& config) {
  std::map<std::string, ScriptModel> out;
  const auto& allowed = config.policy.allowed_models;
  for (const std::string& file : config.model_files) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(file, kMaxModelFileBytes));
    const std::string name = ScriptModelName(ToHex(Sha256(bytes)));
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      spdlog::warn("model file {} is {}, which policy.allowed_models does not list: not loaded",
                   file, name);
      continue;
    }
    // The very bytes just hashed: the file is read once.
    ASSIGN_OR_RETURN(TorchScriptInfo info, InspectTorchScriptBytes(bytes, file));
    ScriptModel model;
    model.file = file;
    for (const TorchScriptTensor& t : info.tensors) {
      if (t.dtype != "float32") continue;
      int64_t values = 1;
      for (int64_t d : t.shape) values *= d;
      (t.parameter ? model.parameter_values : model.buffer_values) += values;
    }
    spdlog::info("model file {} is {} ({} parameters): allowed", file, name,
                 model.parameter_values);
    out.emplace(name, std::move(model));
  }
  return out;
}

}  // namespace

StatusOr<SitePolicy> ReadSitePolicy(const std::string& path) {
  ASSIGN_OR_RETURN(SiteConfig config, LoadSiteConfig(path));
  return std::move(config.policy);
}

StatusOr<std::unique_ptr<Site>> OpenSite(const SiteConfig& config, bool wait_for_next_study) {
  auto site = std::make_unique<Site>();
  ASSIGN_OR_RETURN(TlsFiles tls,
                   LoadTlsFiles(config.certificate, config.private_key, config.ca_certificate));
  const std::string ledger = config.state_dir + "/egress.jsonl";
  auto egress = AuditLog::OpenWithFiles(ledger, config.private_key, config.certificate);
  if (!egress.ok()) {
    return Annotate(egress.status(), absl::StrCat("egress ledger in ", config.state_dir));
  }
  site->egress = *std::move(egress);
  RETURN_IF_ERROR(Annotate(RecordSendCutShort(ledger, EgressRecorder(site->egress.get())),
                           absl::StrCat("egress ledger in ", config.state_dir)));
  SiteSessionOptions options;
  options.name = config.name;
  options.policy = config.policy;
  ASSIGN_OR_RETURN(options.policy.script_models, AllowedScripts(config));
  options.state_dir = config.state_dir;
  options.egress = site->egress.get();
  auto spent = SpentContributions::FromEgressLedger(ledger);
  if (!spent.ok()) return Annotate(spent.status(), "contributions in the egress ledger");
  options.spent = *std::move(spent);
  options.ca_certificate_pem = tls.ca_certificate_pem;
  options.private_key_pem = tls.private_key_pem;
  options.reconnect_seconds = config.reconnect_seconds;
  options.wait_for_next_study = wait_for_next_study;
  options.connect_seconds = config.rpc_timeout_seconds;

  Dataset train, test;
  RETURN_IF_ERROR(LoadSiteData(config, &train, &test));
  spdlog::info("site {}: shard {}/{}: {} training and {} test examples", config.name,
               config.shard_index + 1, config.shard_count, train.size(), test.size());
  site->trainer = std::make_unique<TorchSiteTrainer>(config.trainer, options.policy.script_models,
                                                     std::move(train), std::move(test));

  GrpcLinkOptions link;
  link.coordinator = config.coordinator;
  link.call_seconds = config.rpc_timeout_seconds;
  link.transfer_seconds = std::max(60.0, config.rpc_timeout_seconds * 10);
  link.coordinator_fingerprint = config.policy.coordinator_fingerprint;
  link.proxy = config.proxy;
  ASSIGN_OR_RETURN(site->link, GrpcSiteLink::Create(tls, std::move(link)));
  ASSIGN_OR_RETURN(site->session,
                   SiteSession::Create(std::move(options), site->link.get(), site->trainer.get()));
  return site;
}

}  // namespace hansa
