#include "sim/workers.h"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/pki/signing_request.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

constexpr char kPrefix[] = "hansa/sim/";
constexpr std::chrono::milliseconds kBeat(1000);

StatusOr<int> EnvInt(const char* name, int min, int max) {
  const char* v = std::getenv(name);
  int value = 0;
  if (v == nullptr || !absl::SimpleAtoi(v, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "workers: the environment variable ", name, " is ",
        v == nullptr ? "not set" : absl::StrCat("'", v, "'"), "; it must be ", min, "..", max,
        " (set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT as torchrun "
        "does)"));
  }
  return value;
}

// Sleeps a little longer each time, up to 20 ms: a poll that answers fast when the other side
// is quick and costs little when it is not.
class Backoff {
 public:
  void Pause() {
    std::this_thread::sleep_for(pause_);
    pause_ = std::min(pause_ * 2, std::chrono::milliseconds(20));
  }

 private:
  std::chrono::milliseconds pause_{1};
};

// Polls until `key` is set; the value of `end` (set first) ends the wait with Aborted.
StatusOr<std::string> AwaitUnless(RendezvousStore& store, const std::string& key,
                                  const std::string& end) {
  Backoff backoff;
  for (;;) {
    ASSIGN_OR_RETURN(const bool set, store.Check({key}));
    if (set) return store.Get(key, std::chrono::milliseconds(0));
    ASSIGN_OR_RETURN(const bool ended, store.Check({end}));
    if (ended) return absl::AbortedError(absl::StrCat("rank 0 ended the cell before '", key, "'"));
    backoff.Pause();
  }
}

// The address a worker dials for rank 0's coordinator: MASTER_ADDR, or 127.0.0.1 for any
// loopback name (the server then listens there only).
std::string LoopbackHost(const std::string& master_addr) {
  const bool loopback =
      master_addr == "localhost" || master_addr == "::1" || master_addr.rfind("127.", 0) == 0;
  return loopback ? "127.0.0.1" : master_addr;
}

std::string Range(std::pair<int, int> share) {
  return absl::StrCat(share.first, "..", share.first + share.second - 1);
}

}  // namespace

StatusOr<WorkerEnvironment> ReadWorkerEnvironment(int workers) {
  WorkerEnvironment env;
  ASSIGN_OR_RETURN(env.world_size, EnvInt("WORLD_SIZE", 1, 4096));
  if (env.world_size != workers) {
    return absl::InvalidArgumentError(absl::StrCat("workers: WORLD_SIZE is ", env.world_size,
                                                   " but the experiment has workers = ", workers));
  }
  ASSIGN_OR_RETURN(env.rank, EnvInt("RANK", 0, env.world_size - 1));
  ASSIGN_OR_RETURN(env.master_port, EnvInt("MASTER_PORT", 1, 65535));
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') {
    return absl::InvalidArgumentError(
        "workers: the environment variable MASTER_ADDR is not set (rank 0's address)");
  }
  env.master_addr = addr;
  return env;
}

std::string WorkerDevice(const std::string& device, int local_rank, int cuda_devices) {
  if (device != "auto" && device != "cuda") return device;
  if (cuda_devices <= 0) return device == "auto" ? "cpu" : device;  // "cuda": the trainer says why
  return absl::StrCat("cuda:", std::max(local_rank, 0) % cuda_devices);
}

int LocalRank() {
  for (const char* name : {"LOCAL_RANK", "SLURM_LOCALID", "RANK"}) {
    const char* value = std::getenv(name);
    int rank = 0;
    if (value != nullptr && *value != '\0')
      return absl::SimpleAtoi(value, &rank) && rank >= 0 ? rank : 0;
  }
  return 0;
}

std::pair<int, int> SiteShare(int sites, int world_size, int rank) {
  const int base = sites / world_size, extra = sites % world_size;
  return {rank * base + std::min(rank, extra), base + (rank < extra ? 1 : 0)};
}

