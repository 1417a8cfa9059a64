// One site's own peak memory through whole rounds, phase by phase: the site conversation of
// hansa-client (client/site_session.h) over loopback mutual TLS 1.3 against the real
// coordinator, which runs in a forked process together with the cohort's two other sites, so that
// this process holds the measured site alone. The site trains with a FixedUpdateTrainer (its
// fixed update stands for the trained weights a real trainer holds).
//
// Around each phase VmHWM is reset (/proc/self/clear_refs) and read back, through a SiteLink
// and a LocalTrainer that wrap the real ones:
//   wait       from the last mark to the download: polls, consent, SecAgg+ key stages
//   download   the global model's payload arriving (Download)
//   decode     the payload decoded and checked, up to the trainer being called
//   update     training and the host update handed over (HostUpdate)
//   protect    clipping, encoding, masking (secure) and hashing, up to the upload's start
//   upload     the update streamed in chunks (Upload)
// Issue 19's bound for a site is 3*M + 200 MB for a model of M bytes.
//
//   site_memory_bench [model MB, default 250] [secure 0|1, default 0] [rounds, default 2]
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
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

constexpr int kSites = 3;  // SecAgg+ needs three
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
    rows_.push_back({round_, phase, ProcStatusBytes("VmHWM"), ProcStatusBytes("VmRSS")});
    reset_ok_ = ResetPeakRss() && reset_ok_;
  }
  void set_round(uint64_t r) { round_ = r; }
  void Print(double model_bytes) const {
    std::printf("%-5s %-10s %12s %12s %10s\n", "round", "phase", "peak_MB", "rss_end_MB", "peak/M");
    for (const Row& r : rows_) {
      std::printf("%-5llu %-10s %12.0f %12.0f %10.2f\n", static_cast<unsigned long long>(r.round),
                  r.phase.c_str(), r.hwm / 1e6, r.rss / 1e6, r.hwm / model_bytes);
    }
    if (!reset_ok_) std::printf("(VmHWM could not be reset: peaks are the process lifetime's)\n");
  }

 private:
  struct Row {
    uint64_t round;
    std::string phase;
    double hwm, rss;
  };
  std::vector<Row> rows_;
  uint64_t round_ = 0;
  bool reset_ok_ = true;
};

class MeasuredLink final : public SiteLink {
 public:
  MeasuredLink(SiteLink* inner, Marks* marks) : inner_(inner), marks_(marks) {}
  Status Connect(absl::Duration timeout) override { return inner_->Connect(timeout); }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest& r) override { return inner_->Join(r); }
  StatusOr<v1::Task> NextTask(absl::Duration wait) override { return inner_->NextTask(wait); }
  StatusOr<std::shared_ptr<const std::string>> Download(const v1::RoundPlan& plan,
                                                        uint64_t max_model_bytes) override {
    marks_->set_round(plan.round());
    marks_->Mark("wait");
    auto payload = inner_->Download(plan, max_model_bytes);
    marks_->Mark("download");
    return payload;
  }
  Status RespondToPlan(const v1::PlanResponse& r) override { return inner_->RespondToPlan(r); }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    marks_->Mark("protect");
    auto reply = inner_->Upload(plan, header, pieces);
    marks_->Mark("upload");
    return reply;
  }
  Status SubmitSecAgg(const v1::SecAggSubmission& s) override { return inner_->SubmitSecAgg(s); }
  Status ReportMetrics(const v1::MetricsReport& r) override { return inner_->ReportMetrics(r); }
  uint32_t max_chunk_bytes() const override { return inner_->max_chunk_bytes(); }
  void Stop() override { inner_->Stop(); }

 private:
  SiteLink* const inner_;
  Marks* const marks_;
};

