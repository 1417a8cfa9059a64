// Model transfer over loopback mutual TLS 1.3 through the real coordinator: RoundEngine +
// CoordinatorService + StartServer, certificates from a freshly provisioned federation, and
// sites speaking the same RPCs as hansa-client (client/site_session.h) in the same process.
//
//   - Download/model_mb:M          one site streams the global model (DownloadModel), hashing
//                                  and assembling it as the client does. MB/s (1 MB = 1e6 B).
//   - Upload/model_mb:M/sites:N    N sites at once stream an update (UploadUpdate: header chunk,
//                                  then 1 MiB data chunks) that the engine folds into the round's
//                                  sum as it arrives. MB/s of update bytes over the wall time
//                                  from the first stream opening to the last reply.
//   - UploadDirect/...             the same uploads handed to the engine without gRPC or TLS
//                                  (RoundEngine::BeginUpload + UploadSink::Write): what the
//                                  coordinator's own work costs; the difference is transport.
//   - Sha256                       single-core SHA-256, which both ends pay on every byte.
//   - Round/params_m:P/sites:N/secure:S  N sites take part in whole rounds as hansa-client
//                                  does (consent; with S, the SecAgg+ stages and a masked
//                                  upload; download, upload, evaluation report) with a fixed
//                                  update instead of training. Seconds per round, from the
//                                  sites starting it to the published model; secure against
//                                  plaintext is the price of secure aggregation.
//   - Round/.../memory:1           a 1 GB model (250M parameters), 3 sites, one round, with
//                                  peak RSS: rss_before_GB as the round starts,
//                                  peak_rss_upload_GB until the last upload is in,
//                                  rss_uploaded_GB then, peak_rss_unmask_GB through the
//                                  unmasking (secure), the decoding, the server step and the
//                                  checkpoint. The sites share the process (see BM_Round).
//
// Transfers also report where the time went (ReportUsage): process CPU per wall second, user
// and system CPU seconds per GB, page faults and context switches per MB. The 1 GB uploads
// (1 and 3 sites) report the process's peak RSS around the upload (VmHWM, reset just before)
// and through the round's server step: the coordinator holds the global model once (its encoded
// payload, whose data the engine views in place) and the double-precision sum, while each site
// streams from an O(chunk) generator, so the figure is the coordinator's. Issue 19's bound is
// 2*M + 200 MB; rss_before_GB is the payload (M) plus the process's own.
//
//   transfer_bench --benchmark_format=json
#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_engine.h"
#include "client/link/grpc_link.h"
#include "client/local_trainer.h"
#include "client/site_session.h"
#include "common/crypto/sha256.h"
#include "common/logging/logging.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/startup_kit.h"
#include "common/secagg/client.h"
#include "common/tensor/safetensors.h"
#include "common/tensor/tensor.h"
#include "coordinator/round_engine.h"
#include "coordinator/service.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace hansa {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kChunkBytes = size_t{1} << 20;  // the default chunk size
constexpr int kTensors = 4;
constexpr int64_t kColumns = 1000;
constexpr uint64_t kExamples = 100;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Process-wide resource use (every thread of both ends), for timing splits without a profiler.
struct Usage {
  double user = 0, sys = 0;     // CPU seconds
  double minor_faults = 0;      // pages first touched: fresh buffers
  double context_switches = 0;  // voluntary + involuntary: thread hand-offs and preemption

  static Usage Now() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
    return {s(u.ru_utime), s(u.ru_stime), static_cast<double>(u.ru_minflt),
            static_cast<double>(u.ru_nvcsw + u.ru_nivcsw)};
  }
  Usage operator-(const Usage& o) const {
    return {user - o.user, sys - o.sys, minor_faults - o.minor_faults,
            context_switches - o.context_switches};
  }
  Usage& operator+=(const Usage& o) {
    user += o.user, sys += o.sys, minor_faults += o.minor_faults,
        context_switches += o.context_switches;
    return *this;
  }
};

