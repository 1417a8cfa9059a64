// hansa-client --config site.toml [--rank N]
//
// Runs one site: trains on local data when the coordinator plans a round, sends only its
// update, and when a study is done waits for the federation's next one (--once: exits 0
// instead). Reconnects by itself when the coordinator restarts. SIGHUP re-reads site.toml and
// takes its [policy] for the next plan; SIGINT/SIGTERM stop the site cleanly. With [compute]
// world_size > 1 the site trains data-parallel: rank 0 is the site and talks to the coordinator;
// every other rank (--rank 1.., same site.toml) only trains with it and never connects outside the
// site.
#include "CLI/CLI.hpp"
#include "client/site.h"
#include "client/site_config.h"
#include "client/site_metrics.h"
#include "client/site_page.h"
#include "client/train/data_parallel.h"
#include "common/logging/logging.h"
#include "common/net/rpc.h"
#include "common/signals/signal_watcher.h"
#include "common/version/version.h"
#include "spdlog/spdlog.h"

namespace {

// A data-parallel rank > 0: trains with rank 0 until it stops; no connection leaves the site.
int ServeRank(const hansa::SiteConfig& config, std::shared_ptr<hansa::DataParallelGroup> group) {
  hansa::Dataset train, test;
  hansa::Status st = hansa::LoadSiteData(config, &train, &test);
  if (st.ok()) {
    spdlog::info("site {}: data-parallel rank {} of {} over {} training examples", config.name,
                 group->rank(), group->world_size(), train.size());
    st = hansa::ServeDataParallelTraining(group, train, config.trainer);
  }
  group.reset();
  if (!st.ok()) {
    spdlog::error("{}", st.message());
    return 1;
  }
  spdlog::info("rank 0 stopped; data-parallel rank exiting");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hansa-client: one site of a Hansa federation"};
  std::string config_path = "site.toml";
  std::string log_level = "info";
  int rank = -1;
  app.set_version_flag("--version", hansa::VersionText("hansa-client"));
  app.add_option("--config", config_path, "site.toml of this site")->capture_default_str();
  std::string state_dir;
  app.add_option("--state-dir", state_dir,
                 "state folder (egress ledger, privacy accounts); overrides site.state_dir");
  app.add_option("--rank", rank, "data-parallel rank of this process (overrides compute.rank)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "text (journald priorities when stderr is the journal) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  bool once = false;
  app.add_flag("--once", once,
               "exit 0 when the study is done, instead of waiting for the federation's next one");
  CLI11_PARSE(app, argc, argv);
  hansa::InitLogging("site", log_level, *hansa::ParseLogFormat(log_format));
  // Before any thread exists; joined before main returns, so no signal is handled (and
  // logged) while static destructors run.
  hansa::SignalWatcher signals;
  hansa::GrpcRuntime grpc_runtime;  // after the signal mask, before any gRPC object

  auto config = hansa::LoadSiteConfig(config_path);
  if (!config.ok()) {
    spdlog::error("{}", config.status().message());
    return 2;
  }
  if (!state_dir.empty()) config->state_dir = state_dir;
  if (rank >= 0) config->data_parallel.rank = rank;
  if (config->data_parallel.world_size > 1) {
    auto group = hansa::JoinDataParallelGroup(config->data_parallel, config->trainer.device);
    if (!group.ok()) {
      spdlog::error("{}", group.status().message());
      return 2;
    }
    if ((*group)->rank() > 0) {
      signals.Release();  // no session to stop: a signal ends it
      return ServeRank(*config, *group);
    }
    config->trainer.group = *group;
  }
  auto site = hansa::OpenSite(*config, /*wait_for_next_study=*/!once);
  if (!site.ok()) {
    spdlog::error("{}", site.status().message());
    return 2;
  }
  // [monitoring]: the site's Prometheus metrics at /metrics, from its own ledgers.
  std::unique_ptr<hansa::HttpServer> monitoring;
  if (!config->monitoring.listen.empty()) {
    auto options = hansa::MonitoringServerOptions(config->monitoring, config->ca_certificate);
    auto started = options.ok() ? hansa::HttpServer::Start(*std::move(options)) : options.status();
    if (!started.ok()) {
      spdlog::error("[monitoring] listen = \"{}\": {}", config->monitoring.listen,
                    started.status().message());
      return 2;
    }
    monitoring = *std::move(started);
    const hansa::SitePolicy& p = config->policy;
    hansa::SiteMetrics::Serve(*monitoring, std::make_shared<hansa::SiteMetrics>(
                                               config->name, config->state_dir, p.max_epsilon,
                                               p.delta, p.max_record_epsilon, p.record_delta));
    // The site's own page for its staff (site_page.h): its report, live, on loopback only.
    hansa::SitePageOptions page_options{config->state_dir, config->ca_certificate,
                                        config->certificate};
    page_options.max_epsilon = p.max_epsilon;
    page_options.max_record_epsilon = p.max_record_epsilon;
    hansa::Status page = hansa::RegisterSitePage(*monitoring, page_options);
    if (!page.ok()) spdlog::warn("site page: {}", page.message());
  }
  hansa::SiteSession* live = (*site)->session.get();
  signals.Start(
      [live](int sig) {
        spdlog::warn("signal {} received: stopping after the current step", sig);
        live->Stop();
      },
      [live, &config_path, pin = config->policy.coordinator_fingerprint] {
        auto policy = hansa::ReadSitePolicy(config_path);
        if (!policy.ok()) {
          spdlog::error("SIGHUP: {}; the site keeps its current policy", policy.status().message());
          return;
        }
        if (policy->coordinator_fingerprint != pin) {
          spdlog::warn(
              "SIGHUP: policy.coordinator_fingerprint takes effect only when the site restarts "
              "(the connection's pin is set when it opens)");
        }
        spdlog::info("SIGHUP: policy of {} read; it applies from the next plan", config_path);
        live->ReplacePolicy(*std::move(policy));
      });
  hansa::Status st = live->Run();
  // The signal thread is joined while the session still exists; then the session (gRPC
  // channel, LibTorch trainer, ledgers) goes while the process is whole, before static
  // destructors run.
  signals.Stop();
  site->reset();
  if (st.ok()) {
    spdlog::info("study finished; site exiting (--once)");
  } else if (!absl::IsCancelled(st)) {
    spdlog::error("{}", st.message());
  }
  spdlog::default_logger()->flush();
  return st.ok() || absl::IsCancelled(st) ? 0 : 1;
}
