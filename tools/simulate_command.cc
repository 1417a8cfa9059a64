// hansa simulate EXPERIMENT.toml [--out DIR] [--cell SPEC | --list-cells]: a federation of
// virtual sites on this machine (sim/simulation.h), with a progress line while it runs and a
// summary at the end; `hansa simulate summarize DIR` merges the cells that are done.
//
// Exit codes: 0 done; 1 a run failed; 2 a bad experiment file, cell selection or --out folder
// (nothing ran); 3 some cells are not done (summarize: missing; a run: left to another process
// that holds their lock).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sim/simulation.h"
#include "sim/workers.h"
#include "spdlog/spdlog.h"
#include "tools/command.h"

extern char** environ;

namespace hansa::tools {
namespace {

constexpr int kExitRunFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCellsMissing = 3;

struct SimulateFlags {
  std::string experiment;
  std::string out;
  std::string cells;
  bool list_cells = false;
  bool workers_local = false;
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

[[noreturn]] void Fail(const std::string& message, int code) {
  std::cerr << "hansa simulate: " << message << "\n";
  throw CLI::RuntimeError(code);
}

// "0-2,5": cells as a --cell spec, consecutive ones as ranges.
std::string CellSpec(const std::vector<int>& cells) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < cells.size();) {
    size_t j = i;
    while (j + 1 < cells.size() && cells[j + 1] == cells[j] + 1) ++j;
    parts.push_back(j == i ? absl::StrCat(cells[i]) : absl::StrCat(cells[i], "-", cells[j]));
    i = j + 1;
  }
  return absl::StrJoin(parts, ",");
}

// One line per cell: index, partition, strategy, seed, folder, and with an existing run folder
// whether the cell is done there.
void ListCells(const ExperimentConfig& experiment, const std::string& out) {
  const bool have_dir = std::filesystem::exists(out + "/experiment.toml");
  if (have_dir) {
    Status same = CheckRunDir(experiment, out);
    if (!same.ok()) Fail(std::string(same.message()), kExitUsage);
  }
  std::cerr << "cell\tpartition\tstrategy\tseed\tfolder" << (have_dir ? "\tstate" : "") << "\n";
  const std::vector<SimulationConfig> runs = experiment.Runs();
  for (size_t k = 0; k < runs.size(); ++k) {
    const SimulationConfig& c = runs[k];
    std::cout << k << "\t" << c.PartitionName() << "\t" << c.strategy.Label() << "\t" << c.seed
              << "\t" << c.DirName();
    if (have_dir) std::cout << "\t" << (RunComplete(out + "/" + c.DirName()) ? "done" : "pending");
    std::cout << "\n";
  }
}

// --workers-local: this process becomes rank 0 and starts ranks 1..workers-1 as copies of
// itself (same arguments) with the torchrun variables set for a store on 127.0.0.1.
std::vector<pid_t> StartLocalWorkers(int workers) {
  if (std::getenv("RANK") != nullptr) {
    Fail("--workers-local starts the workers itself; it is not for a process given RANK",
         kExitUsage);
  }
  // A port that was free a moment ago, for the store rank 0 is about to serve.
  int port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      Fail(absl::StrCat("--workers-local: no free port on 127.0.0.1: ", std::strerror(errno)),
           kExitRunFailed);
    }
    port = ntohs(a.sin_port);
    ::close(fd);
  }
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(workers).c_str(), 1);
  std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string arg; std::getline(cmdline, arg, '\0');) {
    if (arg != "--workers-local") args.push_back(arg);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<pid_t> children;
  for (int rank = 1; rank < workers; ++rank) {
    ::setenv("RANK", std::to_string(rank).c_str(), 1);
    pid_t pid = -1;
    const int error = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
    if (error != 0) {
      Fail(absl::StrCat("--workers-local: starting worker ", rank, ": ", std::strerror(error)),
           kExitRunFailed);
    }
    children.push_back(pid);
  }
  ::setenv("RANK", "0", 1);
  return children;
}

