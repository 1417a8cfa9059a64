// Peak memory through whole rounds, phase by phase, over loopback mutual TLS 1.3 against the
// real coordinator (RoundEngine and CoordinatorService as hansa-coordinator starts them), with
// one side of the federation in a forked process so that the measured process holds only what
// it measures. Sites run the conversation of hansa-client (client/site_session.h) with a
// FixedUpdateTrainer (its fixed update stands for the trained weights a real trainer holds).
// Around each phase VmHWM is reset (/proc/self/clear_refs) and read back, and its wall seconds
// printed beside its peak.
//
// Site mode (sites = 0): this process is one site; the fork runs the coordinator and the
// cohort's two other sites. Marks come from a SiteLink and a LocalTrainer that wrap the real ones:
//   wait       from the last mark to the download: polls, consent, SecAgg+ key stages
//   download   the global model arriving, decoded as it comes (Download)
//   decode     from the download's end to the trainer being called
//   update     training and the host update handed over (HostUpdate, over the global model)
//   protect    clipping, encoding, masking (secure) and hashing, up to the upload's start
//   upload     the update streamed in chunks (Upload)
// Issue 19's bound for a site is 3*M + 200 MB for a model of M bytes.
//
// Coordinator mode (sites = N > 0): this process is the coordinator alone; the fork runs all N
// sites and tells it (over a pipe) when a site starts its download and when its upload is
// answered. Marks, per round:
//   start      the engine and its server up: rss_end is the baseline (process + model payload)
//   wait       from the previous round's end to the first site's download: the plan, SecAgg+
//              key stages
//   uploads    downloads and uploads, up to the N-th upload answered (the upload's reply comes
//              once the update is in the sum, so a plaintext round's mean may have begun)
//   aggregate  unmasking and decoding (secure), the mean, the server step and the checkpoint,
//              up to the round completed
// and after the last round:
//   stopped    the engine and its server stopped and gone
//   resume     a new engine over the same state dir, as a restarted hansa-coordinator: the
//              last checkpoint read back, its digest checked (a failed resume exits 1)
// Issue 19's bound for the coordinator is 2*M + 200 MB, whatever N.
//
//   site_memory_bench [model MB, default 250] [secure 0|1, default 0] [rounds, default 2]
//                     [sites, default 0: site mode]
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_engine.h"
#include "client/link/grpc_link.h"
#include "client/local_trainer.h"
#include "client/site_session.h"
#include "common/logging/logging.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/startup_kit.h"
#include "coordinator/round_engine.h"
#include "coordinator/service.h"

namespace hansa {
namespace {

constexpr int kSiteModeSites = 3;  // SecAgg+ needs three
constexpr int64_t kExamples = 100;
constexpr int64_t kColumns = 1000;

double ProcStatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atof(line.c_str() + field.size() + 1) * 1024;
  }
  return -1;
}

bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  return static_cast<bool>(out.flush());
}

ModelLayout LayoutOfBytes(int64_t bytes) {
  const int64_t rows = bytes / 4 / 4 / kColumns;
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 4; ++i) {
    specs.push_back({"layer" + std::to_string(i) + ".weight", DType::kF32, {rows, kColumns}});
  }
  return ModelLayout(std::move(specs));
}

std::vector<float> Update(size_t n) {
  std::vector<float> update(n);
  for (size_t i = 0; i < n; ++i) update[i] = 1e-4f * static_cast<float>(i % 200) - 0.01f;
  return update;
}

// The marks of one process: each closes the phase since the previous one.
class Marks {
 public:
  void Mark(const std::string& phase) {
    const auto now = std::chrono::steady_clock::now();
    rows_.push_back({round_, phase, ProcStatusBytes("VmHWM"), ProcStatusBytes("VmRSS"),
                     std::chrono::duration<double>(now - last_).count()});
    last_ = now;
    reset_ok_ = ResetPeakRss() && reset_ok_;
  }
  void set_round(uint64_t r) { round_ = r; }
  void Print(double model_bytes) const {
    std::printf("%-5s %-10s %12s %12s %10s %10s\n", "round", "phase", "peak_MB", "rss_end_MB",
                "peak/M", "seconds");
    for (const Row& r : rows_) {
      std::printf("%-5llu %-10s %12.0f %12.0f %10.2f %10.2f\n",
                  static_cast<unsigned long long>(r.round), r.phase.c_str(), r.hwm / 1e6,
                  r.rss / 1e6, r.hwm / model_bytes, r.seconds);
    }
    if (!reset_ok_) std::printf("(VmHWM could not be reset: peaks are the process lifetime's)\n");
  }