// Counters that say where the time went: CPU per wall second (near the core count means
// CPU-bound), user and system CPU seconds per GB moved, page faults and context switches per MB.
void ReportUsage(benchmark::State& state, const Usage& u, double wall, double bytes) {
  state.counters["cpu_per_wall"] = (u.user + u.sys) / wall;
  state.counters["user_s_per_GB"] = u.user / (bytes / 1e9);
  state.counters["sys_s_per_GB"] = u.sys / (bytes / 1e9);
  state.counters["faults_per_MB"] = u.minor_faults / (bytes / 1e6);
  state.counters["switches_per_MB"] = u.context_switches / (bytes / 1e6);
}

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); -1 when unavailable.
double ProcStatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) * 1024;
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0). False when the kernel refuses.
bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// A float32 model of about `bytes` bytes: kTensors tensors of [rows, kColumns].
ModelLayout LayoutOfBytes(int64_t bytes) {
  int64_t rows = bytes / 4 / kTensors / kColumns;
  std::vector<TensorSpec> specs;
  for (int i = 0; i < kTensors; ++i) {
    specs.push_back({"layer" + std::to_string(i) + ".weight", DType::kF32, {rows, kColumns}});
  }
  return ModelLayout(std::move(specs));
}

// An update payload (safetensors) produced chunk by chunk from a repeating pattern, so a site
// needs O(chunk) memory whatever the model size. Immutable; shared by all site threads.
class PayloadSource {
 public:
  explicit PayloadSource(const ModelLayout& layout)
      : header_(EncodeSafetensorsHeader(layout, {})),
        data_bytes_(static_cast<uint64_t>(layout.TotalElements()) * 4) {
    std::vector<float> period(kPeriodBytes / 4);
    for (size_t i = 0; i < period.size(); ++i) period[i] = (static_cast<float>(i) - 512) * 1e-6f;
    pattern_.resize(kPeriodBytes + kChunkBytes * 4);
    for (size_t off = 0; off < pattern_.size(); off += kPeriodBytes) {
      std::memcpy(&pattern_[off], period.data(), std::min(kPeriodBytes, pattern_.size() - off));
    }
    Sha256Hasher hasher;
    std::string chunk;
    for (uint64_t off = 0; off < size(); off += kChunkBytes) {
      Read(off, std::min<uint64_t>(kChunkBytes, size() - off), &chunk);
      hasher.Update(chunk);
    }
    sha256_ = ToHex(hasher.Finish());
  }

  uint64_t size() const { return header_.size() + data_bytes_; }
  const std::string& sha256() const { return sha256_; }

  // Bytes [offset, offset + len) of the payload into *out; len <= 4 chunks.
  void Read(uint64_t offset, size_t len, std::string* out) const {
    out->resize(len);
    char* p = out->data();
    while (len > 0 && offset < header_.size()) {
      size_t n = std::min<uint64_t>(len, header_.size() - offset);
      std::memcpy(p, header_.data() + offset, n);
      p += n, offset += n, len -= n;
    }
    if (len > 0) std::memcpy(p, &pattern_[(offset - header_.size()) % kPeriodBytes], len);
  }

 private:
  static constexpr size_t kPeriodBytes = 4096;
  std::string header_;
  uint64_t data_bytes_;
  std::vector<char> pattern_;
  std::string sha256_;
};

struct Site {
  std::string name;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Coordinator::Stub> stub;  // for the streamed plaintext upload
  std::unique_ptr<GrpcSiteLink> link;           // every other call
  // Whole rounds: the site conversation with a fixed update (StartSession).
  std::unique_ptr<FixedUpdateTrainer> trainer;
  std::unique_ptr<SiteSession> session;
  uint64_t uploaded_round = 0;
};

// A provisioned federation with a running coordinator on 127.0.0.1 and `sites` joined sites.
class Federation {
 public:
  // Transfers measure the plaintext path; secure aggregation's own costs are in secagg_bench
  // and in the whole-round benchmark, which passes `secure`.
  static StatusOr<std::unique_ptr<Federation>> Create(int64_t model_bytes, int sites,
                                                      bool secure = false) {
    std::unique_ptr<Federation> f(new Federation());
    f->model_bytes_ = model_bytes;
    f->secure_ = secure;
    f->dir_ = (std::filesystem::temp_directory_path() /
               absl::StrCat("hansa-transfer-bench-", ::getpid(), "-", model_bytes, "-", sites))
                  .string();
    std::filesystem::remove_all(f->dir_);
    RETURN_IF_ERROR(f->Provision(sites));
    RETURN_IF_ERROR(f->StartCoordinator(sites));
    for (int i = 0; i < sites; ++i) RETURN_IF_ERROR(f->ConnectSite(i));
    return f;
  }

