// site_swarm: N sites in one process, each the project's one site conversation (SiteSession)
// over its own gRPC link with mutual TLS 1.3 and its own certificate, training with a fixed
// update (FixedUpdateTrainer). With scripts/scale-sites.sh it measures what a real
// hansa-coordinator process costs while N sites wait for a task, and one round with all of them.
//
// The federation (hansa provision) has N + 1 sites and the coordinator needs all of them
// (rounds.min_sites = N + 1): the first N connect, join and wait; once all N are waiting in a
// task poll, the swarm reads the coordinator's /proc/<pid>/status (Threads, VmRSS, VmHWM), then
// starts site N + 1, whose join starts the round (evaluation of the initial model, one training
// round, its evaluation). When every site has heard DONE it reads the coordinator's status
// again and prints one JSON line with both samples and the wall time from the last join to DONE.
//
// Threading: one thread per site (SiteSession's contract), plus gRPC's own.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/link/forwarding_link.h"
#include "client/link/grpc_link.h"
#include "client/local_trainer.h"
#include "client/site_session.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "common/model/models.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/certificate.h"
#include "nlohmann/json.hpp"

namespace hansa {
namespace {

// The fields of /proc/<pid>/status the report shows (Threads, VmRSS and VmHWM in KiB).
std::map<std::string, int64_t> ProcessStatus(int pid) {
  std::map<std::string, int64_t> out;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    for (const char* key : {"Threads", "VmRSS", "VmHWM"}) {
      if (line.rfind(absl::StrCat(key, ":"), 0) == 0) {
        out[key] = std::stoll(line.substr(std::string(key).size() + 1));
      }
    }
  }
  return out;
}

// Forwards to a link and counts the task polls in flight: all N sites are waiting for a task
// when N polls are.
class CountingLink final : public ForwardingLink {
 public:
  CountingLink(std::unique_ptr<SiteLink> link, std::atomic<int>* polling)
      : ForwardingLink(link.get()), owned_(std::move(link)), polling_(polling) {}
  StatusOr<v1::Task> NextTask(absl::Duration wait) override {
    polling_->fetch_add(1);
    StatusOr<v1::Task> task = ForwardingLink::NextTask(wait);
    polling_->fetch_sub(1);
    return task;
  }