 private:
  struct Row {
    uint64_t round;
    std::string phase;
    double hwm, rss;
    double seconds;  // since the previous mark (the first: since the Marks were made)
  };
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::vector<Row> rows_;
  uint64_t round_ = 0;
  bool reset_ok_ = true;
};

// Called with a phase's name as it ends, and the round of the plan at hand.
using PhaseEnd = std::function<void(const char* phase, uint64_t round)>;

// A SiteLink that reports the ends of the download and upload phases: "wait" before the
// download, "download" after it, "protect" before the upload, "upload" after its reply.
class PhaseLink final : public SiteLink {
 public:
  PhaseLink(SiteLink* inner, PhaseEnd on_end) : inner_(inner), on_end_(std::move(on_end)) {}
  Status Connect(absl::Duration timeout) override { return inner_->Connect(timeout); }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest& r) override { return inner_->Join(r); }
  StatusOr<v1::Task> NextTask(absl::Duration wait) override { return inner_->NextTask(wait); }
  StatusOr<Model> Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) override {
    on_end_("wait", plan.round());
    auto model = inner_->Download(plan, max_model_bytes);
    on_end_("download", plan.round());
    return model;
  }
  Status RespondToPlan(const v1::PlanResponse& r) override { return inner_->RespondToPlan(r); }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    on_end_("protect", plan.round());
    auto reply = inner_->Upload(plan, header, pieces);
    on_end_("upload", plan.round());
    return reply;
  }
  Status SubmitSecAgg(const v1::SecAggSubmission& s) override { return inner_->SubmitSecAgg(s); }
  Status ReportMetrics(const v1::MetricsReport& r) override { return inner_->ReportMetrics(r); }
  uint32_t max_chunk_bytes() const override { return inner_->max_chunk_bytes(); }
  void Stop() override { inner_->Stop(); }

 private:
  SiteLink* const inner_;
  const PhaseEnd on_end_;
};

class MeasuredTrainer final : public LocalTrainer {
 public:
  MeasuredTrainer(LocalTrainer* inner, Marks* marks) : inner_(inner), marks_(marks) {}
  StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& global) override {
    marks_->Mark("decode");
    return inner_->Train(plan, global);
  }
  StatusOr<std::vector<float>> HostUpdate(Model global) override {
    auto update = inner_->HostUpdate(std::move(global));
    marks_->Mark("update");
    return update;
  }
  StatusOr<EvalResult> Evaluate(const v1::RoundPlan& plan, const Model& global) override {
    return inner_->Evaluate(plan, global);
  }

 private:
  LocalTrainer* const inner_;
  Marks* const marks_;
};

std::string g_dir;

StatusOr<TlsFiles> KitTls(const std::string& kit) {
  const std::string d = g_dir + "/kits/" + kit;
  return LoadTlsFiles(d + "/cert.pem", d + "/key.pem", d + "/ca.pem");
}

StatusOr<std::unique_ptr<GrpcSiteLink>> SiteLinkTo(int port, uint32_t max_chunk,
                                                   const std::string& site) {
  ASSIGN_OR_RETURN(TlsFiles tls, KitTls("sites/" + site));
  ASSIGN_OR_RETURN(auto creds, MakeClientCredentials(tls));
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), creds,
                                           SiteChannelArguments(max_chunk));
  GrpcLinkOptions o;
  o.coordinator = absl::StrCat("127.0.0.1:", port);
  o.client_version = "site_memory_bench";
  return std::make_unique<GrpcSiteLink>(channel, o);
}

SiteSessionOptions SessionOptions(const std::string& name) {
  SiteSessionOptions o;
  o.name = name;
  o.policy.allowed_models = {"bench"};
  o.policy.require_secure_aggregation = false;
  o.policy.min_cohort = 1;
  o.reconnect_seconds = 30;
  o.evaluate = false;
  o.stop_on_task_error = true;
  return o;
}