class MeasuredTrainer final : public LocalTrainer {
 public:
  MeasuredTrainer(LocalTrainer* inner, Marks* marks) : inner_(inner), marks_(marks) {}
  StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& global) override {
    marks_->Mark("decode");
    return inner_->Train(plan, global);
  }
  StatusOr<std::vector<float>> HostUpdate(const Model& global) override {
    auto update = inner_->HostUpdate(global);
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

// The forked process: the coordinator and the other sites, until the measuring process closes
// `done`.
Status Coordinator(int64_t model_bytes, bool secure, int rounds, int port_fd, int done_fd) {
  ASSIGN_OR_RETURN(TlsFiles tls, KitTls("coordinator"));
  Model initial;
  initial.layout = LayoutOfBytes(model_bytes);
  initial.values.assign(static_cast<size_t>(initial.layout.TotalElements()), 0.01f);
  const size_t n = initial.values.size();
  EngineOptions o;
  o.federation = "bench";
  o.coordinator_country = "DE";
  o.state_dir = g_dir + "/state";
  o.model = "bench";
  for (int i = 0; i < kSites; ++i) o.allowed_sites.push_back(absl::StrCat("site-", i));
  o.rounds = rounds;
  o.min_sites = kSites;
  o.wait_for_sites = absl::Minutes(2);
  o.upload_timeout = absl::Minutes(10);
  o.evaluate_timeout = absl::Minutes(2);
  o.site_idle = absl::Minutes(10);
  o.secure.enabled = secure;
  ASSIGN_OR_RETURN(std::unique_ptr<RoundEngine> engine, RoundEngine::Create(o, initial));
  initial = Model();
  CoordinatorService service(engine.get());
  int port = 0;
  ASSIGN_OR_RETURN(std::unique_ptr<grpc::Server> server,
                   StartServer("127.0.0.1:0", tls, &service, engine->max_chunk_bytes(), &port));
  std::thread run([&] { (void)engine->Run(); });
  const uint32_t max_chunk = engine->max_chunk_bytes();
  const int msg[2] = {port, static_cast<int>(max_chunk)};
  if (write(port_fd, msg, sizeof(msg)) != sizeof(msg)) return absl::InternalError("pipe");
  close(port_fd);
  std::vector<Status> others(kSites);
  std::vector<std::thread> sites;
  for (int i = 1; i < kSites; ++i) {
    sites.emplace_back([&, i] {
      const std::string name = absl::StrCat("site-", i);
      FixedUpdateTrainer trainer(Update(n), kExamples);
      auto link = SiteLinkTo(port, max_chunk, name);
      if (!link.ok()) {
        others[i] = link.status();
        return;
      }
      auto session = SiteSession::Create(SessionOptions(name), link->get(), &trainer);
      others[i] = session.ok() ? (*session)->Run() : session.status();
    });
  }
  for (std::thread& t : sites) t.join();
  char c;
  while (read(done_fd, &c, 1) > 0) {
  }
  engine->Shutdown();
  run.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  for (const Status& st : others) RETURN_IF_ERROR(st);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  const int64_t mb = argc > 1 ? std::atoll(argv[1]) : 250;
  const bool secure = argc > 2 && std::atoi(argv[2]) != 0;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 2;
  const int64_t model_bytes = mb * 1000000;
  g_dir = (std::filesystem::temp_directory_path() /
           absl::StrCat("hansa-site-memory-bench-", ::getpid()))
              .string();
  ProvisionRequest req;
  req.out_dir = g_dir + "/kits";
  req.federation = "bench";
  req.coordinator = {"coordinator", "DE", "Bench Coordinator"};
  for (int i = 0; i < kSites; ++i) {
    req.sites.push_back({absl::StrCat("site-", i), "FR", absl::StrCat("Bench Site ", i)});
  }
  if (Status st = WriteStartupKits(req).status(); !st.ok()) {
    std::fprintf(stderr, "provision: %s\n", st.ToString().c_str());
    return 1;
  }
  int port_pipe[2], done_pipe[2];
  if (pipe(port_pipe) != 0 || pipe(done_pipe) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) {  // before any thread of this process: the coordinator's own
    close(port_pipe[0]);
    close(done_pipe[1]);
    Status st = Coordinator(model_bytes, secure, rounds, port_pipe[1], done_pipe[0]);
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
    MeasuredLink link(grpc_link->get(), &marks);
    marks.Mark("start");
    auto session = SiteSession::Create(SessionOptions("site-0"), &link, &trainer);
    st = session.ok() ? (*session)->Run() : session.status();
    marks.Mark("end");
  }
  close(done_pipe[1]);
  int child_status = 0;
  waitpid(child, &child_status, 0);
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  std::printf("site_memory_bench: M = %.0f MB, %s, %d rounds, %d sites; load average %.2f\n",
              m / 1e6, secure ? "secure" : "plaintext", rounds, kSites, load[0]);
  marks.Print(m);
  if (!st.ok()) std::fprintf(stderr, "site-0: %s\n", st.ToString().c_str());
  const bool child_ok = WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0;
  std::filesystem::remove_all(g_dir);
  return st.ok() && child_ok ? 0 : 1;
}

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) { return hansa::Main(argc, argv); }