StatusOr<std::unique_ptr<CellWorkers>> CellWorkers::Join(const WorkerEnvironment& env,
                                                         std::chrono::milliseconds timeout) {
  RendezvousOptions o;
  o.host = env.master_addr;
  o.port = env.master_port;
  o.rank = env.rank;
  o.world_size = env.world_size;
  o.timeout = timeout;
  ASSIGN_OR_RETURN(std::unique_ptr<RendezvousStore> store, JoinRendezvous(o));
  std::unique_ptr<CellWorkers> w(new CellWorkers(std::move(store)));
  w->master_addr_ = env.master_addr;
  w->lost_.assign(static_cast<size_t>(w->world_size()), false);
  if (w->rank() > 0) w->heartbeat_ = std::thread([p = w.get()] { p->Beat(); });
  return w;
}

void CellWorkers::Beat() {
  const std::string key = absl::StrCat(kPrefix, "beat/", rank());
  while (!stop_) {
    Status st = store_->Add(key, 1).status();
    if (!st.ok()) return;  // rank 0 is gone; the sweep thread finds out by itself
    for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(kBeat / 10);
  }
}

CellWorkers::~CellWorkers() {
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
}

bool CellWorkers::lost(int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_[static_cast<size_t>(rank)];
}

std::string CellWorkers::LocalExit(int rank) const {
  if (rank < 1 || static_cast<size_t>(rank) > local_pids_.size()) return "";
  const pid_t pid = local_pids_[static_cast<size_t>(rank) - 1];
  siginfo_t info{};
  // WNOWAIT: the launcher's own wait for the process still reads its status.
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid != pid) {
    return "";
  }
  if (info.si_code == CLD_EXITED) return absl::StrCat("exited with status ", info.si_status);
  return absl::StrCat("was killed by signal ", info.si_status, " (", ::strsignal(info.si_status),
                      ")");
}

void CellWorkers::MarkLost(int rank) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    lost_[static_cast<size_t>(rank)] = true;
  }
  // A worker that was only slow reads it and stops; the others' upload chain skips it.
  store_->Set(absl::StrCat(kPrefix, "lost/", rank), "1").IgnoreError();
}

void CellWorkers::Finish() {
  if (rank() != 0) return;
  if (!store_->Set(absl::StrCat(kPrefix, "job/", next_cell_), "").ok()) return;
  const auto deadline = SimClock::now() + std::chrono::seconds(30);
  for (int r = 1; r < world_size(); ++r) {
    if (lost(r)) continue;
    Backoff backoff;
    const std::string key = absl::StrCat(kPrefix, "finished/", r);
    for (;;) {
      StatusOr<bool> done = store_->Check({key});
      if (!done.ok() || *done) break;
      if (SimClock::now() > deadline) {
        spdlog::warn("workers: rank {} did not confirm the end of the sweep", r);
        break;
      }
      backoff.Pause();
    }
  }
}

StatusOr<std::string> CellWorkers::BeginCell(const std::string& dir_name) {
  const int64_t n = next_cell_++;
  RETURN_IF_ERROR(store_->Set(absl::StrCat(kPrefix, "job/", n), dir_name));
  return absl::StrCat(kPrefix, "cell/", n, "/");
}

StatusOr<std::pair<std::string, std::string>> CellWorkers::NextCell() {
  const int64_t n = next_cell_++;
  const std::string key = absl::StrCat(kPrefix, "job/", n);
  for (;;) {
    StatusOr<std::string> name = store_->Get(key, std::chrono::hours(1));
    if (absl::IsDeadlineExceeded(name.status())) continue;  // rank 0 is still on a cell
    RETURN_IF_ERROR(name.status());
    if (name->empty()) {
      RETURN_IF_ERROR(store_->Set(absl::StrCat(kPrefix, "finished/", rank()), "1"));
    }
    return std::make_pair(*name, absl::StrCat(kPrefix, "cell/", n, "/"));
  }
}

// ---- rank 0 ----