// The coordinator as hansa-coordinator starts it, serving on a port of 127.0.0.1 until Stop.
class CoordinatorSide {
 public:
  static StatusOr<std::unique_ptr<CoordinatorSide>> Start(int64_t model_bytes, bool secure,
                                                          int rounds, int sites) {
    ASSIGN_OR_RETURN(TlsFiles tls, KitTls("coordinator"));
    const EngineOptions o = Options(secure, rounds, sites);
    auto side = std::unique_ptr<CoordinatorSide>(new CoordinatorSide());
    {
      Model initial;
      initial.layout = LayoutOfBytes(model_bytes);
      initial.values.assign(static_cast<size_t>(initial.layout.TotalElements()), 0.01f);
      ASSIGN_OR_RETURN(side->engine_, RoundEngine::Create(o, initial));
    }
    side->service_ = std::make_unique<CoordinatorService>(side->engine_.get());
    ASSIGN_OR_RETURN(side->server_, StartServer("127.0.0.1:0", tls, side->service_.get(),
                                                side->engine_->max_chunk_bytes(), &side->port_));
    RoundEngine* engine = side->engine_.get();
    side->run_ = std::thread([engine] { (void)engine->Run(); });
    return side;
  }
  // The engine a restarted hansa-coordinator makes over the same state: it reads the last
  // checkpoint back (its digest checked against the state database).
  static StatusOr<std::unique_ptr<RoundEngine>> Resume(bool secure, int rounds, int sites) {
    return RoundEngine::Create(Options(secure, rounds, sites), Model{});
  }
  ~CoordinatorSide() { Stop(); }
  void Stop() {
    if (!run_.joinable()) return;
    engine_->Shutdown();
    run_.join();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  RoundEngine* engine() const { return engine_.get(); }
  int port() const { return port_; }

 private:
  CoordinatorSide() = default;
  static EngineOptions Options(bool secure, int rounds, int sites) {
    std::vector<std::string> names;
    for (int i = 0; i < sites; ++i) names.push_back(absl::StrCat("site-", i));
    return BenchEngineOptions(g_dir + "/state", std::move(names), rounds, secure);
  }

  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::thread run_;
  int port_ = 0;
};

// Sites site-`first` .. site-`last - 1`, each on its own thread until the federation is done;
// `on_end` (null: none) hears each one's download and upload phases.
Status RunSites(int port, uint32_t max_chunk, size_t n, int first, int last,
                const PhaseEnd& on_end) {
  std::vector<Status> results(static_cast<size_t>(last - first));
  std::vector<std::thread> sites;
  for (int i = first; i < last; ++i) {
    sites.emplace_back([&, i] {
      Status& result = results[static_cast<size_t>(i - first)];
      const std::string name = absl::StrCat("site-", i);
      FixedUpdateTrainer trainer(Update(n), kExamples);
      auto grpc_link = SiteLinkTo(port, max_chunk, name);
      if (!grpc_link.ok()) {
        result = grpc_link.status();
        return;
      }
      PhaseLink phased(
          grpc_link->get(), on_end ? on_end : [](const char*, uint64_t) {});
      auto session = SiteSession::Create(SessionOptions(name), &phased, &trainer);
      result = session.ok() ? (*session)->Run() : session.status();
    });
  }
  for (std::thread& t : sites) t.join();
  for (const Status& st : results) RETURN_IF_ERROR(st);
  return absl::OkStatus();
}

void WaitForClose(int fd) {
  char c;
  while (read(fd, &c, 1) > 0) {
  }
}

// Site mode's forked process: the coordinator and the other sites, until the measuring process
// closes `done`.
Status CoordinatorAndOthers(int64_t model_bytes, bool secure, int rounds, int port_fd,
                            int done_fd) {
  ASSIGN_OR_RETURN(auto coordinator,
                   CoordinatorSide::Start(model_bytes, secure, rounds, kSiteModeSites));
  const uint32_t max_chunk = coordinator->engine()->max_chunk_bytes();
  const int msg[2] = {coordinator->port(), static_cast<int>(max_chunk)};
  if (write(port_fd, msg, sizeof(msg)) != sizeof(msg)) return absl::InternalError("pipe");
  close(port_fd);
  const size_t n = static_cast<size_t>(LayoutOfBytes(model_bytes).TotalElements());
  Status others = RunSites(msg[0], max_chunk, n, 1, kSiteModeSites, nullptr);
  WaitForClose(done_fd);
  coordinator->Stop();
  return others;
}

// What coordinator mode's site process tells the coordinator: a site's download began (kind 0)
// or its upload was answered (kind 1), in `round`. Smaller than PIPE_BUF, so writes from the
// site threads do not interleave.
struct SiteEvent {
  int32_t kind;
  int32_t round;
};

// Coordinator mode's forked process: all `sites` sites, once the coordinator's port arrives on
// `port_fd`; their events go to `event_fd`.
Status AllSites(int64_t model_bytes, int sites, int port_fd, int event_fd) {
  int msg[2] = {0, 0};
  if (read(port_fd, msg, sizeof(msg)) != sizeof(msg)) {
    return absl::UnavailableError("the coordinator did not start");
  }
  const size_t n = static_cast<size_t>(LayoutOfBytes(model_bytes).TotalElements());
  PhaseEnd on_end = [event_fd](const char* phase, uint64_t round) {
    const std::string p = phase;
    if (p != "wait" && p != "upload") return;
    const SiteEvent e{p == "wait" ? 0 : 1, static_cast<int32_t>(round)};
    (void)!write(event_fd, &e, sizeof(e));
  };
  return RunSites(msg[0], static_cast<uint32_t>(msg[1]), n, 0, sites, on_end);
}

double LoadAverage() {
  double load[3] = {0, 0, 0};
  return getloadavg(load, 3) < 0 ? -1 : load[0];
}

// This process as the coordinator alone, the sites in a forked one.
int CoordinatorMode(int64_t model_bytes, bool secure, int rounds, int sites) {
  int port_pipe[2], event_pipe[2];
  if (pipe(port_pipe) != 0 || pipe(event_pipe) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) {  // before any thread of this process
    close(port_pipe[1]);
    close(event_pipe[0]);
    Status st = AllSites(model_bytes, sites, port_pipe[0], event_pipe[1]);
    if (!st.ok()) std::fprintf(stderr, "sites: %s\n", st.ToString().c_str());
    std::_Exit(st.ok() ? 0 : 1);
  }
  close(port_pipe[0]);
  close(event_pipe[1]);
  const double m = static_cast<double>(LayoutOfBytes(model_bytes).TotalElements()) * 4;
  Marks marks;
  auto coordinator = CoordinatorSide::Start(model_bytes, secure, rounds, sites);
  if (!coordinator.ok()) {
    std::fprintf(stderr, "coordinator: %s\n", coordinator.status().ToString().c_str());
    close(port_pipe[1]);
    waitpid(child, nullptr, 0);
    return 1;
  }
  RoundEngine* engine = (*coordinator)->engine();
  marks.Mark("start");
  const int msg[2] = {(*coordinator)->port(), static_cast<int>(engine->max_chunk_bytes())};
  if (write(port_pipe[1], msg, sizeof(msg)) != sizeof(msg)) return 1;
  close(port_pipe[1]);
  bool complete = true;
  for (int r = 1; r <= rounds && complete; ++r) {
    marks.set_round(static_cast<uint64_t>(r));
    bool downloading = false;
    int uploaded = 0;
    SiteEvent e;
    while (uploaded < sites) {
      if (read(event_pipe[0], &e, sizeof(e)) != sizeof(e)) {
        complete = false;  // the sites are gone
        break;
      }
      if (e.round != r) continue;
      if (e.kind == 0 && !downloading) {
        downloading = true;
        marks.Mark("wait");
      }
      if (e.kind == 1) ++uploaded;
    }
    if (!complete) break;
    marks.Mark("uploads");
    while (engine->completed_round() < r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    marks.Mark("aggregate");
  }
  int child_status = 0;
  waitpid(child, &child_status, 0);
  (*coordinator)->Stop();
  coordinator->reset();
  // A restart over the same state: the last checkpoint read back and served from its file.
  marks.Mark("stopped");
  StatusOr<std::unique_ptr<RoundEngine>> resumed = CoordinatorSide::Resume(secure, rounds, sites);
  const bool resumed_ok = resumed.ok() && (*resumed)->completed_round() == rounds;
  if (!resumed.ok()) {
    std::fprintf(stderr, "resume: %s\n", resumed.status().ToString().c_str());
  } else if (!resumed_ok) {
    std::fprintf(stderr, "resume: at round %lld, not %d\n",
                 static_cast<long long>((*resumed)->completed_round()), rounds);
  }
  marks.Mark("resume");
  std::printf(
      "site_memory_bench: the coordinator alone; M = %.0f MB, %s, %d rounds, %d sites; load "
      "average %.2f; bound 2*M + 200 MB = %.0f MB\n",
      m / 1e6, secure ? "secure" : "plaintext", rounds, sites, LoadAverage(),
      (2 * m + 200e6) / 1e6);
  marks.Print(m);
  const bool child_ok = WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0;
  return complete && child_ok && resumed_ok ? 0 : 1;
}

// This process as site-0, the coordinator and the other sites in a forked one.
int SiteMode(int64_t model_bytes, bool secure, int rounds) {
  int port_pipe[2], done_pipe[2];
  if (pipe(port_pipe) != 0 || pipe(done_pipe) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) {  // before any thread of this process: the coordinator's own
    close(port_pipe[0]);
    close(done_pipe[1]);
    Status st = CoordinatorAndOthers(model_bytes, secure, rounds, port_pipe[1], done_pipe[0]);
    if (!st.ok()) std::fprintf(stderr, "coordinator side: %s\n", st.ToString().c_str());
    std::_Exit(st.ok() ? 0 : 1);
  }
  close(port_pipe[1]);
  close(done_pipe[0]);
  int msg[2] = {0, 0};
  if (read(port_pipe[0], msg, sizeof(msg)) != sizeof(msg)) {
    std::fprintf(stderr, "the coordinator did not start\n");
    return 1;
  }
  const ModelLayout layout = LayoutOfBytes(model_bytes);
  const double m = static_cast<double>(layout.TotalElements()) * 4;
  Marks marks;
  Status st;
  {
    FixedUpdateTrainer fixed(Update(static_cast<size_t>(layout.TotalElements())), kExamples);
    MeasuredTrainer trainer(&fixed, &marks);
    auto grpc_link = SiteLinkTo(msg[0], static_cast<uint32_t>(msg[1]), "site-0");
    if (!grpc_link.ok()) {
      std::fprintf(stderr, "%s\n", grpc_link.status().ToString().c_str());
      return 1;
    }
    PhaseLink link(grpc_link->get(), [&marks](const char* phase, uint64_t round) {
      marks.set_round(round);
      marks.Mark(phase);
    });
    marks.Mark("start");
    auto session = SiteSession::Create(SessionOptions("site-0"), &link, &trainer);
    st = session.ok() ? (*session)->Run() : session.status();
    marks.Mark("end");
  }
  close(done_pipe[1]);
  int child_status = 0;
  waitpid(child, &child_status, 0);
  std::printf("site_memory_bench: M = %.0f MB, %s, %d rounds, %d sites; load average %.2f\n",
              m / 1e6, secure ? "secure" : "plaintext", rounds, kSiteModeSites, LoadAverage());
  marks.Print(m);
  if (!st.ok()) std::fprintf(stderr, "site-0: %s\n", st.ToString().c_str());
  const bool child_ok = WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0;
  return st.ok() && child_ok ? 0 : 1;
}

int Main(int argc, char** argv) {
  const int64_t mb = argc > 1 ? std::atoll(argv[1]) : 250;
  const bool secure = argc > 2 && std::atoi(argv[2]) != 0;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 2;
  const int sites = argc > 4 ? std::atoi(argv[4]) : 0;
  if (secure && sites > 0 && sites < 3) {
    std::fprintf(stderr, "secure aggregation needs at least 3 sites (as hansa-coordinator)\n");
    return 2;
  }
  const int64_t model_bytes = mb * 1000000;
  g_dir = (std::filesystem::temp_directory_path() /
           absl::StrCat("hansa-site-memory-bench-", ::getpid()))
              .string();
  ProvisionRequest req;
  req.out_dir = g_dir + "/kits";
  req.federation = "bench";
  req.coordinator = {"coordinator", "DE", "Bench Coordinator"};
  for (int i = 0; i < std::max(sites, kSiteModeSites); ++i) {
    req.sites.push_back({absl::StrCat("site-", i), "FR", absl::StrCat("Bench Site ", i)});
  }
  if (Status st = WriteStartupKits(req).status(); !st.ok()) {
    std::fprintf(stderr, "provision: %s\n", st.ToString().c_str());
    return 1;
  }
  const int rc = sites > 0 ? CoordinatorMode(model_bytes, secure, rounds, sites)
                           : SiteMode(model_bytes, secure, rounds);
  std::filesystem::remove_all(g_dir);
  return rc;
}

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  hansa::KeepOpenSslUntilExit();  // gRPC threads may outlive main (common/net/rpc.h)
  return hansa::Main(argc, argv);
}
