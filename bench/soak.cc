// soak: many virtual sites over the loopback gRPC link for many rounds, watching what must
// stay flat. One process holds a RoundEngine behind the coordinator's gRPC service on
// 127.0.0.1 (sim/loopback.h: mutual TLS 1.3, each site with its own certificate of a CA made
// for the run) and --sites SiteSessions, each on its own thread over its own GrpcSiteLink,
// training with a fixed update (FixedUpdateTrainer: no LibTorch, no data). The engine runs
// --rounds rounds in secure (SecAgg+) or plaintext mode, each followed by the sites'
// evaluation, as a deployment does.
//
// Every --report-every rounds it samples its own /proc/self/status (VmRSS, VmHWM, Threads) and
// counts /proc/self/fd, and gives the median and maximum round time of the rounds since the
// last sample. A round's time is the wall time between the engine completing the round before
// and completing this one: the previous round's evaluation, this round's plan, consent,
// SecAgg+ stages, uploads, aggregation and checkpoint.
//
// Verdict: after --warmup-rounds, no sample may exceed the first sample taken at or after the
// warm-up by more than --max-rss-growth-mib (VmRSS), --max-fd-growth (open descriptors) or
// --max-thread-growth (threads); unless --no-round-check, no round may take more than
// --max-round-ratio times the median of all rounds (round 1, which includes the sites'
// connections and joins, is reported but not judged). Exit 0 when the run finished and the
// verdict holds, 1 when it does not, 2 on a setup error. The report (JSON) goes to --json (or
// stdout), the table of samples to stderr. scripts/soak.sh runs it; a 10-site slice runs in
// ctest (SoakQuick).
//
// Threading: the main thread samples and reports; one thread runs the engine, one per site
// runs its session; gRPC has its own.
#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/local_trainer.h"
#include "client/site_session.h"
#include "common/logging/logging.h"
#include "common/model/models.h"
#include "common/model/registry.h"
#include "common/net/rpc.h"
#include "coordinator/round_engine.h"
#include "nlohmann/json.hpp"
#include "sim/loopback.h"

