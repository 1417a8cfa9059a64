// hansa retention STATE_DIR [--config coordinator.toml] [--delete] [--key KEY.pem
//                 --certificate CERT.pem] [--now TIME]
// hansa retention --site STATE_DIR [--delete --key KEY.pem --certificate CERT.pem]
//
// Lists the files of a coordinator's (or, with --site, a site's) state directory that are past
// the study's retention_days, with their sizes and ages; with --delete removes them and records
// what it removed in the directory's own log (common/retention/retention.h). Refuses while a
// coordinator or client holds that log.
//
// Exit codes: 0 listed (or deleted and recorded); 1 anything else (no log, no retention_days,
// the log held by a running process, a file that could not be deleted).
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/audit/audit_log.h"
#include "common/config/config.h"
#include "common/retention/retention.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct RetentionFlags {
  std::string state_dir;
  std::string site_dir;
  std::string config;
  std::string key;
  std::string certificate;
  std::string now;
  bool remove = false;
};

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "hansa retention: " << message << "\n";
  throw CLI::RuntimeError(1);
}

// The coordinator.toml to read: --config, else one beside the state directory (a provisioned
// coordinator's layout), else none.
std::string ConfigPath(const std::string& config, const std::string& state_dir,
                       RetentionSide side) {
  if (!config.empty() || side == RetentionSide::kSite) return config;
  std::filesystem::path dir = std::filesystem::path(state_dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "state/"
  const std::string beside = (dir.parent_path() / "coordinator.toml").string();
  return std::filesystem::exists(beside) ? beside : "";
}

// The key and certificate that sign the record: --key/--certificate, else the configuration's.
void SigningFiles(const RetentionFlags& flags, const std::string& config, RetentionSide side,
                  std::string* key, std::string* certificate) {
  *key = flags.key;
  *certificate = flags.certificate;
  if ((key->empty() || certificate->empty()) && !config.empty()) {
    auto cfg = ConfigReader::Load(config);
    if (!cfg.ok()) Fail(std::string(cfg.status().message()));
    const std::string table = side == RetentionSide::kSite ? "site" : "coordinator";
    if (key->empty()) *key = cfg->Path(table + ".private_key", "key.pem");
    if (certificate->empty()) *certificate = cfg->Path(table + ".certificate", "cert.pem");
  }
  if (key->empty() || certificate->empty()) {
    Fail(side == RetentionSide::kSite
             ? "--delete records what it deleted in the egress ledger: give the site's "
               "--config site.toml, or --key and --certificate (its kit's key.pem and cert.pem)"
             : "--delete records what it deleted in the audit log: give --config "
               "coordinator.toml, or --key and --certificate (the coordinator's key.pem and "
               "cert.pem)");
  }
}

void Run(const RetentionFlags& flags) {
  if (flags.state_dir.empty() == flags.site_dir.empty()) {
    Fail("give the coordinator's STATE_DIR, or --site and a site's state directory");
  }
  RetentionOptions options;
  options.side = flags.site_dir.empty() ? RetentionSide::kCoordinator : RetentionSide::kSite;
  options.state_dir = options.side == RetentionSide::kSite ? flags.site_dir : flags.state_dir;
  if (!flags.now.empty()) {
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, flags.now, &options.now, &error)) {
      Fail(absl::StrCat("--now '", flags.now, "' is not an RFC 3339 time: ", error));
    }
  }
  const std::string config = ConfigPath(flags.config, options.state_dir, options.side);
  if (options.side == RetentionSide::kCoordinator) options.config_path = config;
  const std::string log_path = RetentionLogPath(options.state_dir, options.side);

  // The log stays open (and locked) from before the listing until the record is written, so
  // no coordinator or client starts on the directory in between.
  std::unique_ptr<AuditLog> log;
  if (flags.remove) {
    std::string key, certificate;
    SigningFiles(flags, config, options.side, &key, &certificate);
    if (!std::filesystem::exists(log_path)) Fail(absl::StrCat("no log at ", log_path));
    auto opened = AuditLog::OpenWithFiles(log_path, key, certificate);
    if (!opened.ok()) {
      Fail(absl::StrCat(opened.status().message(),
                        opened.status().code() == absl::StatusCode::kFailedPrecondition
                            ? "; nothing deleted (stop the coordinator or client first)"
                            : "; nothing deleted"));
    }
    log = *std::move(opened);
  } else {
    Status held = CheckLogNotHeld(log_path);
    if (!held.ok()) Fail(std::string(held.message()));
  }

  auto plan = PlanRetention(options);
  if (!plan.ok()) Fail(std::string(plan.status().message()));
  std::cout << plan->ToText();
  if (!flags.remove) {
    std::cout << (plan->expired.empty()
                      ? std::string("nothing deleted (nothing is past retention)\n")
                      : absl::StrCat("nothing deleted (give --delete to delete the ",
                                     plan->expired.size(), " past retention)\n"));
    return;
  }
  auto applied = ApplyRetention(*plan, *log);
  if (!applied.ok()) Fail(std::string(applied.status().message()));
  if (applied->deleted.empty()) {
    std::cout << "nothing past retention; nothing deleted, nothing recorded\n";
    return;
  }
  for (const DeletedFile& f : applied->deleted) {
    std::cout << "deleted " << f.path << " (" << f.bytes << " bytes, SHA-256 " << f.sha256 << ")\n";
  }
  std::cout << "recorded as retention_applied, seq " << applied->record_seq << ", in " << log_path
            << "\n";
}

void Register(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand(
      "retention",
      "list (and with --delete remove, on record) a state directory's files past the study's "
      "retention_days");
  auto flags = std::make_shared<RetentionFlags>();
  cmd->add_option("STATE_DIR", flags->state_dir, "the coordinator's state directory");
  cmd->add_option("--site", flags->site_dir,
                  "a site's state directory instead (retention_days from its study_facts records)");
  cmd->add_option("--config", flags->config,
                  "coordinator.toml (site.toml with --site): retention_days when the records "
                  "state none, and the key that signs the record (default: coordinator.toml "
                  "beside STATE_DIR when present)");
  cmd->add_flag("--delete", flags->remove,
                "delete the files listed as past retention and append a retention_applied record "
                "to the directory's log");
  cmd->add_option("--key", flags->key, "private key that signs the record (the kit's key.pem)");
  cmd->add_option("--certificate", flags->certificate, "its certificate (the kit's cert.pem)");
  cmd->add_option("--now", flags->now,
                  "judge ages as of this RFC 3339 time instead of now (for tests and previews)");
  cmd->callback([flags] { Run(*flags); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
