// `hansa provision`: creates a federation CA and one startup kit per participant, for demos and
// tests only: it generates every private key at the operator. Real sites enroll (`hansa
// enroll`, `hansa ca sign`; tools/enroll_command.cc, tools/ca_command.cc).
// The logic lives in common/pki/startup_kit.h; this file parses flags and prints.
#include <iostream>

#include "common/pki/startup_kit.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct ProvisionFlags {
  std::string out;
  std::string federation;
  std::string coordinator;
  std::vector<std::string> sites;
  std::vector<std::string> hosts;
  std::string listen = "127.0.0.1:50051";
  int days = kDefaultCertificateValidityDays;
  std::string key_type = "ed25519";
  std::string dataset_dir = "/usr/share/datasets/fashion-mnist";
  bool shard_shared_data = false;
  bool force = false;
};

[[noreturn]] void Fail(const Status& status) {
  std::cerr << "hansa provision: " << status.message() << "\n";
  throw CLI::RuntimeError(2);
}

void RunProvision(const ProvisionFlags& flags) {
  ProvisionRequest request;
  request.out_dir = flags.out;
  request.federation = flags.federation;
  StatusOr<ParticipantSpec> coordinator = ParseParticipantSpec(flags.coordinator);
  if (!coordinator.ok()) Fail(Annotate(coordinator.status(), "--coordinator"));
  request.coordinator = *coordinator;
  for (const std::string& spec : flags.sites) {
    StatusOr<ParticipantSpec> site = ParseParticipantSpec(spec);
    if (!site.ok()) Fail(Annotate(site.status(), "--site"));
    request.sites.push_back(*site);
  }
  request.coordinator_hosts = flags.hosts;
  request.listen = flags.listen;
  request.validity_days = flags.days;
  StatusOr<KeyType> key_type = ParseKeyType(flags.key_type);
  if (!key_type.ok()) Fail(Annotate(key_type.status(), "--key-type"));
  request.key_type = *key_type;
  request.dataset_dir = flags.dataset_dir;
  request.shard_shared_data = flags.shard_shared_data;
  request.force = flags.force;

  StatusOr<ProvisionSummary> summary = WriteStartupKits(request);
  if (!summary.ok()) Fail(summary.status());
  std::cout << summary->ToText();
}

void AddProvisionCommand(CLI::App& root) {
  auto flags = std::make_shared<ProvisionFlags>();
  CLI::App* cmd =
      root.add_subcommand("provision",
                          "For demos and tests only: create a federation CA and a startup kit "
                          "(certificate, key, CA, config) for the coordinator and each site. It "
                          "generates every private key here; real sites use hansa enroll and "
                          "hansa ca sign, so that no private key moves");
  cmd->add_option("--out", flags->out, "output folder")->required();
  cmd->add_option("--federation", flags->federation, "federation name")->required();
  cmd->add_option("--coordinator", flags->coordinator, "NAME:COUNTRY[:ORGANISATION]")->required();
  cmd->add_option("--site", flags->sites, "NAME:COUNTRY[:ORGANISATION], once per site")->required();
  cmd->add_option("--host", flags->hosts,
                  "extra host name or IP in the coordinator certificate (repeatable)");
  cmd->add_option("--listen", flags->listen, "coordinator listen address")->capture_default_str();
  cmd->add_option("--days", flags->days, "validity of participant certificates in days")
      ->capture_default_str();
  cmd->add_option("--key-type", flags->key_type, "ed25519 or ecdsa-p256")->capture_default_str();
  cmd->add_option("--dataset-dir", flags->dataset_dir,
                  "folder of the Fashion-MNIST IDX files, for the site.toml templates")
      ->capture_default_str();
  cmd->add_flag("--force", flags->force, "replace an existing CA in --out");
  cmd->add_flag("--shard-shared-data", flags->shard_shared_data,
                "the sites share the data set at --dataset-dir (a demo): each trains on its own "
                "shard of it; without it each site trains on all of its own files");
  cmd->callback([flags] { RunProvision(*flags); });
}

HANSA_REGISTER_COMMAND(AddProvisionCommand);

}  // namespace
}  // namespace hansa::tools