  ~Federation() {
    if (engine_) engine_->Shutdown();
    if (run_thread_.joinable()) run_thread_.join();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    sites_.clear();
    server_.reset();
    service_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  int64_t model_bytes() const { return model_bytes_; }
  bool secure() const { return secure_; }
  int num_sites() const { return static_cast<int>(sites_.size()); }
  Site& site(int i) { return *sites_[i]; }
  RoundEngine* engine() { return engine_.get(); }
  const PayloadSource& payload() const { return *payload_; }

  // One long poll for the site's next task, as hansa-client asks.
  static StatusOr<v1::Task> NextTask(Site& site) { return site.link->NextTask(absl::Seconds(20)); }

  // Long-polls until the site is asked to train, reporting metrics for evaluations meanwhile.
  StatusOr<v1::RoundPlan> WaitForTraining(Site& site) {
    for (int polls = 0; polls < 100; ++polls) {
      ASSIGN_OR_RETURN(v1::Task task, NextTask(site));
      if (task.kind() == v1::Task::TRAIN && task.plan().round() > site.uploaded_round) {
        return task.plan();
      }
      if (task.kind() == v1::Task::EVALUATE) RETURN_IF_ERROR(Report(site, task.plan()));
      if (task.kind() == v1::Task::DONE) return absl::OutOfRangeError("federation finished");
    }
    return absl::DeadlineExceededError("no training task after 100 polls");
  }

  // The current global model's plan, from an evaluation or training task.
  StatusOr<v1::RoundPlan> CurrentPlan(Site& site) {
    for (int polls = 0; polls < 10; ++polls) {
      ASSIGN_OR_RETURN(v1::Task task, NextTask(site));
      if (task.has_plan() && !task.plan().global_model_sha256().empty()) return task.plan();
    }
    return absl::DeadlineExceededError("no plan after 10 polls");
  }

  // The site conversation of `site` with `update` as its trained update (a fresh one each
  // time: its SecAgg+ keys and model cache start empty).
  Status StartSession(Site& site, const std::vector<float>& update) const {
    site.trainer = std::make_unique<FixedUpdateTrainer>(update, kExamples);
    SiteSessionOptions o;
    o.name = site.name;
    o.policy.allowed_models = {"bench"};
    o.policy.require_secure_aggregation = false;
    o.policy.min_cohort = 1;
    o.reconnect_seconds = 0;
    ASSIGN_OR_RETURN(site.session, SiteSession::Create(o, site.link.get(), site.trainer.get()));
    return absl::OkStatus();
  }

  // An evaluation report for `plan`, as a site sends after evaluating.
  Status Report(Site& site, const v1::RoundPlan& plan) const {
    v1::MetricsReport r;
    r.set_round(plan.round());
    r.set_num_examples(10);
    r.set_accuracy(0.5);
    r.set_loss(1.0);
    return site.link->ReportMetrics(r);
  }

 private:
  Federation() = default;

  Status Provision(int sites) {
    ProvisionRequest req;
    req.out_dir = dir_ + "/kits";
    req.federation = "bench";
    req.coordinator = {"coordinator", "DE", "Bench Coordinator"};
    for (int i = 0; i < sites; ++i) {
      req.sites.push_back({absl::StrCat("site-", i), "FR", absl::StrCat("Bench Site ", i)});
      site_names_.push_back(absl::StrCat("site-", i));
    }
    return WriteStartupKits(req).status();
  }

  StatusOr<TlsFiles> KitTls(const std::string& kit) {
    std::string d = dir_ + "/kits/" + kit;
    return LoadTlsFiles(d + "/cert.pem", d + "/key.pem", d + "/ca.pem");
  }

  Status StartCoordinator(int sites) {
    ASSIGN_OR_RETURN(TlsFiles tls, KitTls("coordinator"));
    Model initial;
    initial.layout = LayoutOfBytes(model_bytes_);
    payload_ = std::make_unique<PayloadSource>(initial.layout);
    initial.values.assign(static_cast<size_t>(initial.layout.TotalElements()), 0.01f);
    const EngineOptions o = BenchEngineOptions(dir_ + "/state", site_names_, 1000, secure_);
    ASSIGN_OR_RETURN(engine_, RoundEngine::Create(o, initial));
    initial = Model();  // the engine holds its own copy; drop ours
    service_ = std::make_unique<CoordinatorService>(engine_.get());
    ASSIGN_OR_RETURN(server_, StartServer("127.0.0.1:0", tls, service_.get(),
                                          engine_->max_chunk_bytes(), &port_));
    run_thread_ = std::thread([this] {
      Status st = engine_->Run();
      if (!st.ok() && !absl::IsCancelled(st)) {
        std::fprintf(stderr, "transfer_bench: engine stopped: %s\n", st.ToString().c_str());
      }
    });
    return absl::OkStatus();
  }

  Status ConnectSite(int i) {
    auto site = std::make_unique<Site>();
    site->name = site_names_[i];
    ASSIGN_OR_RETURN(TlsFiles tls, KitTls("sites/" + site->name));
    ASSIGN_OR_RETURN(auto creds, MakeClientCredentials(tls));
    grpc::ChannelArguments args = SiteChannelArguments(engine_->max_chunk_bytes());
    site->channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_), creds, args);
    site->stub = v1::Coordinator::NewStub(site->channel);
    GrpcLinkOptions link;
    link.coordinator = absl::StrCat("127.0.0.1:", port_);
    link.client_version = "transfer_bench";
    site->link = std::make_unique<GrpcSiteLink>(site->channel, link);
    RETURN_IF_ERROR(site->link->Join(v1::JoinRequest()).status());
    sites_.push_back(std::move(site));
    return absl::OkStatus();
  }

  int64_t model_bytes_ = 0;
  bool secure_ = false;
  std::string dir_;
  std::vector<std::string> site_names_;
  std::unique_ptr<PayloadSource> payload_;
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread run_thread_;
  std::vector<std::unique_ptr<Site>> sites_;
};

