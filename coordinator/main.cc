// hansa-coordinator --config coordinator.toml
//
// Runs the federation's rounds over mutual TLS. Killed at any moment and restarted with the
// same command, it resumes after the last completed round. SIGINT/SIGTERM shut it down
// cleanly: in-flight uploads are dropped (they are retried next start), state stays intact.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/notification.h"
#include "common/audit/audit_log.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "common/model/models.h"
#include "common/model/task.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/revocation.h"
#include "common/signals/signal_watcher.h"
#include "common/tensor/safetensors.h"
#include "common/version/version.h"
#include "coordinator/coordinator_config.h"
#include "coordinator/dashboard.h"
#include "coordinator/federation_status.h"
#include "coordinator/service.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

StatusOr<Model> LoadInitialModel(const CoordinatorConfig& config) {
  if (!config.initial_model.empty()) {
    ASSIGN_OR_RETURN(Model model, ReadSafetensorsFile(config.initial_model));
    // A study's own model: its layout is the init file's; each site checks it against its
    // copy of the model before it trains.
    if (IsScriptModelName(config.engine.model)) return model;
    ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(config.engine.model));
    RETURN_IF_ERROR(Annotate(
        model.layout.CheckSameAs(layout),
        absl::StrCat(config.initial_model, " does not fit model '", config.engine.model, "'")));
    return model;
  }
  return InitialModel(config.engine.model, config.seed);
}