StatusOr<std::unique_ptr<RemoteSites>> RemoteSites::Start(CellWorkers* workers,
                                                          const SimulationConfig& config,
                                                          const Strategy& strategy,
                                                          const LoopbackFederation& federation,
                                                          std::vector<std::string> names) {
  if (config.sites < workers->world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("workers = ", workers->world_size(),
                                                   " needs at least as many sites (the run has ",
                                                   config.sites, ")"));
  }
  if (strategy.needs_individual_updates()) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy '", config.strategy.name,
                     "' needs every site's own update, which reaches rank 0 only summed: run it "
                     "with workers = 1"));
  }
  std::unique_ptr<RemoteSites> r(new RemoteSites());
  r->workers_ = workers;
  r->federation_ = &federation;
  r->sites_ = config.sites;
  r->min_sites_ = config.MinSites();
  r->names_ = std::move(names);
  r->silence_ = std::chrono::milliseconds(config.worker_timeout_seconds * 1000);
  r->local_ = SiteShare(config.sites, workers->world_size(), 0);
  r->lost_.assign(static_cast<size_t>(workers->world_size()), false);
  int live = config.sites;
  std::vector<std::string> lost;
  for (int k = 1; k < workers->world_size(); ++k) {
    if (!workers->lost(k)) continue;
    r->lost_[static_cast<size_t>(k)] = true;
    live -= SiteShare(config.sites, workers->world_size(), k).second;
    lost.push_back(r->Who(k));
  }
  if (live < r->min_sites_) {
    return absl::FailedPreconditionError(
        absl::StrCat(absl::StrJoin(lost, ", "), " died in an earlier cell, leaving ", live,
                     " sites; this cell needs min_sites = ", r->min_sites_));
  }
  ASSIGN_OR_RETURN(r->prefix_, workers->BeginCell(config.DirName()));
  r->watch_ = std::thread([p = r.get()] { p->Watch(); });
  return r;
}

RemoteSites::~RemoteSites() {
  stop_ = true;
  if (watch_.joinable()) watch_.join();
  // Workers waiting for a round that will not come stop waiting.
  workers_->store().Set(prefix_ + "end", "1").IgnoreError();
}

std::string RemoteSites::listen() const {
  return LoopbackHost(workers_->master_addr()) == "127.0.0.1" ? "127.0.0.1:0" : "0.0.0.0:0";
}

Status RemoteSites::Publish(const LoopbackServer& server) {
  ASSIGN_OR_RETURN(const Certificate coordinator,
                   Certificate::FromPem(federation_->coordinator_certificate_pem()));
  nlohmann::json setup;
  setup["port"] = server.port();
  setup["coordinator_fingerprint"] = coordinator.Sha256Fingerprint();
  setup["max_chunk_bytes"] = server.max_chunk_bytes();
  setup["ca"] = federation_->site_tls(0).ca_certificate_pem;
  // The other ranks' sites made their keys; their signing requests come through the store.
  nlohmann::json sites = nlohmann::json::object();
  RendezvousStore& store = workers_->store();
  for (int i = local_.first + local_.second; i < sites_; ++i) {
    const std::string key = absl::StrCat(prefix_, "request/", i);
    Backoff backoff;
    bool sent = false;
    while (!sent && Live(i)) {
      RETURN_IF_ERROR(Check());
      ASSIGN_OR_RETURN(sent, store.Check({key}));
      if (!sent) backoff.Pause();
    }
    if (!sent) continue;  // its worker was lost: no certificate
    ASSIGN_OR_RETURN(const std::string request, store.Get(key, std::chrono::milliseconds(0)));
    ASSIGN_OR_RETURN(const std::string certificate, federation_->IssueSiteCertificate(i, request));
    sites[std::to_string(i)] = certificate;
  }
  setup["sites"] = std::move(sites);
  return workers_->store().Set(prefix_ + "setup", setup.dump());
}

Status RemoteSites::StartRound(int64_t round, RoundEngine* engine, RoundSites* hooks) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(failure_);
    engine_ = engine;
    round_ = round;
    for (int i = local_.first + local_.second; i < sites_; ++i) {
      if (lost_[static_cast<size_t>(RankOf(i))]) engine->SiteLost(names_[static_cast<size_t>(i)]);
    }
  }
  RendezvousStore* store = &workers_->store();
  hooks->first = local_.first;
  hooks->uploads_done = [store, key = absl::StrCat(prefix_, "round/", round, "/uploaded/0")] {
    store->Set(key, "1").IgnoreError();  // a store that is gone fails the workers anyway
  };
  return store->Set(absl::StrCat(prefix_, "round/", round, "/start"), "1");
}

void RemoteSites::Fail(Status st) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return;
  failure_ = std::move(st);
  if (engine_ != nullptr) engine_->Shutdown();
}

