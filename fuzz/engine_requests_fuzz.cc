// Every gRPC handler's request, driven through the RoundEngine entry point the handler calls
// (coordinator/service.cc is only the adapter): Join, GetTask, DownloadModel, UploadUpdate (its
// header, chunks and end), ReportMetrics, SubmitSecAgg and RespondToPlan, as any of the
// allowed sites a, b, c or an unknown z, in any order and with any request bytes.
//
// Each input gets a fresh engine as engine_test_setup.h makes them (a 2 x 3 all-ones model,
// sites a, b, c, one round, two sites needed, a stopped clock so that no deadline passes) over
// a state dir in a folder of its own (/dev/shm when there is one, else TMPDIR; removed at
// exit). The first byte picks plaintext or secure aggregation. The engine's driver thread runs
// until every site joined and the round's first task is out; then the rest of the input is a
// list of operations:
//   op byte, site byte, then for the ops that take a request: a length byte L and L bytes of
//   the request's protobuf (Download, RespondToPlan, BeginUpload's TransferHeader, a Chunk,
//   ReportMetrics, SubmitSecAgg). A few ops build what an honest site would send (accept the
//   plan, announce and send a real update) so that the engine's later checks are reached too.
// The driver thread runs on concurrently, as in the coordinator, so what it does after the last
// upload is not replayed exactly; the checks on the requests themselves are.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/time/clock.h"
#include "common/clock/clock.h"
#include "common/crypto/sha256.h"
#include "common/tensor/safetensors.h"
#include "coordinator/round_engine.h"
#include "fuzz/scratch_folder.h"
#include "google/protobuf/stubs/logging.h"
#include "spdlog/spdlog.h"