// Waits for the workers --workers-local started; false when one failed, other than one whose
// sites the sweep already dropped (`workers` took it for dead and went on without it).
bool JoinLocalWorkers(const std::vector<pid_t>& children, const CellWorkers* workers) {
  bool ok = true;
  for (size_t i = 0; i < children.size(); ++i) {
    int status = 0;
    if (::waitpid(children[i], &status, 0) == children[i] && WIFEXITED(status) &&
        WEXITSTATUS(status) == 0) {
      continue;
    }
    const int rank = static_cast<int>(i) + 1;
    if (workers != nullptr && workers->lost(rank)) {
      std::cerr << "hansa simulate: worker " << rank
                << " ended during the run; its sites dropped out (see above)\n";
      continue;
    }
    std::cerr << "hansa simulate: worker " << rank << " failed (see its messages above)\n";
    ok = false;
  }
  return ok;
}

// This process's place among the experiment's workers, from the torchrun variables.
std::unique_ptr<CellWorkers> JoinWorkers(const ExperimentConfig& experiment) {
  StatusOr<WorkerEnvironment> env = ReadWorkerEnvironment(experiment.base.workers);
  if (!env.ok()) Fail(std::string(env.status().message()), kExitUsage);
  std::cerr << "hansa simulate: worker " << env->rank << " of " << env->world_size
            << ", rendezvous at " << env->master_addr << ":" << env->master_port << "\n";
  StatusOr<std::unique_ptr<CellWorkers>> joined = CellWorkers::Join(*env, std::chrono::minutes(10));
  if (!joined.ok()) Fail(std::string(joined.status().message()), kExitRunFailed);
  return *std::move(joined);
}

void RunSimulate(const SimulateFlags& flags) {
  spdlog::set_level(spdlog::level::from_str(flags.log_level));
  if (flags.experiment.empty()) {
    Fail("give an experiment file (hansa simulate EXPERIMENT.toml) or summarize RUN_DIR",
         kExitUsage);
  }
  StatusOr<ExperimentConfig> experiment = LoadExperiment(flags.experiment);
  if (!experiment.ok()) Fail(std::string(experiment.status().message()), kExitUsage);
  const std::string out = flags.out.empty() ? "runs/" + experiment->name : flags.out;
  if (flags.list_cells) return ListCells(*experiment, out);
  const int cells = static_cast<int>(experiment->Runs().size());
  SweepOptions options;
  if (!flags.cells.empty()) {
    StatusOr<std::vector<int>> picked = ParseCellSpec(flags.cells, cells);
    if (!picked.ok()) Fail(std::string(picked.status().message()), kExitUsage);
    options.cells = *std::move(picked);
  }
  std::unique_ptr<CellWorkers> workers;
  std::vector<pid_t> local_workers;
  if (flags.workers_local && experiment->base.workers > 1) {
    local_workers = StartLocalWorkers(experiment->base.workers);
  }
  if (experiment->base.workers > 1) {
    workers = JoinWorkers(*experiment);
    if (workers->rank() > 0) {
      Status served = ServeWorker(*experiment, workers.get());
      if (!served.ok()) Fail(std::string(served.message()), kExitRunFailed);
      return;
    }
    options.workers = workers.get();
    workers->WatchLocalProcesses(local_workers);  // ended at once, not after worker_timeout
  }
  Status same = CheckRunDir(*experiment, out);
  if (!same.ok()) Fail(std::string(same.message()), kExitUsage);
  const bool tty = isatty(STDERR_FILENO);
  std::cerr << "hansa simulate: "
            << (options.cells.empty() ? absl::StrCat(cells, " run(s) of ")
                                      : absl::StrCat("cell(s) ", CellSpec(options.cells), " of ",
                                                     cells, ", each of "))
            << experiment->base.rounds << " rounds, into " << out << ", "
            << (experiment->base.secure.enabled ? "secure" : "plaintext") << " aggregation, "
            << (experiment->base.transport == Transport::kGrpc
                    ? "sites over gRPC with mutual TLS on 127.0.0.1"
                    : "sites in process")
            << (workers ? absl::StrCat(", sites spread over ", workers->world_size(),
                                       " workers (the others' over gRPC with mutual TLS)")
                        : "")
            << "\n";
  options.progress = [&](const Progress& p) {
    std::fprintf(stderr,
                 "%s[%d/%d] cell %d %s  round %lld/%lld  accuracy %.4f  elapsed %s  left ~%s%s",
                 tty ? "\r\033[K" : "", p.run, p.runs, p.cell, p.label.c_str(),
                 static_cast<long long>(p.round), static_cast<long long>(p.rounds), p.accuracy,
                 Duration(p.elapsed_seconds).c_str(), Duration(p.remaining_seconds).c_str(),
                 tty && p.round < p.rounds ? "" : "\n");
    std::fflush(stderr);
  };
  options.skipped = [&](int cell, const SimulationConfig& c, const std::string& why) {
    std::cerr << "hansa simulate: cell " << cell << " (" << c.DirName() << ") is " << why
              << ": not run\n";
  };
  StatusOr<SweepResult> result = RunSweep(*experiment, out, options);
  if (!result.ok()) {
    Fail(absl::StrCat(result.status().message()), kExitRunFailed);
  }
  if (workers) workers->Finish();
  if (!JoinLocalWorkers(local_workers, workers.get())) Fail("a worker failed", kExitRunFailed);
  if (options.cells.empty()) {
    std::cout << SummaryMarkdown(experiment->name, result->runs) << "\nresults in " << out
              << " (summary.md, summary.csv, one folder per run with metrics.jsonl and plots)\n";
  } else {
    std::cerr << "hansa simulate: results in " << out
              << "; when every cell is done, write the summaries with: hansa simulate summarize "
              << out << "\n";
  }
  if (!result->missing.empty()) {
    Fail(absl::StrCat("cell(s) ", CellSpec(result->missing),
                      " are running in another process; summarize ", out, " once they are done"),
         kExitCellsMissing);
  }
}

