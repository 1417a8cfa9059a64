// hansa simulate EXPERIMENT.toml [--out DIR]: a federation of virtual sites on this machine
// (sim/simulation.h), with a progress line while it runs and a summary at the end.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "sim/simulation.h"
#include "spdlog/spdlog.h"
#include "tools/command.h"

namespace hansa::tools {
namespace {

struct SimulateFlags {
  std::string experiment;
  std::string out;
  std::string log_level = "warn";
};

std::string Duration(double seconds) {
  char buf[32];
  const long s = std::lround(seconds);
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  }
  return buf;
}

void RunSimulate(const SimulateFlags& flags) {
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  StatusOr<ExperimentConfig> experiment = LoadExperiment(flags.experiment);
  if (!experiment.ok()) {
    std::cerr << "hansa simulate: " << experiment.status().message() << "\n";
    throw CLI::RuntimeError(2);
  }
  const std::string out = flags.out.empty() ? "runs/" + experiment->name : flags.out;
  const bool tty = isatty(STDERR_FILENO);
  std::cerr << "hansa simulate: " << experiment->Runs().size() << " run(s) of "
            << experiment->base.rounds << " rounds into " << out << ", "
            << (experiment->base.secure.enabled ? "secure" : "plaintext") << " aggregation, "
            << (experiment->base.transport == Transport::kGrpc
                    ? "sites over gRPC with mutual TLS on 127.0.0.1"
                    : "sites in process")
            << "\n";
  auto progress = [&](const Progress& p) {
    std::fprintf(stderr, "%s[%d/%d] %s  round %lld/%lld  accuracy %.4f  elapsed %s  left ~%s%s",
                 tty ? "\r\033[K" : "", p.run, p.runs, p.label.c_str(),
                 static_cast<long long>(p.round), static_cast<long long>(p.rounds), p.accuracy,
                 Duration(p.elapsed_seconds).c_str(), Duration(p.remaining_seconds).c_str(),
                 tty && p.round < p.rounds ? "" : "\n");
    std::fflush(stderr);
  };
  StatusOr<std::vector<RunResult>> results = RunExperiment(*experiment, out, progress);
  if (!results.ok()) {
    std::cerr << "\nhansa simulate: " << results.status().message() << "\n";
    throw CLI::RuntimeError(1);
  }
  std::cout << SummaryMarkdown(experiment->name, *results) << "\nresults in " << out
            << " (summary.md, summary.csv, one folder per run with metrics.jsonl and plots)\n";
}

void Register(CLI::App& root) {
  auto flags = std::make_shared<SimulateFlags>();
  CLI::App* cmd = root.add_subcommand(
      "simulate", "run a federation of virtual sites on this machine from an experiment file");
  cmd->add_option("experiment", flags->experiment, "experiment file (TOML)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", flags->out, "output directory (default runs/<experiment name>)");
  cmd->add_option("--log-level", flags->log_level,
                  "log level of the engine's messages: trace, debug, info, warn, error");
  cmd->callback([flags] { RunSimulate(*flags); });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