Status RemoteSites::Check() {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

int RemoteSites::RankOf(int site) const {
  const int world = workers_->world_size();
  for (int k = world - 1; k > 0; --k) {
    if (site >= SiteShare(sites_, world, k).first) return k;
  }
  return 0;
}

std::string RemoteSites::Who(int rank) const {
  return absl::StrCat("worker ", rank, " (sites ",
                      Range(SiteShare(sites_, workers_->world_size(), rank)), ")");
}

bool RemoteSites::Lost(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_[static_cast<size_t>(rank)];
}

bool RemoteSites::Live(int site) { return !Lost(RankOf(site)); }

std::vector<std::string> RemoteSites::LostWorkers() {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_why_;
}

void RemoteSites::Lose(int rank, const std::string& why) {
  const int world = workers_->world_size();
  const std::string what = absl::StrCat(Who(rank), " ", why);
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok() || lost_[static_cast<size_t>(rank)]) return;
  int live = sites_;
  for (int k = 1; k < world; ++k) {
    if (k == rank || lost_[static_cast<size_t>(k)]) live -= SiteShare(sites_, world, k).second;
  }
  if (live < min_sites_) {
    failure_ = absl::UnavailableError(absl::StrCat(
        what, ": its sites dropped out, and the plan needs ",
        min_sites_ == sites_ ? std::string("every site")
                             : absl::StrCat("min_sites = ", min_sites_, " (", live, " remain)")));
    if (engine_ != nullptr) engine_->Shutdown();
    return;
  }
  lost_[static_cast<size_t>(rank)] = true;
  lost_why_.push_back(absl::StrCat(what, " (round ", round_, ")"));
  spdlog::warn(
      "{}: its sites drop out of round {}; the cell goes on with {} sites (min_sites = {})", what,
      round_, live, min_sites_);
  workers_->MarkLost(rank);
  if (engine_ == nullptr) return;  // the next round's engine hears of it at StartRound
  const auto [first, count] = SiteShare(sites_, world, rank);
  for (int i = first; i < first + count; ++i) engine_->SiteLost(names_[static_cast<size_t>(i)]);
}

void RemoteSites::Watch() {
  const int world = workers_->world_size();
  std::vector<int64_t> beats(static_cast<size_t>(world), -1);
  std::vector<SimClock::time_point> heard(static_cast<size_t>(world), SimClock::now());
  RendezvousStore& store = workers_->store();
  while (!stop_) {
    int64_t round = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!failure_.ok()) return;
      round = round_;
    }
    for (int k = 1; k < world; ++k) {
      if (Lost(k)) continue;
      if (const std::string ended = workers_->LocalExit(k); !ended.empty()) {
        Lose(k, ended);
        continue;
      }
      StatusOr<int64_t> beat = store.Add(absl::StrCat(kPrefix, "beat/", k), 0);
      if (!beat.ok()) return Fail(beat.status());
      if (*beat != beats[k]) {
        beats[k] = *beat;
        heard[k] = SimClock::now();
      } else if (SimClock::now() - heard[k] > silence_) {
        Lose(k,
             absl::StrCat("has been silent for ", silence_.count() / 1000, " s (worker_timeout)"));
        continue;
      }
      if (round == 0) continue;
      const std::string done = absl::StrCat(prefix_, "round/", round, "/done/", k);
      StatusOr<bool> reported = store.Check({done});
      if (!reported.ok()) return Fail(reported.status());
      if (!*reported) continue;
      StatusOr<std::string> text = store.Get(done, std::chrono::milliseconds(0));
      if (!text.ok()) return Fail(text.status());
      const nlohmann::json report = nlohmann::json::parse(*text, nullptr, false);
      const std::string error = report.is_object() ? report.value("error", "") : "bad report";
      if (!error.empty()) Lose(k, absl::StrCat("failed round ", round, ": ", error));
    }
    for (int i = 0; i < 10 && !stop_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Status RemoteSites::FinishRound(int64_t round, std::vector<VirtualSite>* sites) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    engine_ = nullptr;
  }
  RendezvousStore& store = workers_->store();
  for (int k = 1; k < workers_->world_size(); ++k) {
    const auto [first, count] = SiteShare(sites_, workers_->world_size(), k);
    const std::string key = absl::StrCat(prefix_, "round/", round, "/done/", k);
    Backoff backoff;
    bool reported = false;
    for (;;) {
      RETURN_IF_ERROR(Check());
      ASSIGN_OR_RETURN(reported, store.Check({key}));
      if (reported || Lost(k)) break;
      backoff.Pause();
    }
    nlohmann::json report;
    if (reported) {
      ASSIGN_OR_RETURN(const std::string text, store.Get(key, std::chrono::milliseconds(0)));
      report = nlohmann::json::parse(text, nullptr, false);
      if (!report.is_object() || !report.contains("sites") || !report["sites"].is_array()) {
        return absl::DataLossError(absl::StrCat("worker ", k, "'s report of round ", round,
                                                " does not parse: ", text.substr(0, 200)));
      }
      const std::string error = report.value("error", "");
      if (!error.empty()) {
        Lose(k, absl::StrCat("failed round ", round, ": ", error));
        RETURN_IF_ERROR(Check());
        reported = false;
      } else if (report["sites"].size() != static_cast<size_t>(count)) {
        return absl::DataLossError(absl::StrCat("worker ", k, " reported ", report["sites"].size(),
                                                " sites of round ", round, ", not ", count));
      }
    }
    for (int i = 0; i < count; ++i) {
      VirtualSite& site = (*sites)[static_cast<size_t>(first + i)];
      site.reported = reported;
      if (!reported) {  // lost with its worker: what the engine saw of it is all there is
        site.result = TrainResult();
        site.bytes_up = 0;
        continue;
      }
      const nlohmann::json& s = report["sites"][static_cast<size_t>(i)];
      site.result.num_examples = s.value("num_examples", int64_t{0});
      site.result.steps = s.value("steps", int64_t{0});
      site.result.examples_seen = s.value("examples_seen", int64_t{0});
      site.result.loss = s.value("loss", 0.0);
      site.result.seconds = s.value("seconds", 0.0);
      site.bytes_up = s.value("bytes_up", uint64_t{0});
    }
  }
  return Check();
}