// One federation at a time: a new (model size, sites) pair replaces the previous one, so a
// 1 GB coordinator never shares the process with another.
Federation* GetFederation(int64_t model_bytes, int sites, std::string* error, bool secure = false) {
  static std::unique_ptr<Federation> current;
  if (current && current->model_bytes() == model_bytes && current->num_sites() == sites &&
      current->secure() == secure) {
    return current.get();
  }
  current.reset();
  StatusOr<std::unique_ptr<Federation>> f = Federation::Create(model_bytes, sites, secure);
  if (!f.ok()) {
    *error = f.status().ToString();
    return nullptr;
  }
  current = *std::move(f);
  return current.get();
}

// --- Download -------------------------------------------------------------------------------

void BM_Download(benchmark::State& state) {
  const int64_t model_bytes = state.range(0) * 1000000;
  std::string error;
  Federation* f = GetFederation(model_bytes, 1, &error);
  if (!f) return state.SkipWithError(error.c_str());
  StatusOr<v1::RoundPlan> plan = f->CurrentPlan(f->site(0));
  if (!plan.ok()) return state.SkipWithError(plan.status().ToString().c_str());
  Usage used;
  double wall = 0;
  for (auto _ : state) {
    auto start = Clock::now();
    Usage before = Usage::Now();
    // Streamed, every chunk hashed and decoded into a fresh model, checked against the plan.
    Status st = f->site(0).link->Download(*plan, kDefaultMaxModelBytes).status();
    used += Usage::Now() - before;
    double s = Seconds(start, Clock::now());
    wall += s;
    if (!st.ok()) return state.SkipWithError(st.ToString().c_str());
    state.SetIterationTime(s);
  }
  const double bytes = static_cast<double>(plan->global_model_bytes()) * state.iterations();
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["MBps"] = bytes / wall / 1e6;
  state.counters["model_MB"] = plan->global_model_bytes() / 1e6;
  ReportUsage(state, used, wall, bytes);
}

// --- Upload ---------------------------------------------------------------------------------

v1::TransferHeader UploadHeader(const v1::RoundPlan& plan, const PayloadSource& source) {
  v1::TransferHeader h;
  h.set_round(plan.round());
  h.set_total_bytes(source.size());
  h.set_sha256(source.sha256());
  h.set_num_examples(kExamples);
  return h;
}