// Lets polling sites learn that the federation is finished before the port closes: until
// each has been told, `seconds` at most, or a signal.
void Linger(const RoundEngine& engine, double seconds) {
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < until && !engine.EverySiteToldDone() &&
         !engine.shutting_down()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// `state_dir`, when not empty, replaces coordinator.state_dir (a service's StateDirectory).
int Run(const std::string& config_path, const std::string& state_dir) {
  SignalWatcher signals;     // first: before any thread exists
  GrpcRuntime grpc_runtime;  // then gRPC, shut down after every gRPC object of the run
  StatusOr<CoordinatorConfig> config = LoadCoordinatorConfig(config_path);
  if (!config.ok()) {
    spdlog::error("{}", config.status().message());
    return 2;
  }
  if (!state_dir.empty()) config->engine.state_dir = state_dir;
  if (std::string gdpr = StudyFactsWarning(*config); !gdpr.empty()) spdlog::warn("{}", gdpr);
  StatusOr<TlsFiles> tls =
      LoadTlsFiles(config->certificate, config->private_key, config->ca_certificate);
  if (!tls.ok()) {
    spdlog::error("{}", tls.status().message());
    return 2;
  }
  // Every client certificate is checked against the CA and, when configured, its revocation
  // list, re-read whenever the file changes.
  StatusOr<Certificate> ca = Certificate::FromPem(tls->ca_certificate_pem);
  if (!ca.ok()) {
    spdlog::error("{}: {}", config->ca_certificate, ca.status().message());
    return 2;
  }
  auto policy = std::make_shared<ClientCertificatePolicy>(*ca);
  if (!config->revocation_list.empty()) {
    if (Status st = policy->WatchRevocationList(config->revocation_list); !st.ok()) {
      spdlog::error("pki.revocation_list: {}", st.message());
      return 2;
    }
    spdlog::info("revocation list {}: number {}, {} revoked certificate(s)",
                 config->revocation_list, policy->revocation_list()->number(),
                 policy->revocation_list()->entries().size());
  }
  // The audit log is signed with the coordinator's own key; its certificate's country is the
  // coordinator's jurisdiction.
  StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::OpenWithFiles(
      config->engine.state_dir + "/audit.jsonl", config->private_key, config->certificate);
  if (!audit.ok()) {
    spdlog::error("audit log in {}: {}", config->engine.state_dir, audit.status().message());
    return 1;
  }
  if ((*audit)->torn_tail_bytes() > 0) {
    spdlog::warn("audit log: removed an unfinished last record ({} bytes) left by a crash",
                 (*audit)->torn_tail_bytes());
  }
  if (config->engine.coordinator_country.empty()) {
    config->engine.coordinator_country = (*audit)->certificate().Subject().country;
  }
  StatusOr<std::string> config_text = ReadFile(config_path);
  if (config_text.ok()) config->engine.config_sha256 = ToHex(Sha256(*config_text));
  config->engine.audit = std::move(*audit);
  auto status_board = std::make_shared<FederationStatusBoard>();  // [monitoring]
  DescribeFederation(*status_board, config->engine, *ca, config->engine.audit->certificate());
  config->engine.status = status_board;
  StatusOr<Model> initial = LoadInitialModel(*config);
  if (!initial.ok()) {
    spdlog::error("initial model: {}", initial.status().message());
    return 2;
  }
  StatusOr<std::unique_ptr<RoundEngine>> engine = RoundEngine::Create(config->engine, *initial);
  if (!engine.ok()) {
    spdlog::error("state in {}: {}", config->engine.state_dir, engine.status().message());
    return 1;
  }
  // A refused handshake goes on record once per certificate and problem (the sink is called
  // on gRPC's threads; the engine outlives the server).
  policy->SetRefusalSink([engine = engine->get()](const CertificateRefusal& r) {
    const ParticipantFields who{r.subject.common_name, r.subject.organization, r.subject.country,
                                r.fingerprint};
    Status st = engine->RecordCertificateRefusal(who, r.serial_hex, r.kind, r.message, r.stage);
    if (!st.ok()) spdlog::error("{}", st.message());
  });
  // [monitoring]: Prometheus metrics at /metrics (and the operator's pages), stopped before the
  // engine goes.
  std::unique_ptr<HttpServer> monitoring;
  if (!config->monitoring.listen.empty()) {
    StatusOr<HttpServerOptions> options =
        MonitoringServerOptions(config->monitoring, config->ca_certificate);
    // Beyond loopback only an operator's certificate opens them (coordinator/dashboard.h).
    if (options.ok()) options->authorize = OperatorAuthorizer(policy);
    StatusOr<std::unique_ptr<HttpServer>> started =
        options.ok() ? HttpServer::Start(*std::move(options)) : options.status();
    if (!started.ok()) {
      spdlog::error("[monitoring] listen = \"{}\": {}", config->monitoring.listen,
                    started.status().message());
      return 2;
    }
    monitoring = *std::move(started);
    ServeFederationMetrics(*monitoring, status_board, (*engine)->options().audit);
    RegisterDashboard(*monitoring, status_board, (*engine)->options().audit,
                      MakeDashboardFacts(*ca, config->engine.audit->certificate(), config->listen));
  }
  CoordinatorService service(engine->get());
  int port = 0;
  service.set_certificate_policy(policy);
  StatusOr<std::unique_ptr<grpc::Server>> server =
      StartServer(config->listen, *tls, &service, config->engine.max_chunk_bytes, &port, policy);
  if (!server.ok()) {
    spdlog::error("{}", server.status().message());
    return 1;
  }
  spdlog::info("federation '{}' coordinator listening on {} (mutual TLS 1.3), state in {}",
               config->engine.federation, config->listen, config->engine.state_dir);
  signals.Start([engine = engine->get()](int sig) {
    spdlog::warn("signal {} received: shutting down", sig);
    engine->Shutdown();
  });
  // The coordinator's certificate expiring mid-run: past it no site's handshake passes and no
  // audit record could be signed (it would not verify), so the federation stops and says why.
  const Certificate& own = config->engine.audit->certificate();
  const std::string expiry = absl::StrCat(
      "the coordinator's certificate of '", own.Subject().common_name, "' (", config->certificate,
      ") expired at ", FormatCertificateTime(own.NotAfter()),
      ": no site can connect and no audit record can be signed with it; renew it and restart "
      "(the sites must then pin the new one)");
  absl::Notification run_over;
  std::atomic<bool> expired{false};
  // Warns at start and once a day while the coordinator's or the CA's certificate expires
  // within 30 days.
  std::thread expiry_watch([&, not_after = own.NotAfter(), engine = engine->get()] {
    for (;;) {
      const absl::Time now = absl::Now();
      for (const auto& [cert, what] :
           {std::make_pair(
                &own, absl::StrCat("the coordinator's certificate of '", own.Subject().common_name,
                                   "' (", config->certificate, ")")),
            std::make_pair(
                static_cast<const Certificate*>(&*ca),
                absl::StrCat("the federation CA certificate (", config->ca_certificate, ")"))}) {
        const std::string soon = ExpiryWarning(*cert, now, absl::Hours(24 * 30), what);
        if (!soon.empty()) spdlog::warn("{}", soon);
      }
      const absl::Time next = std::min(now + absl::Hours(24), not_after + absl::Seconds(1));
      if (run_over.WaitForNotificationWithDeadline(next)) return;
      if (absl::Now() > not_after) break;
    }
    expired = true;
    spdlog::error("{}; stopping", expiry);
    engine->Shutdown();
  });
  std::thread revocation_watch([&] {
    if (config->revocation_list.empty()) return;
    while (!run_over.WaitForNotificationWithTimeout(absl::Seconds(1))) policy->Refresh(absl::Now());
  });
  Status result = (*engine)->Run();
  run_over.Notify();
  expiry_watch.join();
  revocation_watch.join();
  if (result.ok()) Linger(**engine, config->linger_seconds);
  (*engine)->Shutdown();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  signals.Stop();  // while the engine it may call still exists
  if (result.ok()) {
    spdlog::info("done; metrics in {}/metrics.jsonl", config->engine.state_dir);
    return 0;
  }
  if (expired) {
    spdlog::error("stopped after round {}: {}", (*engine)->completed_round(), expiry);
    return 1;
  }
  if (absl::IsCancelled(result)) {
    spdlog::info("stopped after round {}; restart with the same command to resume",
                 (*engine)->completed_round());
    return 0;
  }
  spdlog::error("{}", result.message());
  return 1;
}

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  CLI::App app{"hansa-coordinator: runs a Hansa federation's rounds over mutual TLS"};
  std::string config = "coordinator.toml";
  std::string log_level = "info";
  std::string state_dir;
  app.set_version_flag("--version", hansa::VersionText("hansa-coordinator"));
  app.add_option("--config", config, "coordinator.toml of this federation")->capture_default_str();
  app.add_option("--state-dir", state_dir,
                 "state folder (audit log, checkpoints, state.db); overrides "
                 "coordinator.state_dir");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "text (journald priorities when stderr is the journal) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  hansa::InitLogging("coordinator", log_level, *hansa::ParseLogFormat(log_format));
  return hansa::Run(config, state_dir);
}