void Summarize(const std::string& run_dir) {
  StatusOr<SweepSummary> summary = SummarizeRunDir(run_dir);
  if (!summary.ok()) {
    std::cerr << "hansa simulate summarize: " << summary.status().message() << "\n";
    throw CLI::RuntimeError(absl::IsNotFound(summary.status()) ? kExitUsage : kExitRunFailed);
  }
  const size_t cells = summary->runs.size() + summary->missing.size();
  std::cout << SummaryMarkdown(summary->experiment.name, summary->runs) << "\n"
            << summary->runs.size() << " of " << cells << " cells in " << run_dir
            << "/summary.md, summary.csv\n";
  if (summary->missing.empty()) return;
  const std::vector<SimulationConfig> runs = summary->experiment.Runs();
  std::cerr << "hansa simulate summarize: " << summary->missing.size() << " of " << cells
            << " cells are not done:\n";
  for (int k : summary->missing) {
    std::cerr << "  cell " << k << "\t" << runs[static_cast<size_t>(k)].DirName() << "\n";
  }
  std::cerr << "run them with: hansa simulate " << run_dir << "/experiment.toml --out " << run_dir
            << " --cell " << CellSpec(summary->missing) << "\n";
  throw CLI::RuntimeError(kExitCellsMissing);
}

void Register(CLI::App& root) {
  auto flags = std::make_shared<SimulateFlags>();
  CLI::App* cmd = root.add_subcommand(
      "simulate",
      "run a federation of virtual sites on this machine from an experiment file; exit codes: "
      "0 done, 1 a run failed, 2 bad input (nothing ran), 3 some cells not done");
  cmd->add_option("experiment", flags->experiment, "experiment file (TOML)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", flags->out, "output directory (default runs/<experiment name>)");
  auto* cell = cmd->add_option(
      "--cell", flags->cells,
      "run only these cells of the sweep (see --list-cells): K, K1,K2,..., A-B or a mix; "
      "cells already done are skipped, and no summary is written (hansa simulate summarize)");
  cmd->add_flag("--list-cells", flags->list_cells,
                "print the sweep's cells, one per line: index, partition, strategy, seed, folder "
                "(and done/pending when the --out folder exists)")
      ->excludes(cell);
  cmd->add_flag("--workers-local", flags->workers_local,
                "with [experiment] workers = N: start the N - 1 other workers on this machine "
                "(instead of a launcher setting RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  cmd->add_option("--log-level", flags->log_level,
                  "log level of the engine's messages: trace, debug, info, warn, error");
  auto run_dir = std::make_shared<std::string>();
  CLI::App* summarize = cmd->add_subcommand(
      "summarize",
      "write summary.md, summary.csv and the plots of a run folder's finished cells and list "
      "the missing ones; exit code 3 when some are missing");
  summarize->add_option("RUN_DIR", *run_dir, "the --out folder of hansa simulate")
      ->required()
      ->check(CLI::ExistingDirectory);
  summarize->callback([run_dir] { Summarize(*run_dir); });
  cmd->callback([flags, summarize] {
    if (summarize->parsed()) return;
    RunSimulate(*flags);
  });
}

HANSA_REGISTER_COMMAND(Register);

}  // namespace
}  // namespace hansa::tools