// UploadUpdate as a site sends it (client/link/grpc_link.cc): a header chunk, then data chunks,
// here made on the fly so that a 1 GB upload needs O(chunk) memory at the site.
Status UploadOverGrpc(Site& site, const v1::RoundPlan& plan, const PayloadSource& source) {
  auto ctx = ContextWithDeadline(600);
  v1::UploadReply reply;
  auto writer = site.stub->UploadUpdate(ctx.get(), &reply);
  v1::Chunk chunk;
  *chunk.mutable_header() = UploadHeader(plan, source);
  bool ok = writer->Write(chunk);
  for (uint64_t off = 0; ok && off < source.size(); off += kChunkBytes) {
    chunk.Clear();
    chunk.set_offset(off);
    source.Read(off, std::min<uint64_t>(kChunkBytes, source.size() - off), chunk.mutable_data());
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  RETURN_IF_ERROR(FromGrpc(writer->Finish(), "UploadUpdate"));
  if (reply.bytes() != source.size()) return absl::DataLossError("upload reply has wrong size");
  return absl::OkStatus();
}

// The same upload handed straight to the engine: no gRPC, TLS or protobuf.
Status UploadDirect(RoundEngine* engine, Site& site, const v1::RoundPlan& plan,
                    const PayloadSource& source) {
  ASSIGN_OR_RETURN(auto sink, engine->BeginUpload(site.name, UploadHeader(plan, source)));
  std::string chunk;
  for (uint64_t off = 0; off < source.size(); off += kChunkBytes) {
    source.Read(off, std::min<uint64_t>(kChunkBytes, source.size() - off), &chunk);
    RETURN_IF_ERROR(sink->Write(off, chunk));
  }
  return sink->Finish().status();
}

// Lets all sites start their uploads together.
class Barrier {
 public:
  explicit Barrier(int n) : left_(n) {}
  void ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    if (--left_ == 0) cv_.notify_all();
    cv_.wait(lock, [&] { return left_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

struct RoundTiming {
  double wall = 0;      // first upload start to last upload end
  Usage used;           // in that window (approximate at the edges)
  double peak_rss = 0;  // VmHWM when the last upload finished
};

// One round: every site waits for its training task, then all upload at once.
StatusOr<RoundTiming> UploadRound(Federation* f, bool direct) {
  const int n = f->num_sites();
  std::vector<Status> results(n);
  std::vector<Clock::time_point> starts(n), ends(n);
  Barrier ready(n);
  Usage at_start, at_end;
  double peak_at_end = 0;
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      Site& site = f->site(i);
      StatusOr<v1::RoundPlan> plan = f->WaitForTraining(site);
      Status accepted = plan.ok() ? f->engine()->Accept(site.name, *plan) : plan.status();
      ready.ArriveAndWait();
      if (!accepted.ok()) {
        results[i] = accepted;
        return;
      }
      if (i == 0) at_start = Usage::Now();
      starts[i] = Clock::now();
      results[i] = direct ? UploadDirect(f->engine(), site, *plan, f->payload())
                          : UploadOverGrpc(site, *plan, f->payload());
      ends[i] = Clock::now();
      // The last upload to finish closes the usage window at once: the engine's server step
      // (mean, new model, checkpoint) starts right after and is not part of the transfer.
      if (finished.fetch_add(1) + 1 == n) {
        at_end = Usage::Now();
        peak_at_end = ProcStatusBytes("VmHWM");
      }
      site.uploaded_round = plan->round();
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& st : results) RETURN_IF_ERROR(st);
  RoundTiming timing;
  timing.used = at_end - at_start;
  timing.peak_rss = peak_at_end;
  timing.wall = Seconds(*std::min_element(starts.begin(), starts.end()),
                        *std::max_element(ends.begin(), ends.end()));
  return timing;
}

void RunUploads(benchmark::State& state, bool direct) {
  const int64_t model_bytes = state.range(0) * 1000000;
  const int sites = static_cast<int>(state.range(1));
  const bool measure_memory = state.range(2) != 0;
  std::string error;
  Federation* f = GetFederation(model_bytes, sites, &error);
  if (!f) return state.SkipWithError(error.c_str());
  bool peak_reset = measure_memory && ResetPeakRss();
  double rss_before = ProcStatusBytes("VmRSS");
  Usage used;
  double wall = 0, peak_upload = 0;
  for (auto _ : state) {
    StatusOr<RoundTiming> t = UploadRound(f, direct);
    if (!t.ok()) return state.SkipWithError(t.status().ToString().c_str());
    used += t->used;
    peak_upload = std::max(peak_upload, t->peak_rss);
    wall += t->wall;
    state.SetIterationTime(t->wall);
  }
  const double bytes =
      static_cast<double>(f->payload().size()) * sites * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["MBps"] = bytes / wall / 1e6;
  state.counters["MBps_per_site"] = bytes / wall / 1e6 / sites;
  state.counters["model_MB"] = f->payload().size() / 1e6;
  state.counters["sites"] = sites;
  ReportUsage(state, used, wall, bytes);
  if (measure_memory) {
    // Peak while the sites uploaded (the sum, the global model and its payload, gRPC buffers).
    // Then the round's server step: mean, new model, checkpoint.
    const int64_t round = f->site(0).uploaded_round;
    auto give_up = Clock::now() + std::chrono::minutes(2);
    while (f->engine()->completed_round() < round && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    double peak_round = ProcStatusBytes("VmHWM");
    state.counters["rss_before_GB"] = rss_before / 1e9;
    state.counters["peak_rss_upload_GB"] = peak_upload / 1e9;
    state.counters["peak_rss_round_GB"] = peak_round / 1e9;
    state.counters["peak_reset"] = peak_reset ? 1 : 0;  // 0: VmHWM is the process lifetime's
  }
}

void BM_Upload(benchmark::State& state) { RunUploads(state, false); }
void BM_UploadDirect(benchmark::State& state) { RunUploads(state, true); }

void BM_Sha256(benchmark::State& state) {
  std::string data(64 << 20, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(Sha256(data));
  state.SetBytesProcessed(static_cast<int64_t>(data.size()) * state.iterations());
  state.counters["MBps"] = benchmark::Counter(static_cast<double>(data.size()) / 1e6,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// --- Whole rounds ---------------------------------------------------------------------------

// One site's part in `round` as hansa-client plays it: the project's site conversation
// (client/site_session.h) with a fixed update, task by task; returns once its update is in
// (plaintext) or it answered the unmasking request (secure). `train_us` adds the time of the
// training task (download, masking when secure, upload); `trained` runs once that task is done.
Status SiteRound(Site& site, uint64_t round, bool secure, std::atomic<int64_t>* train_us,
                 const std::function<void()>& trained) {
  for (int polls = 0; polls < 1000; ++polls) {
    ASSIGN_OR_RETURN(v1::Task task, Federation::NextTask(site));
    if (task.kind() == v1::Task::DONE) return absl::OutOfRangeError("federation finished");
    const bool ours = task.plan().round() == round;
    if (task.kind() != v1::Task::EVALUATE && !ours) continue;  // WAIT, or a round gone by
    const auto started = Clock::now();
    RETURN_IF_ERROR(site.session->Handle(task));
    if (task.kind() == v1::Task::TRAIN) {
      *train_us +=
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
      site.uploaded_round = round;
      trained();
      if (!secure) return absl::OkStatus();
    }
    if (task.kind() == v1::Task::SECAGG_UNMASK) return absl::OkStatus();
  }
  return absl::DeadlineExceededError(absl::StrCat(site.name, ": round ", round, " never ended"));
}

void BM_Round(benchmark::State& state) {
  const int64_t params = state.range(0) * 1000000;
  const int sites = static_cast<int>(state.range(1));
  const bool secure = state.range(2) != 0;
  const bool measure_memory = state.range(3) != 0;
  std::string error;
  Federation* f = GetFederation(params * 4, sites, &error, secure);
  if (!f) return state.SkipWithError(error.c_str());
  // A small update, well inside the clipping range: what a trained delta looks like.
  std::vector<float> update(static_cast<size_t>(LayoutOfBytes(params * 4).TotalElements()));
  for (size_t i = 0; i < update.size(); ++i)
    update[i] = 1e-4f * static_cast<float>(i % 200) - 0.01f;
  double wall = 0;
  std::atomic<int64_t> train_us{0};
  for (int i = 0; i < sites; ++i) {
    Status st = f->StartSession(f->site(i), update);
    if (!st.ok()) return state.SkipWithError(st.ToString().c_str());
  }
  // Memory (when asked): VmHWM reset as the round starts, read and reset again once the last
  // site's training task is done (its upload is in), read once more with the new model out.
  bool peak_reset = true;
  double rss_before = 0, rss_uploaded = 0, peak_upload = 0, peak_unmask = 0;
  for (auto _ : state) {
    const uint64_t round = static_cast<uint64_t>(f->engine()->completed_round()) + 1;
    if (measure_memory) {
      peak_reset = ResetPeakRss() && peak_reset;
      rss_before = std::max(rss_before, ProcStatusBytes("VmRSS"));
    }
    std::atomic<int> trained{0};
    auto on_trained = [&] {
      if (!measure_memory || trained.fetch_add(1) + 1 != sites) return;
      peak_upload = std::max(peak_upload, ProcStatusBytes("VmHWM"));
      rss_uploaded = std::max(rss_uploaded, ProcStatusBytes("VmRSS"));
      peak_reset = ResetPeakRss() && peak_reset;
    };
    auto start = Clock::now();
    std::vector<Status> results(sites);
    std::vector<std::thread> threads;
    for (int i = 0; i < sites; ++i) {
      threads.emplace_back(
          [&, i] { results[i] = SiteRound(f->site(i), round, secure, &train_us, on_trained); });
    }
    for (auto& t : threads) t.join();
    for (const Status& st : results) {
      if (!st.ok()) return state.SkipWithError(st.ToString().c_str());
    }
    auto give_up = Clock::now() + std::chrono::minutes(5);
    while (f->engine()->completed_round() < static_cast<int64_t>(round) && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    double s = Seconds(start, Clock::now());
    if (measure_memory) peak_unmask = std::max(peak_unmask, ProcStatusBytes("VmHWM"));
    wall += s;
    state.SetIterationTime(s);
  }
  if (measure_memory) {
    // The sites live in this process: rss_before holds their fixed updates and the bench's
    // (one each, and one more), besides the coordinator's payload; what the sites add while
    // downloading, encoding and masking shows in peak_rss_upload_GB against the plaintext run
    // of the same size. After the uploads the sites hold nothing more than at the start, so
    // peak_rss_unmask_GB - rss_uploaded_GB is the coordinator's: the unmasking (secure), the
    // mean, the server step and the checkpoint.
    state.counters["rss_before_GB"] = rss_before / 1e9;
    state.counters["peak_rss_upload_GB"] = peak_upload / 1e9;
    state.counters["rss_uploaded_GB"] = rss_uploaded / 1e9;
    state.counters["peak_rss_unmask_GB"] = peak_unmask / 1e9;
    state.counters["peak_reset"] = peak_reset ? 1 : 0;  // 0: VmHWM is the process lifetime's
  }
  state.counters["round_s"] = wall / static_cast<double>(state.iterations());
  // The training task at one site (download, encoding and masking when secure, upload; wall
  // time while the others share the cores): on separate machines the sites do this at once.
  state.counters["site_train_task_s"] =
      static_cast<double>(train_us.load()) / 1e6 / sites / static_cast<double>(state.iterations());
  state.counters["sites"] = sites;
  state.counters["params_M"] = static_cast<double>(params) / 1e6;
  state.counters["secure"] = secure ? 1 : 0;
}

// Arguments: model size in MB (1e6 bytes), sites, and whether to record peak memory.
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Download)
    ->ArgName("model_mb")
    ->Arg(100)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Upload)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({100, 1, 0})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UploadDirect)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({100, 1, 0})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Upload)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({100, 3, 0})
    ->Iterations(2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UploadDirect)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({100, 3, 0})
    ->Iterations(2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Download)
    ->ArgName("model_mb")
    ->Arg(1000)
    ->Iterations(2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Upload)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({1000, 1, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Upload)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({1000, 3, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UploadDirect)
    ->ArgNames({"model_mb", "sites", "memory"})
    ->Args({1000, 3, 0})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
// Millions of parameters, sites, secure. Plaintext and secure alternate, so a slow spell of
// the machine does not fall on one of them only.
BENCHMARK(BM_Round)
    ->ArgNames({"params_m", "sites", "secure", "memory"})
    ->Args({10, 10, 0, 0})
    ->Args({10, 10, 1, 0})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
// Issue 19's bound in secure mode: a 1 GB model (250M parameters), 3 sites, one round each,
// with peak memory; the plaintext round of the same size says what the sites add.
BENCHMARK(BM_Round)
    ->ArgNames({"params_m", "sites", "secure", "memory"})
    ->Args({250, 3, 0, 1})
    ->Args({250, 3, 1, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  hansa::KeepOpenSslUntilExit();  // gRPC threads may outlive main (common/net/rpc.h)
  hansa::InitLogging("transfer_bench",
                     std::getenv("HANSA_BENCH_LOG") ? std::getenv("HANSA_BENCH_LOG") : "warn");
  hansa::Status tls = hansa::EnforceTls13Only();
  if (!tls.ok()) {
    std::fprintf(stderr, "transfer_bench: %s\n", tls.ToString().c_str());
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