namespace hansa {
namespace {

// A small model for the soak (25,450 values): mlp's shape with 32 hidden units, so a round
// costs the protocol, not the arithmetic. Known only inside this program.
const ModelRegistrar kSoakModel(ModelEntry{
    "soak_mlp", 1000, {{"fc1", {32, 784}}, {"fc2", {10, 32}}}});

struct SoakFlags {
  int sites = 100;
  int64_t rounds = 1000;
  std::string mode = "secure";  // or "plaintext"
  std::string model = "soak_mlp";
  int64_t report_every = 100;
  int64_t warmup_rounds = 100;
  double max_rss_growth_mib = 32;
  int max_fd_growth = 4;
  int max_thread_growth = 4;
  double max_round_ratio = 2.0;
  bool round_check = true;
  double phase_timeout_seconds = 300;  // each engine wait (sites, uploads, stages, evaluation)
  std::string state_dir;               // empty: a fresh temporary folder, removed afterwards
  std::string json;                    // empty: stdout
  std::string malloc_info_dir;         // non-empty: malloc_info(3) XML at every sample
};

// One reading of what must stay flat.
struct Sample {
  int64_t round = 0;
  double elapsed_seconds = 0;
  int64_t vm_rss_kib = 0;
  int64_t vm_hwm_kib = 0;
  int64_t threads = 0;
  int64_t fds = 0;
  // glibc's view (mallinfo2, all arenas): bytes handed out, and bytes held free in the arenas.
  // RSS that grows while heap_in_use stays flat is the allocator's, not a leak.
  int64_t heap_in_use_kib = 0;
  int64_t heap_free_kib = 0;
  double round_median_seconds = 0;  // of the rounds since the previous sample
  double round_max_seconds = 0;
};

// Open descriptors of this process, not counting the one reading the folder.
int64_t OpenDescriptors() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int64_t n = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;
}

// glibc's malloc_info(3) at `round` into dir/malloc-info-RRRRR.xml: per arena, the free
// chunks by size, which tells fragmentation (free chunks of one size piling up) from growth.
void DumpMallocInfo(const std::string& dir, int64_t round) {
  if (dir.empty()) return;
  const std::string path = absl::StrFormat("%s/malloc-info-%05d.xml", dir, round);
  if (FILE* f = std::fopen(path.c_str(), "w")) {
    malloc_info(0, f);
    std::fclose(f);
  }
}

Sample TakeSample(int64_t round, double elapsed) {
  Sample s;
  s.round = round;
  s.elapsed_seconds = elapsed;
  std::ifstream in("/proc/self/status");
  std::string line;
  auto field = [&line](const char* key, int64_t* out) {
    const std::string prefix = absl::StrCat(key, ":");
    if (line.rfind(prefix, 0) == 0) *out = std::stoll(line.substr(prefix.size()));
  };
  while (std::getline(in, line)) {
    field("VmRSS", &s.vm_rss_kib);
    field("VmHWM", &s.vm_hwm_kib);
    field("Threads", &s.threads);
  }
  s.fds = OpenDescriptors();
  const struct mallinfo2 heap = mallinfo2();
  s.heap_in_use_kib = static_cast<int64_t>((heap.uordblks + heap.hblkhd) / 1024);
  s.heap_free_kib = static_cast<int64_t>(heap.fordblks / 1024);
  return s;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

// A virtual site: its link, fixed-update trainer, session and thread.
struct SoakSite {
  std::unique_ptr<SiteLink> link;
  std::unique_ptr<FixedUpdateTrainer> trainer;
  std::unique_ptr<SiteSession> session;
  std::thread thread;
  Status result;
};

EngineOptions SoakEngineOptions(const SoakFlags& flags, const std::vector<std::string>& names) {
  const absl::Duration phase = absl::Seconds(flags.phase_timeout_seconds);
  EngineOptions o;
  o.federation = "soak";
  o.state_dir = flags.state_dir;
  o.model = flags.model;
  o.allowed_sites = names;
  o.rounds = flags.rounds;
  o.min_sites = flags.sites;  // every site in every round
  o.wait_for_sites = phase;
  o.upload_timeout = phase;
  o.evaluate_timeout = phase;
  o.site_idle = phase;
  o.max_attempts = 1;  // a retried round is a finding, not something to paper over
  o.secure.enabled = flags.mode == "secure";
  o.secure.unmask_device = "cpu";
  o.secure.stage_timeout = phase;
  return o;
}

StatusOr<std::unique_ptr<SoakSite>> MakeSite(const SoakFlags& flags,
                                             const LoopbackFederation& federation,
                                             const LoopbackServer& server, int index,
                                             const std::string& name, size_t values) {
  auto site = std::make_unique<SoakSite>();
  ASSIGN_OR_RETURN(site->link, federation.Connect(index, server));
  site->trainer = std::make_unique<FixedUpdateTrainer>(std::vector<float>(values, 1e-3f), 100);
  SiteSessionOptions o;
  o.name = name;
  o.policy.allowed_models = {flags.model};
  o.policy.require_secure_aggregation = flags.mode == "secure";
  o.policy.min_cohort = 1;
  o.policy.min_secagg_degree = 1;
  o.policy.min_secagg_threshold = 1;
  o.reconnect_seconds = 0;
  o.stop_on_task_error = true;  // any failed task ends the soak
  ASSIGN_OR_RETURN(site->session,
                   SiteSession::Create(std::move(o), site->link.get(), site->trainer.get()));
  return site;
}

nlohmann::ordered_json SampleJson(const Sample& s) {
  nlohmann::ordered_json j;
  j["round"] = s.round;
  j["elapsed_seconds"] = s.elapsed_seconds;
  j["vm_rss_kib"] = s.vm_rss_kib;
  j["vm_hwm_kib"] = s.vm_hwm_kib;
  j["threads"] = s.threads;
  j["fds"] = s.fds;
  j["heap_in_use_kib"] = s.heap_in_use_kib;
  j["heap_free_kib"] = s.heap_free_kib;
  j["round_median_seconds"] = s.round_median_seconds;
  j["round_max_seconds"] = s.round_max_seconds;
  return j;
}

void PrintRow(const Sample& s) {
  std::cerr << absl::StrFormat(
      "| %6d | %8.1f | %8.1f | %8.1f | %8.1f | %8.1f | %7d | %5d | %9.3f | %9.3f |\n", s.round,
      s.elapsed_seconds, s.vm_rss_kib / 1024.0, s.vm_hwm_kib / 1024.0, s.heap_in_use_kib / 1024.0,
      s.heap_free_kib / 1024.0, s.threads, s.fds, s.round_median_seconds, s.round_max_seconds);
}

// What broke the verdict, one line each; empty when it holds.
std::vector<std::string> Verdict(const SoakFlags& flags, const std::vector<Sample>& samples,
                                 const std::vector<double>& rounds, double median) {
  std::vector<std::string> why;
  auto base = std::find_if(samples.begin(), samples.end(),
                           [&](const Sample& s) { return s.round >= flags.warmup_rounds; });
  for (auto s = base; s != samples.end(); ++s) {
    const double rss = (s->vm_rss_kib - base->vm_rss_kib) / 1024.0;
    if (rss > flags.max_rss_growth_mib) {
      why.push_back(absl::StrFormat("VmRSS grew %.1f MiB from round %d to round %d (tolerance %g)",
                                    rss, base->round, s->round, flags.max_rss_growth_mib));
    }
    if (s->fds - base->fds > flags.max_fd_growth) {
      why.push_back(
          absl::StrFormat("open descriptors grew from %d at round %d to %d at round %d "
                          "(tolerance %d)",
                          base->fds, base->round, s->fds, s->round, flags.max_fd_growth));
    }
    if (s->threads - base->threads > flags.max_thread_growth) {
      why.push_back(absl::StrFormat(
          "threads grew from %d at round %d to %d at round %d (tolerance %d)", base->threads,
          base->round, s->threads, s->round, flags.max_thread_growth));
    }
  }
  if (flags.round_check) {
    // Round 1 is left out: its time includes every site's TLS handshake and join and the
    // evaluation of the initial model.
    for (size_t i = 1; i < rounds.size(); ++i) {
      if (rounds[i] > flags.max_round_ratio * median) {
        why.push_back(absl::StrFormat("round %d took %.3f s, over %g times the median %.3f s",
                                      i + 1, rounds[i], flags.max_round_ratio, median));
      }
    }
  }
  return why;
}

int RunSoak(SoakFlags flags) {
  const bool temporary = flags.state_dir.empty();
  if (temporary) {
    char dir[] = "/tmp/hansa-soak-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      std::cerr << "soak: cannot make a temporary folder\n";
      return 2;
    }
    flags.state_dir = dir;
  }
  std::vector<std::string> names;
  for (int i = 0; i < flags.sites; ++i) names.push_back(absl::StrFormat("s%04d", i));
  StatusOr<Model> initial = InitialModel(flags.model, 1);
  StatusOr<std::unique_ptr<LoopbackFederation>> federation =
      initial.ok() ? LoopbackFederation::Create(names, "DE")
                   : StatusOr<std::unique_ptr<LoopbackFederation>>(initial.status());
  StatusOr<std::unique_ptr<RoundEngine>> engine =
      federation.ok() ? RoundEngine::Create(SoakEngineOptions(flags, names), *initial)
                      : StatusOr<std::unique_ptr<RoundEngine>>(federation.status());
  StatusOr<std::unique_ptr<LoopbackServer>> server =
      engine.ok() ? (*federation)->Serve(engine->get())
                  : StatusOr<std::unique_ptr<LoopbackServer>>(engine.status());
  if (!server.ok()) {
    std::cerr << "soak: " << server.status() << "\n";
    return 2;
  }
  std::vector<std::unique_ptr<SoakSite>> sites;
  for (int i = 0; i < flags.sites; ++i) {
    auto site = MakeSite(flags, **federation, **server, i, names[i], initial->values.size());
    if (!site.ok()) {
      std::cerr << "soak: " << names[i] << ": " << site.status() << "\n";
      return 2;
    }
    sites.push_back(*std::move(site));
  }

  RoundEngine& eng = **engine;
  const absl::Time started = absl::Now();
  auto elapsed = [&] { return absl::ToDoubleSeconds(absl::Now() - started); };
  std::vector<Sample> samples = {TakeSample(0, 0)};
  Status engine_result;
  std::atomic<bool> engine_finished{false};
  std::atomic<int> failed_sites{0};
  std::thread driver([&] {
    engine_result = eng.Run();
    engine_finished = true;
  });
  for (auto& site : sites) {
    site->thread = std::thread([s = site.get(), &failed_sites] {
      s->result = s->session->Run();
      if (!s->result.ok()) failed_sites.fetch_add(1);
    });
  }
  std::cerr << absl::StrFormat(
      "soak: %d sites, %d rounds, %s, model %s (%d values), state in %s\n"
      "| round  | time (s) | RSS MiB  | HWM MiB  | heap MiB | free MiB | threads | fds   | "
      "median(s) | "
      "max (s)   |\n",
      flags.sites, flags.rounds, flags.mode, flags.model, initial->values.size(), flags.state_dir);
  PrintRow(samples.back());

  // Round times from the engine's completed round, read every millisecond. A failed site ends
  // the soak at once rather than after the engine waited out its deadlines for it.
  std::vector<double> rounds;
  absl::Time last = absl::Now();
  int64_t seen = eng.completed_round();
  size_t window = 0;
  while (!engine_finished && failed_sites.load() == 0) {
    absl::SleepFor(absl::Milliseconds(1));
    const int64_t now_round = eng.completed_round();
    if (now_round == seen) continue;
    const absl::Time now = absl::Now();
    const double each = absl::ToDoubleSeconds(now - last) / static_cast<double>(now_round - seen);
    for (int64_t r = seen; r < now_round; ++r) rounds.push_back(each);
    last = now;
    seen = now_round;
    if (seen % flags.report_every != 0 && seen != flags.rounds) continue;
    Sample s = TakeSample(seen, elapsed());
    DumpMallocInfo(flags.malloc_info_dir, seen);
    std::vector<double> recent(rounds.begin() + static_cast<std::ptrdiff_t>(window), rounds.end());
    s.round_median_seconds = Median(recent);
    s.round_max_seconds = recent.empty() ? 0 : *std::max_element(recent.begin(), recent.end());
    window = rounds.size();
    samples.push_back(s);
    PrintRow(s);
  }
  if (failed_sites.load() > 0) {
    eng.Shutdown();
    for (auto& site : sites) site->session->Stop();
  }
  driver.join();
  int failed = 0;
  for (auto& site : sites) {
    site->thread.join();
    if (!site->result.ok() && ++failed <= 5) {
      std::cerr << "soak: a site ended with " << site->result << "\n";
    }
  }
  const double wall = elapsed();
  const double median = Median(rounds);

  nlohmann::ordered_json report;
  report["benchmark"] = "soak";
  report["sites"] = flags.sites;
  report["rounds"] = flags.rounds;
  report["rounds_completed"] = seen;
  report["mode"] = flags.mode;
  report["model"] = flags.model;
  report["model_values"] = initial->values.size();
  report["wall_seconds"] = wall;
  report["round_median_seconds"] = median;
  report["round_max_seconds"] =
      rounds.empty() ? 0 : *std::max_element(rounds.begin(), rounds.end());
  report["rounds_per_second"] = wall > 0 ? static_cast<double>(seen) / wall : 0;
  report["engine"] = engine_result.ok() ? "ok" : engine_result.ToString();
  report["failed_sites"] = failed;
  report["tolerance"] = {{"warmup_rounds", flags.warmup_rounds},
                         {"max_rss_growth_mib", flags.max_rss_growth_mib},
                         {"max_fd_growth", flags.max_fd_growth},
                         {"max_thread_growth", flags.max_thread_growth},
                         {"max_round_ratio", flags.round_check ? flags.max_round_ratio : 0.0}};
  report["samples"] = nlohmann::ordered_json::array();
  for (const Sample& s : samples) report["samples"].push_back(SampleJson(s));
  report["round_seconds"] = rounds;
  std::vector<std::string> why = Verdict(flags, samples, rounds, median);
  if (!engine_result.ok()) why.push_back(absl::StrCat("engine: ", engine_result.ToString()));
  if (failed > 0) why.push_back(absl::StrCat(failed, " sites failed"));
  if (seen != flags.rounds) why.push_back(absl::StrCat("only ", seen, " rounds completed"));
  report["failures"] = why;
  report["ok"] = why.empty();

  if (flags.json.empty()) {
    std::cout << report.dump(1) << std::endl;
  } else {
    std::ofstream(flags.json) << report.dump(1) << "\n";
  }
  std::cerr << absl::StrFormat("soak: %d rounds in %.1f s, round median %.3f s, max %.3f s\n", seen,
                               wall, median, report["round_max_seconds"].get<double>());
  for (const std::string& w : why) std::cerr << "soak: FAIL: " << w << "\n";
  if (temporary) {
    std::error_code ignored;
    std::filesystem::remove_all(flags.state_dir, ignored);
  }
  return why.empty() ? 0 : 1;
}

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  hansa::KeepOpenSslUntilExit();  // gRPC threads may outlive main (common/net/rpc.h)
  hansa::SoakFlags f;
  CLI::App app{"soak: virtual sites over loopback gRPC for many rounds; memory, fds, threads"};
  app.add_option("--sites", f.sites, "virtual sites, all in every round")->capture_default_str();
  app.add_option("--rounds", f.rounds, "training rounds")->capture_default_str();
  app.add_option("--mode", f.mode, "secure (SecAgg+) or plaintext")
      ->check(CLI::IsMember({"secure", "plaintext"}))
      ->capture_default_str();
  app.add_option("--model", f.model, "built-in model name")->capture_default_str();
  app.add_option("--report-every", f.report_every, "rounds between samples")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup-rounds", f.warmup_rounds, "growth is measured from here")
      ->capture_default_str();
  app.add_option("--max-rss-growth-mib", f.max_rss_growth_mib, "VmRSS tolerance after warm-up")
      ->capture_default_str();
  app.add_option("--max-fd-growth", f.max_fd_growth, "descriptor tolerance after warm-up")
      ->capture_default_str();
  app.add_option("--max-thread-growth", f.max_thread_growth, "thread tolerance after warm-up")
      ->capture_default_str();
  app.add_option("--max-round-ratio", f.max_round_ratio, "slowest round / median")
      ->capture_default_str();
  app.add_flag("!--no-round-check", f.round_check, "do not judge round times");
  app.add_option("--phase-timeout", f.phase_timeout_seconds, "seconds for each engine wait")
      ->capture_default_str();
  app.add_option("--state-dir", f.state_dir, "engine state (default: a temporary folder)");
  app.add_option("--json", f.json, "report file (default: stdout)");
  app.add_option("--malloc-info", f.malloc_info_dir,
                 "folder for glibc's malloc_info XML at every sample");
  CLI11_PARSE(app, argc, argv);
  hansa::InitLogging("soak", "warn");
  return hansa::RunSoak(f);
}