// ---- ranks > 0 ----

StatusOr<bool> EarlierUploadsDone(RendezvousStore& store, const std::string& r, int rank) {
  for (int k = rank - 1; k >= 0; --k) {
    ASSIGN_OR_RETURN(const bool done, store.Check({absl::StrCat(r, "uploaded/", k)}));
    if (done || k == 0) return done;
    ASSIGN_OR_RETURN(const bool lost, store.Check({absl::StrCat(kPrefix, "lost/", k)}));
    if (!lost) return false;
  }
  return true;
}

namespace {

nlohmann::json Report(const Status& st, const std::vector<VirtualSite>& sites, int first,
                      int count) {
  nlohmann::json report;
  report["error"] = st.ok() ? "" : st.ToString();
  report["sites"] = nlohmann::json::array();
  for (int i = first; i < first + count; ++i) {
    const VirtualSite& s = sites[static_cast<size_t>(i)];
    report["sites"].push_back({{"num_examples", s.result.num_examples},
                               {"steps", s.result.steps},
                               {"examples_seen", s.result.examples_seen},
                               {"loss", s.result.loss},
                               {"seconds", s.result.seconds},
                               {"bytes_up", s.bytes_up}});
  }
  return report;
}

// Rank 0 took this worker for dead (CellWorkers::MarkLost): its sites left the sweep.
Status CheckNotLost(RendezvousStore& store, int rank) {
  ASSIGN_OR_RETURN(const bool lost, store.Check({absl::StrCat(kPrefix, "lost/", rank)}));
  if (!lost) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("worker ", rank,
                   ": rank 0 took this worker for dead (silent beyond worker_timeout, or failed) "
                   "and goes on without its sites"));
}