namespace {

namespace fs = std::filesystem;

const std::string& Folder() { return hansa::fuzz::ScratchFolder("hansa-engine-fuzz"); }

hansa::Model Initial() {
  hansa::Model m;
  m.layout =
      hansa::ModelLayout({{"w", hansa::DType::kF32, {2, 3}}, {"b", hansa::DType::kF32, {3}}});
  m.values.assign(m.layout.TotalElements(), 1.0f);
  return m;
}

hansa::EngineOptions Options(bool secure) {
  hansa::EngineOptions o;
  o.federation = "fuzz";
  o.state_dir = Folder() + "/state";
  o.allowed_sites = {"a", "b", "c"};
  o.rounds = 1;
  o.min_sites = 2;
  o.wait_for_sites = absl::Seconds(10);
  o.upload_timeout = absl::Seconds(3);
  o.evaluate_timeout = absl::Seconds(3);
  o.chunk_bytes = 64;
  o.max_chunk_bytes = 128;
  o.secure.enabled = secure;
  o.clock = std::make_shared<hansa::FakeClock>(absl::Now());
  return o;
}

// Reads the input front to back; past the end everything is zero.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::string_view Bytes() {
    const size_t n = std::min<size_t>(Byte(), size_ - std::min(at_, size_));
    std::string_view out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }
  template <typename Proto>
  Proto Message() {
    Proto p;
    const std::string_view bytes = Bytes();
    (void)p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    return p;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// One site's upload in progress, as the service's UpdateReader holds it.
struct Upload {
  std::unique_ptr<hansa::UploadSink> sink;
  std::string payload;  // what an honest site sends; empty for a fuzzed header
  uint64_t sent = 0;
};

class Run {
 public:
  explicit Run(bool secure) {
    std::error_code error;
    fs::remove_all(Folder() + "/state", error);
    auto engine = hansa::RoundEngine::Create(Options(secure), Initial());
    if (!engine.ok()) abort();
    engine_ = *std::move(engine);
    driver_ = std::thread([this] { (void)engine_->Run(); });
  }
  ~Run() {
    uploads_.clear();  // a sink must go before its engine
    engine_->Shutdown();
    driver_.join();
  }

  // Joins every allowed site and waits (real time) for the round's first task.
  bool Start() {
    for (const char* site : {"a", "b", "c"}) {
      if (!engine_->Join({site, "Org", "DE", "00", ""}).ok()) return false;
    }
    const absl::Time give_up = absl::Now() + absl::Seconds(60);  // a loaded machine is slow
    while (absl::Now() < give_up) {
      auto task = engine_->NextTask("a", absl::Milliseconds(5));
      if (!task.ok()) return false;
      if (task->kind() != hansa::v1::Task::WAIT) {
        plan_ = task->plan();
        return true;
      }
    }
    return false;
  }

  void Step(Input& in) {
    const uint8_t op = in.Byte();
    static const char* const kSites[] = {"a", "b", "c", "z"};
    const std::string site = kSites[in.Byte() % 4];
    hansa::RoundEngine& e = *engine_;
    switch (op % 13) {
      case 0: {
        static const char* const kCountries[] = {"DE", "US", "", "de"};
        (void)e.Join({site, "Org", kCountries[in.Byte() % 4], "00", ""});
        break;
      }
      case 1: {
        auto task = e.NextTask(site, absl::ZeroDuration());
        if (task.ok() && task->has_plan() && task->plan().round() > 0) plan_ = task->plan();
        break;
      }
      case 2: {
        auto request = in.Message<hansa::v1::DownloadRequest>();
        (void)e.Download(site, request.round(), request.model_sha256());
        break;
      }
      case 3:
        (void)e.Download(site, plan_.round(), plan_.global_model_sha256());
        break;
      case 4:
        (void)e.RespondToPlan(site, in.Message<hansa::v1::PlanResponse>());
        break;
      case 5:
        (void)e.Accept(site, plan_);
        break;
      case 6: {
        auto sink = e.BeginUpload(site, in.Message<hansa::v1::TransferHeader>());
        if (sink.ok()) uploads_[site] = Upload{*std::move(sink), "", 0};
        break;
      }
      case 7:
        HonestUpload(site, in);
        break;
      case 8: {  // a chunk as the stream carries it
        auto chunk = in.Message<hansa::v1::Chunk>();
        auto it = uploads_.find(site);
        if (it != uploads_.end()) (void)it->second.sink->Write(chunk.offset(), chunk.data());
        break;
      }
      case 9: {  // the next piece of the honest payload, of the size the input says
        auto it = uploads_.find(site);
        if (it == uploads_.end()) break;
        Upload& u = it->second;
        const std::string_view rest =
            std::string_view(u.payload).substr(std::min<uint64_t>(u.sent, u.payload.size()));
        const std::string_view piece = rest.substr(0, 1 + in.Byte());
        if (u.sink->Write(u.sent, piece).ok()) u.sent += piece.size();
        break;
      }
      case 10: {
        auto it = uploads_.find(site);
        if (it != uploads_.end()) (void)it->second.sink->Finish();
        break;
      }
      case 11:
        uploads_.erase(site);
        break;  // the stream broke off
      default:
        if (op & 0x80) {
          (void)e.SubmitSecAgg(site, in.Message<hansa::v1::SecAggSubmission>());
        } else {
          (void)e.ReportMetrics(site, in.Message<hansa::v1::MetricsReport>());
        }
        break;
    }
  }

 private:
  // Announces an update of every value `delta` (the plan's layout) with `examples`.
  void HonestUpload(const std::string& site, Input& in) {
    const float delta = static_cast<float>(static_cast<int8_t>(in.Byte())) / 16;
    const uint64_t examples = in.Byte();
    hansa::Model update = Initial();
    for (float& v : update.values) v = delta;
    std::string bytes = hansa::EncodeSafetensors(update);
    hansa::v1::TransferHeader header;
    header.set_round(plan_.round());
    header.set_num_examples(examples);
    header.set_total_bytes(bytes.size());
    header.set_sha256(hansa::ToHex(hansa::Sha256(bytes)));
    auto sink = engine_->BeginUpload(site, header);
    if (sink.ok()) uploads_[site] = Upload{*std::move(sink), std::move(bytes), 0};
  }

  std::unique_ptr<hansa::RoundEngine> engine_;
  std::thread driver_;
  hansa::v1::RoundPlan plan_;
  std::map<std::string, Upload> uploads_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {  // the engine's log lines and protobuf's UTF-8 complaints
    google::protobuf::SetLogHandler(nullptr);
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  if (size < 1 || size > 4096) return 0;
  Input in(data, size);
  Run run(in.Byte() & 1);
  if (!run.Start()) abort();  // a fresh engine always plans its first round
  for (int steps = 0; !in.done() && steps < 256; ++steps) run.Step(in);
  return 0;
}