 private:
  std::unique_ptr<SiteLink> owned_;
  std::atomic<int>* polling_;
};

struct SwarmFlags {
  std::string federation;  // hansa provision --out
  std::string coordinator = "127.0.0.1:50051";
  std::string model = "mlp";
  int sites = 10;
  int coordinator_pid = 0;
  double wait_seconds = 1800;  // for all sites to wait, and for the round
};

// One site of the swarm: its link, trainer, session and thread.
struct SwarmSite {
  std::unique_ptr<SiteLink> link;
  std::unique_ptr<FixedUpdateTrainer> trainer;
  std::unique_ptr<SiteSession> session;
  std::thread thread;
  Status result;
};

StatusOr<std::unique_ptr<SwarmSite>> MakeSite(const SwarmFlags& flags, const std::string& dir,
                                              const std::string& pin, size_t model_values,
                                              std::atomic<int>* polling) {
  ASSIGN_OR_RETURN(TlsFiles tls,
                   LoadTlsFiles(dir + "/cert.pem", dir + "/key.pem", dir + "/ca.pem"));
  GrpcLinkOptions link_options;
  link_options.coordinator = flags.coordinator;
  link_options.client_version = "site_swarm";
  link_options.coordinator_fingerprint = pin;
  ASSIGN_OR_RETURN(std::unique_ptr<GrpcSiteLink> grpc, GrpcSiteLink::Create(tls, link_options));
  auto site = std::make_unique<SwarmSite>();
  site->link = std::make_unique<CountingLink>(std::move(grpc), polling);
  site->trainer =
      std::make_unique<FixedUpdateTrainer>(std::vector<float>(model_values, 1e-3f), 100);
  SiteSessionOptions options;
  options.name = std::filesystem::path(dir).filename().string();
  options.policy.coordinator_fingerprint = pin;
  options.policy.allowed_models = {flags.model};
  options.policy.require_secure_aggregation = false;
  options.policy.min_cohort = 1;
  options.state_dir = dir + "/state";
  options.reconnect_seconds = 60;
  ASSIGN_OR_RETURN(site->session,
                   SiteSession::Create(std::move(options), site->link.get(), site->trainer.get()));
  return site;
}

void Start(SwarmSite* site) {
  site->thread = std::thread([site] { site->result = site->session->Run(); });
}

bool WaitFor(double seconds, const std::function<bool()>& done) {
  absl::Time deadline = absl::Now() + absl::Seconds(seconds);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return true;
}

int RunSwarm(const SwarmFlags& flags) {
  std::vector<std::string> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(flags.federation + "/sites")) {
    dirs.push_back(entry.path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  if (static_cast<int>(dirs.size()) < flags.sites + 1) {
    std::cerr << "site_swarm: " << flags.federation << " has " << dirs.size()
              << " sites; the swarm needs --sites + 1 (the last one starts the round)\n";
    return 2;
  }
  StatusOr<std::string> coordinator_pem = ReadFile(flags.federation + "/coordinator/cert.pem");
  StatusOr<Certificate> coordinator_cert = coordinator_pem.ok()
                                               ? Certificate::FromPem(*coordinator_pem)
                                               : StatusOr<Certificate>(coordinator_pem.status());
  StatusOr<ModelLayout> layout = BuiltinModelLayout(flags.model);
  if (!coordinator_cert.ok() || !layout.ok()) {
    std::cerr << "site_swarm: "
              << (coordinator_cert.ok() ? layout.status() : coordinator_cert.status()) << "\n";
    return 2;
  }
  const std::string pin = coordinator_cert->Sha256Fingerprint();
  const size_t values = static_cast<size_t>(layout->TotalElements());

  std::atomic<int> polling{0};
  std::vector<std::unique_ptr<SwarmSite>> sites;
  for (int i = 0; i <= flags.sites; ++i) {
    StatusOr<std::unique_ptr<SwarmSite>> site = MakeSite(flags, dirs[i], pin, values, &polling);
    if (!site.ok()) {
      std::cerr << "site_swarm: " << dirs[i] << ": " << site.status() << "\n";
      return 2;
    }
    sites.push_back(*std::move(site));
  }
  const absl::Time started = absl::Now();
  for (int i = 0; i < flags.sites; ++i) Start(sites[i].get());
  if (!WaitFor(flags.wait_seconds, [&] { return polling.load() == flags.sites; })) {
    std::cerr << "site_swarm: only " << polling.load() << " of " << flags.sites
              << " sites waiting for a task\n";
    for (int i = 0; i < flags.sites; ++i) sites[i]->session->Stop();
    for (int i = 0; i < flags.sites; ++i) sites[i]->thread.join();
    return 1;
  }
  const double connect_seconds = absl::ToDoubleSeconds(absl::Now() - started);
  absl::SleepFor(absl::Seconds(2));  // settled: every poll parked at the coordinator
  nlohmann::ordered_json report;
  report["sites"] = flags.sites;
  report["connect_seconds"] = connect_seconds;
  report["waiting"] = ProcessStatus(flags.coordinator_pid);
  report["swarm_threads_waiting"] = ProcessStatus(getpid())["Threads"];

  const absl::Time round_started = absl::Now();
  Start(sites.back().get());
  int failed = 0;
  for (auto& site : sites) {
    site->thread.join();
    if (!site->result.ok()) {
      if (++failed <= 5) std::cerr << "site_swarm: a site ended with " << site->result << "\n";
    }
  }
  report["round_sites"] = flags.sites + 1;
  report["round_seconds"] = absl::ToDoubleSeconds(absl::Now() - round_started);
  report["after_round"] = ProcessStatus(flags.coordinator_pid);
  report["failed_sites"] = failed;
  std::cout << report.dump() << std::endl;
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  hansa::KeepOpenSslUntilExit();  // gRPC threads may outlive main (common/net/rpc.h)
  hansa::SwarmFlags flags;
  CLI::App app{"site_swarm: N sites over gRPC with mutual TLS against one hansa-coordinator"};
  app.add_option("--federation", flags.federation, "hansa provision --out folder with N+1 sites")
      ->required();
  app.add_option("--coordinator", flags.coordinator, "host:port")->capture_default_str();
  app.add_option("--sites", flags.sites, "sites that wait (N)")->capture_default_str();
  app.add_option("--model", flags.model, "the federation's model")->capture_default_str();
  app.add_option("--coordinator-pid", flags.coordinator_pid, "process to sample")->required();
  app.add_option("--wait-seconds", flags.wait_seconds, "limit for each phase")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  hansa::InitLogging("site_swarm", "warn");
  return hansa::RunSwarm(flags);
}