Status RunCellWorker(const SimulationConfig& config, const std::vector<uint8_t>& labels,
                     SimulationBackend* backend, CellWorkers* workers, const std::string& prefix) {
  RendezvousStore& store = workers->store();
  const int rank = workers->rank();
  const std::string end = prefix + "end";
  ASSIGN_OR_RETURN(PreparedRun p, PrepareRun(config, labels, backend, ""));
  const auto [first, count] = SiteShare(config.sites, workers->world_size(), rank);
  // Each site's key is made here and stays here: rank 0 gets a signing request.
  std::vector<TlsFiles> tls(p.sites.size());
  for (int i = first; i < first + count; ++i) {
    const VirtualSite& site = p.sites[static_cast<size_t>(i)];
    ASSIGN_OR_RETURN(const PrivateKey key, PrivateKey::Generate());
    ASSIGN_OR_RETURN(tls[i].private_key_pem, key.ToPem());
    ASSIGN_OR_RETURN(const SigningRequest request,
                     SigningRequest::Create(key, {site.name, site.name, kSimulatedCountry}));
    RETURN_IF_ERROR(store.Set(absl::StrCat(prefix, "request/", i), request.ToPem()));
  }
  ASSIGN_OR_RETURN(const std::string setup_text, AwaitUnless(store, prefix + "setup", end));
  const nlohmann::json setup = nlohmann::json::parse(setup_text, nullptr, false);
  if (!setup.is_object() || !setup.contains("sites")) {
    return absl::DataLossError("workers: rank 0's setup does not parse");
  }
  const int port = setup.value("port", 0);
  const uint32_t max_chunk = setup.value("max_chunk_bytes", uint32_t{0});
  std::vector<std::unique_ptr<SiteLink>> links;
  std::vector<SiteLink*> link_ptrs;
  for (int i = first; i < first + count; ++i) {
    tls[i].certificate_pem = setup["sites"].value(std::to_string(i), "");
    tls[i].ca_certificate_pem = setup.value("ca", "");
    ASSIGN_OR_RETURN(auto link,
                     ConnectLoopbackSite(tls[i], LoopbackHost(workers->master_addr()), port,
                                         max_chunk, setup.value("coordinator_fingerprint", "")));
    link_ptrs.push_back(link.get());
    links.push_back(std::move(link));
  }
  SlotPool pool(config.pool);
  for (int64_t round = 1; round <= config.rounds; ++round) {
    const std::string r = absl::StrCat(prefix, "round/", round, "/");
    RETURN_IF_ERROR(AwaitUnless(store, r + "start", end).status());
    RETURN_IF_ERROR(CheckNotLost(store, rank));
    RoundSites rs;
    rs.first = first;
    rs.links = link_ptrs;
    rs.backend = backend;
    rs.strategy = p.strategy.get();
    rs.config = &p.run;
    rs.round = round;
    rs.pool = &pool;
    if (config.secure.malicious) rs.tls = tls;
    rs.earlier_uploads_done = [&store, r, rank] { return EarlierUploadsDone(store, r, rank); };
    rs.uploads_done = [&store, mine = absl::StrCat(r, "uploaded/", rank), rank, round] {
      store.Set(mine, "1").IgnoreError();
      spdlog::info("worker {}: round {}: its sites uploaded", rank, round);
    };
    Status st;
    StatusOr<std::unique_ptr<SiteThreads>> threads = SiteThreads::Start(rs, &p.sites);
    st = threads.ok() ? (*threads)->Join() : threads.status();
    RETURN_IF_ERROR(
        store.Set(r + "done/" + std::to_string(rank), Report(st, p.sites, first, count).dump()));
    RETURN_IF_ERROR(Annotate(st, absl::StrCat("round ", round)));
  }
  return absl::OkStatus();
}

}  // namespace

Status ServeWorker(const ExperimentConfig& experiment, const ExperimentDataSets& data,
                   SimulationBackend* backend, CellWorkers* workers) {
  for (;;) {
    ASSIGN_OR_RETURN(const auto cell, workers->NextCell());
    if (cell.first.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(CheckNotLost(workers->store(), workers->rank()));
    bool found = false;
    for (SimulationConfig c : experiment.Runs()) {
      if (c.DirName() != cell.first) continue;
      c.classes = data.classes;
      c.site_rows = data.site_rows;
      spdlog::info("worker {}: cell {}", workers->rank(), cell.first);
      RETURN_IF_ERROR(
          Annotate(RunCellWorker(c, data.partition_labels, backend, workers, cell.second),
                   absl::StrCat("worker ", workers->rank(), ", cell ", cell.first)));
      found = true;
      break;
    }
    if (!found) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", workers->rank(), ": rank 0 runs cell '", cell.first,
                       "', which this experiment file does not have: give every rank the same"));
    }
  }
}

Status ServeWorker(const ExperimentConfig& experiment, CellWorkers* workers) {
  ASSIGN_OR_RETURN(const ExperimentDataSets data, LoadExperimentData(experiment));
  ASSIGN_OR_RETURN(auto backend, CreateExperimentBackend(experiment, data));
  return ServeWorker(experiment, data, backend.get(), workers);
}

}  // namespace hansa
