// RoundEngine with sites as threads: no transport, real state dir, timeouts on a stopped clock
// that a test moves past a deadline once only the deadline is left.
#include "coordinator/round_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/crypto/sha256.h"
#include "common/tensor/safetensors.h"
#include "tests/unit/coordinator/engine_test_setup.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

Model InitialModel() { return testing::OnesModel(50, 40); }

EngineOptions Options(const std::string& name) {
  EngineOptions o = testing::EngineTestOptions(name);
  o.clock = testing::StoppedClock();
  return o;
}

// What a fake site does with its update payload before and while uploading.
struct Behaviour {
  float delta = 0.0f;
  uint64_t examples = 100;
  // Returns the payload to send (may tamper), given the honest one.
  std::function<void(std::string* payload, v1::TransferHeader* header)> tamper{};
  bool die_half_way = false;
  size_t chunk = 1024;
  // > 0: each chunk is written as pieces of this many bytes, as the gRPC service hands over a
  // chunk read where it lies in gRPC's slices (UploadSink::Write with pieces).
  size_t piece = 0;
};

// Runs one site until DONE; records the statuses its upload produced.
class FakeSite {
 public:
  FakeSite(RoundEngine* engine, std::string name, Behaviour b)
      : engine_(engine), name_(std::move(name)), b_(std::move(b)) {}

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Join() { thread_.join(); }
  const std::string& name() const { return name_; }
  Status upload_status() const { return upload_status_; }
  std::atomic<int> uploads{0};         // attempted, whatever their outcome
  std::atomic<int> failed_uploads{0};  // of those, the ones that did not commit
  std::atomic<int> evaluations{0};     // reports the engine took

 private:
  void Loop() {
    SiteIdentity id{name_, "Org", "DE", "00"};
    ASSERT_TRUE(engine_->Join(id).ok());
    for (int i = 0; i < 500; ++i) {
      auto task = engine_->NextTask(name_, absl::Milliseconds(100));
      ASSERT_TRUE(task.ok()) << task.status();
      if (task->kind() == v1::Task::DONE) return;
      if (task->kind() == v1::Task::TRAIN) {
        if (failed_) {  // a site whose upload failed sits the round out
          absl::SleepFor(absl::Milliseconds(50));
          continue;
        }
        upload_status_ = Upload(task->plan());
        failed_ = !upload_status_.ok();
        if (failed_) ++failed_uploads;
        ++uploads;
      }
      if (task->kind() == v1::Task::EVALUATE) {
        v1::MetricsReport r;
        r.set_round(task->plan().round());
        r.set_num_examples(10);
        r.set_accuracy(0.5);
        r.set_loss(1.0);
        ASSERT_TRUE(engine_->ReportMetrics(name_, r).ok());
        ++evaluations;
      }
    }
  }

  Status Upload(const v1::RoundPlan& plan) {
    ASSIGN_OR_RETURN(auto payload,
                     engine_->Download(name_, plan.round(), plan.global_model_sha256()));
    ASSIGN_OR_RETURN(Model global, DecodeSafetensors(payload.view()));
    Model delta = global;
    for (float& v : delta.values) v = b_.delta;
    std::string bytes = EncodeSafetensors(delta);
    v1::TransferHeader header;
    header.set_round(plan.round());
    header.set_num_examples(b_.examples);
    header.set_total_bytes(bytes.size());
    header.set_sha256(ToHex(Sha256(bytes)));
    if (b_.tamper) b_.tamper(&bytes, &header);
    RETURN_IF_ERROR(engine_->Accept(name_, plan));
    ASSIGN_OR_RETURN(auto sink, engine_->BeginUpload(name_, header));
    size_t limit = b_.die_half_way ? bytes.size() / 2 : bytes.size();
    for (size_t off = 0; off < limit; off += b_.chunk) {
      const std::string_view chunk =
          std::string_view(bytes).substr(off, std::min(b_.chunk, limit - off));
      if (b_.piece == 0) {
        RETURN_IF_ERROR(sink->Write(off, chunk));
        continue;
      }
      std::vector<std::string_view> pieces;
      for (size_t at = 0; at < chunk.size(); at += b_.piece) {
        pieces.push_back(chunk.substr(at, b_.piece));
      }
      RETURN_IF_ERROR(sink->Write(off, pieces));
    }
    if (b_.die_half_way) return absl::AbortedError("site died");  // sink destroyed unfinished
    return sink->Finish().status();
  }

  RoundEngine* engine_;
  std::string name_;
  Behaviour b_;
  std::thread thread_;
  Status upload_status_;
  bool failed_ = false;
};

// Whether the engine asks `site` to train now.
bool AskedToTrain(RoundEngine& engine, const std::string& site) {
  auto task = engine.NextTask(site, absl::ZeroDuration());
  return task.ok() && task->kind() == v1::Task::TRAIN;
}

// Runs an engine and the given sites to completion; returns the final global model. On a
// stopped clock, a round in which an upload failed waits out upload_timeout for its site (a
// site whose upload failed sits the round out): once every site tried, the clock is moved past
// that deadline, and the site must still be asked to train until then.
Model RunFederation(const EngineOptions& options,
                    std::vector<std::pair<std::string, Behaviour>> sites,
                    std::vector<Status>* upload_statuses = nullptr) {
  auto engine = RoundEngine::Create(options, InitialModel());
  EXPECT_TRUE(engine.ok()) << engine.status();
  std::vector<std::unique_ptr<FakeSite>> fakes;
  for (auto& [name, b] : sites) {
    fakes.push_back(std::make_unique<FakeSite>(engine->get(), name, b));
  }
  // Every site joins before the first plan, so every site is in round 1's cohort.
  for (auto& [name, b] : sites) EXPECT_TRUE((*engine)->Join({name, "Org", "DE", "00"}).ok());
  for (auto& f : fakes) f->Start();
  std::atomic<bool> ran{false};
  std::thread mover([&, clock = std::dynamic_pointer_cast<FakeClock>(options.clock)] {
    if (!clock) return;
    auto only_deadline_left = [&] {
      bool tried = true, failed = false;
      for (auto& f : fakes) {
        tried = tried && f->uploads.load() >= 1;
        failed = failed || f->failed_uploads.load() >= 1;
      }
      return tried && failed;
    };
    if (!testing::Eventually([&] { return ran.load() || only_deadline_left(); }) || ran.load()) {
      return;
    }
    testing::PassDeadline(*clock, options.upload_timeout, [&] {
      for (auto& f : fakes) {
        if (f->failed_uploads.load() >= 1 && !AskedToTrain(**engine, f->name())) return false;
      }
      return true;
    });
  });
  Status run = (*engine)->Run();
  EXPECT_TRUE(run.ok()) << run;
  ran = true;
  (*engine)->Shutdown();  // had Run failed, sites waiting on the stopped clock hear WAIT
  mover.join();
  for (auto& f : fakes) f->Join();
  if (upload_statuses) {
    for (auto& f : fakes) upload_statuses->push_back(f->upload_status());
  }
  auto model = ReadSafetensorsFile(
      absl::StrFormat("%s/checkpoints/round-%04d.safetensors", options.state_dir, options.rounds));
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return Model{};
  // The engine hands out the very model its last checkpoint holds, to the bit.
  StatusOr<Model> published = (*engine)->global_model();
  EXPECT_TRUE(published.ok()) << published.status();
  if (published.ok()) {
    EXPECT_TRUE(published->layout.CheckSameAs(model->layout).ok());
    EXPECT_EQ(published->values.size(), model->values.size());
    EXPECT_EQ(std::memcmp(published->values.data(), model->values.data(),
                          sizeof(float) * std::min(published->values.size(), model->values.size())),
              0);
  }
  return *model;
}

TEST(RoundEngineTest, AppliesExampleWeightedMeanOfDeltas) {
  Behaviour a{.delta = 0.5f, .examples = 100};
  Behaviour b{.delta = -1.0f, .examples = 300};
  Model m = RunFederation(Options("weighted"), {{"a", a}, {"b", b}});
  // 1 + (100 * 0.5 + 300 * -1) / 400 = 0.375
  for (float v : m.values) ASSERT_EQ(v, 0.375f);
}

// Pieces of 7 bytes cut the float values at every alignment; the sum is the same to the bit.
TEST(RoundEngineTest, AnUploadWrittenInPiecesFoldsLikeWholeChunks) {
  Behaviour a{.delta = 0.5f, .examples = 100, .piece = 7};
  Behaviour b{.delta = -1.0f, .examples = 300, .piece = 1024};
  Model m = RunFederation(Options("pieces"), {{"a", a}, {"b", b}});
  for (float v : m.values) ASSERT_EQ(v, 0.375f);
}

// hansa-coordinator lingers after the last round only until every site that joined has heard
// the federation is done.
TEST(RoundEngineTest, TellsWhenEverySiteThatJoinedHeardTheFederationIsDone) {
  auto engine = RoundEngine::Create(Options("told_done"), InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_FALSE((*engine)->EverySiteToldDone());  // nobody joined yet
  std::vector<std::unique_ptr<FakeSite>> fakes;
  for (const char* name : {"a", "b"}) {
    fakes.push_back(std::make_unique<FakeSite>(engine->get(), name, Behaviour{.delta = 1.0f}));
    ASSERT_TRUE((*engine)->Join({name, "Org", "DE", "00"}).ok());
  }
  for (auto& f : fakes) f->Start();
  ASSERT_TRUE((*engine)->Run().ok());
  for (auto& f : fakes) f->Join();  // each returned on DONE
  EXPECT_TRUE((*engine)->EverySiteToldDone());
  // A site that joins late has not heard it until it asks.
  ASSERT_TRUE((*engine)->Join({"c", "Org", "DE", "00"}).ok());
  EXPECT_FALSE((*engine)->EverySiteToldDone());
  auto task = (*engine)->NextTask("c", absl::ZeroDuration());
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->kind(), v1::Task::DONE);
  EXPECT_TRUE((*engine)->EverySiteToldDone());
}

TEST(RoundEngineTest, SiteDyingMidUploadLeavesNoTraceAndRoundCompletes) {
  Behaviour a{.delta = 0.5f, .examples = 100};
  Behaviour b{.delta = 0.25f, .examples = 100};
  Behaviour c{.delta = 1000.0f, .examples = 5000, .die_half_way = true};
  Model m = RunFederation(Options("dying"), {{"a", a}, {"b", b}, {"c", c}});
  for (float v : m.values) ASSERT_EQ(v, 1.375f);
}

struct BadUpload {
  const char* name;
  Behaviour behaviour;
  absl::StatusCode code;
  const char* message;
};

class RoundEngineBadUploadTest : public ::testing::TestWithParam<BadUpload> {};

TEST_P(RoundEngineBadUploadTest, IsRefusedAndOthersStillAggregate) {
  const BadUpload& bad = GetParam();
  Behaviour a{.delta = 0.5f, .examples = 100};
  Behaviour b{.delta = 0.25f, .examples = 100};
  std::vector<Status> statuses;
  EngineOptions o = Options(bad.name);
  o.upload_timeout = absl::Milliseconds(1500);
  Model m = RunFederation(o, {{"a", a}, {"b", b}, {"c", bad.behaviour}}, &statuses);
  for (float v : m.values) ASSERT_EQ(v, 1.375f);
  EXPECT_EQ(statuses[2].code(), bad.code) << statuses[2];
  EXPECT_THAT(std::string(statuses[2].message()), HasSubstr(bad.message));
}

Behaviour Tampered(std::function<void(std::string*, v1::TransferHeader*)> f) {
  Behaviour b{.delta = 9.0f, .examples = 100};
  b.tamper = std::move(f);
  return b;
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, RoundEngineBadUploadTest,
    ::testing::Values(
        BadUpload{"digest_mismatch",
                  Tampered([](std::string* p, v1::TransferHeader*) { p->back() ^= 1; }),
                  absl::StatusCode::kDataLoss, "corrupted in transit"},
        BadUpload{"nan", Tampered([](std::string* p, v1::TransferHeader* h) {
                    float nan = std::numeric_limits<float>::quiet_NaN();
                    std::memcpy(p->data() + p->size() - 8, &nan, 4);
                    h->set_sha256(ToHex(Sha256(*p)));
                  }),
                  absl::StatusCode::kInvalidArgument, "NaN and Inf are refused"},
        BadUpload{
            "wrong_shape", Tampered([](std::string* p, v1::TransferHeader* h) {
              Model other;
              other.layout = ModelLayout({{"w", DType::kF32, {40, 50}}, {"b", DType::kF32, {40}}});
              other.values.assign(other.layout.TotalElements(), 0.f);
              *p = EncodeSafetensors(other);
              h->set_total_bytes(p->size());
              h->set_sha256(ToHex(Sha256(*p)));
            }),
            absl::StatusCode::kInvalidArgument, "'w': shape [40,50] expected [50,40]"},
        BadUpload{"oversized_chunk", Behaviour{.delta = 9.0f, .examples = 100, .chunk = 4096},
                  absl::StatusCode::kInvalidArgument, "exceeds the cap of 2048"},
        // The cap holds for a chunk as a whole, whatever pieces it arrives in.
        BadUpload{"oversized_chunk_in_pieces",
                  Behaviour{.delta = 9.0f, .examples = 100, .chunk = 4096, .piece = 512},
                  absl::StatusCode::kInvalidArgument, "exceeds the cap of 2048"},
        BadUpload{"digest_mismatch_in_pieces",
                  [] {
                    Behaviour b = Tampered(
                        [](std::string* p, v1::TransferHeader*) { (*p)[p->size() / 2] ^= 1; });
                    b.piece = 3;
                    return b;
                  }(),
                  absl::StatusCode::kDataLoss, "corrupted in transit"},
        BadUpload{"truncated", Tampered([](std::string* p, v1::TransferHeader* h) {
                    p->resize(p->size() - 100);
                  }),
                  absl::StatusCode::kDataLoss, "truncated"},
        BadUpload{"zero_examples", Behaviour{.delta = 9.0f, .examples = 0},
                  absl::StatusCode::kInvalidArgument, "claims 0 examples"},
        BadUpload{"huge_announced", Tampered([](std::string*, v1::TransferHeader* h) {
                    h->set_total_bytes(uint64_t{1} << 40);
                  }),
                  absl::StatusCode::kInvalidArgument, "the global model is"}),
    [](const ::testing::TestParamInfo<BadUpload>& info) { return info.param.name; });

TEST(RoundEngineTest, RefusesUnknownSitesAndReplayedUploads) {
  EngineOptions o = Options("replay");
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok());
  auto join = (*engine)->Join({"mallory", "Org", "US", "ff"});
  EXPECT_EQ(join.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(join.status().message()), HasSubstr("not part of federation 'test'"));
  EXPECT_EQ((*engine)->NextTask("mallory", absl::Milliseconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Site a uploads twice in the same round: the second is refused.
  std::thread run([&] { EXPECT_TRUE((*engine)->Run().ok()); });
  Behaviour b{.delta = 0.25f, .examples = 100};
  FakeSite site_b(engine->get(), "b", b);
  ASSERT_TRUE((*engine)->Join({"a", "Org", "DE", "aa"}).ok());
  site_b.Start();
  // a sits out round 0's evaluation: once b reported, only its deadline is left.
  auto& clock = static_cast<FakeClock&>(*o.clock);
  v1::Task task;
  bool evaluation_passed = false;
  do {
    task = *(*engine)->NextTask("a", absl::Milliseconds(100));
    if (task.kind() == v1::Task::EVALUATE && !evaluation_passed) {
      EXPECT_TRUE(testing::Eventually([&] { return site_b.evaluations.load() >= 1; }));
      testing::PassDeadline(clock, o.evaluate_timeout, [&] {
        return (*engine)->NextTask("a", absl::ZeroDuration())->kind() == v1::Task::EVALUATE;
      });
      evaluation_passed = true;
    }
  } while (task.kind() != v1::Task::TRAIN);
  auto payload = *(*engine)->Download("a", task.plan().round(), task.plan().global_model_sha256());
  EXPECT_TRUE(payload.mapped());  // served from the last checkpoint's file, no copy in memory
  Model delta = *DecodeSafetensors(payload.view());
  for (float& v : delta.values) v = 0.5f;
  std::string bytes = EncodeSafetensors(delta);
  v1::TransferHeader h;
  h.set_round(task.plan().round());
  h.set_num_examples(100);
  h.set_total_bytes(bytes.size());
  h.set_sha256(ToHex(Sha256(bytes)));
  ASSERT_TRUE((*engine)->Accept("a", task.plan()).ok());
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto sink = (*engine)->BeginUpload("a", h);
    if (attempt == 1) {
      EXPECT_EQ(sink.status().code(), absl::StatusCode::kAlreadyExists);
      EXPECT_THAT(std::string(sink.status().message()), HasSubstr("replayed upload refused"));
      break;
    }
    ASSERT_TRUE(sink.ok());
    for (size_t off = 0; off < bytes.size(); off += 1024) {
      ASSERT_TRUE((*sink)->Write(off, std::string_view(bytes).substr(off, 1024)).ok());
    }
    ASSERT_TRUE((*sink)->Finish().ok());
  }
  // Finish a's participation: evaluate, then done.
  for (int i = 0; i < 100; ++i) {
    task = *(*engine)->NextTask("a", absl::Milliseconds(100));
    if (task.kind() == v1::Task::EVALUATE) {
      v1::MetricsReport r;
      r.set_round(task.plan().round());
      r.set_num_examples(1);
      r.set_accuracy(1);
      ASSERT_TRUE((*engine)->ReportMetrics("a", r).ok());
      EXPECT_EQ((*engine)->ReportMetrics("a", r).code(), absl::StatusCode::kAlreadyExists);
    }
    if (task.kind() == v1::Task::DONE) break;
  }
  run.join();
  site_b.Join();
}

TEST(RoundEngineTest, RetriesRoundBelowMinSitesWithAFreshSum) {
  EngineOptions o = Options("retry");
  o.upload_timeout = absl::Milliseconds(3000);
  o.evaluate_timeout = absl::Milliseconds(500);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok());
  std::thread run([&] { EXPECT_TRUE((*engine)->Run().ok()); });
  // a uploads in the first attempt; b joins but stays silent until the retry.
  FakeSite a(engine->get(), "a", Behaviour{.delta = 0.5f, .examples = 100});
  ASSERT_TRUE((*engine)->Join({"b", "Org", "DE", "bb"}).ok());
  a.Start();
  // Round 0's evaluation times out without b, the first attempt with only a (until each
  // deadline, a is told to wait and trains no more than it did); a's second upload shows the
  // retry is open, and b joins in while it is.
  auto& clock = static_cast<FakeClock&>(*o.clock);
  auto a_waits_after = [&](int uploads) {
    return [&, uploads] {
      return (*engine)->NextTask("a", absl::ZeroDuration())->kind() == v1::Task::WAIT &&
             a.uploads.load() == uploads;
    };
  };
  EXPECT_TRUE(testing::Eventually([&] { return a.evaluations.load() >= 1; }));
  testing::PassDeadline(clock, o.evaluate_timeout, a_waits_after(0));
  EXPECT_TRUE(testing::Eventually([&] { return a.uploads.load() >= 1; }));
  testing::PassDeadline(clock, o.upload_timeout, a_waits_after(1));
  ASSERT_TRUE(testing::Eventually([&] { return a.uploads.load() >= 2; }));
  FakeSite b(engine->get(), "b", Behaviour{.delta = 0.25f, .examples = 100});
  b.Start();
  a.Join();
  b.Join();
  run.join();
  EXPECT_EQ(a.uploads.load(), 2);  // a trained again in the retried round
  auto m = ReadSafetensorsFile(o.state_dir + "/checkpoints/round-0001.safetensors");
  ASSERT_TRUE(m.ok());
  for (float v : m->values) ASSERT_EQ(v, 1.375f);  // a counted once, not twice
}

TEST(RoundEngineTest, ResumesAfterRestartFromLastCompletedRound) {
  EngineOptions o = Options("resume");
  RunFederation(o, {{"a", Behaviour{.delta = 1.0f}}, {"b", Behaviour{.delta = 1.0f}}});
  o.rounds = 2;
  auto engine = RoundEngine::Create(o, Model{});  // initial model ignored when resuming
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->completed_round(), 1);
  engine->reset();
  Model m = RunFederation(o, {{"a", Behaviour{.delta = 1.0f}}, {"b", Behaviour{.delta = 1.0f}}});
  for (float v : m.values) ASSERT_EQ(v, 3.0f);  // 1 + 1 + 1: round 2 built on round 1
}

TEST(RoundEngineTest, RestartRemovesSpillFilesThatAKilledRunLeftBehind) {
  // A coordinator SIGKILLed while masked uploads came in leaves their spill files (found by
  // the chaos test); the next start of the same state dir removes them, whatever their name.
  EngineOptions o = Options("stale_spill");
  RunFederation(o, {{"a", Behaviour{.delta = 1.0f}}, {"b", Behaviour{.delta = 1.0f}}});
  std::filesystem::create_directories(o.state_dir + "/spill");
  const std::string stale = o.state_dir + "/spill/a-7-masked-Xy12Ab";
  std::ofstream(stale) << std::string(4096, 'x');
  ASSERT_TRUE(std::filesystem::exists(stale));
  auto engine = RoundEngine::Create(o, Model{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_FALSE(std::filesystem::exists(o.state_dir + "/spill"));
  EXPECT_EQ((*engine)->completed_round(), 1);  // nothing else of the state dir is touched
}

TEST(RoundEngineTest, ServerMomentumCarriesAcrossRoundsAndRestarts) {
  EngineOptions o = Options("fedavgm");
  o.strategy.name = "fedavgm";
  o.strategy.server_momentum = 0.5;
  Behaviour one{.delta = 1.0f};
  // Round 1: v = 1, w = 1 + 1.
  Model m = RunFederation(o, {{"a", one}, {"b", one}});
  for (float v : m.values) ASSERT_EQ(v, 2.0f);
  // Round 2 after a restart: v = 0.5 * 1 + 1 = 1.5 (3.0 if the momentum had been lost).
  o.rounds = 2;
  m = RunFederation(o, {{"a", one}, {"b", one}});
  for (float v : m.values) ASSERT_EQ(v, 3.5f);
}

TEST(RoundEngineTest, CentralGaussianNoisesTheMeanOfClippedUpdatesAndRefusesLongerOnes) {
  EngineOptions o = Options("central_gaussian");
  o.privacy.enabled = true;
  o.privacy.mechanism = "central_gaussian";
  o.privacy.clip_norm = 1.0;
  o.privacy.noise_multiplier = 0.01;
  o.privacy.budget = {1e9, 1e-5};
  // Over 2040 values: norms 0.45 (a) and 0.90 (b) are within the clip norm, c's 4.5 is not.
  Behaviour a{.delta = 0.01f, .examples = 100};
  Behaviour b{.delta = 0.02f, .examples = 900};
  Behaviour c{.delta = 0.1f, .examples = 100};
  std::vector<Status> statuses;
  Model m = RunFederation(o, {{"a", a}, {"b", b}, {"c", c}}, &statuses);
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
  EXPECT_TRUE(statuses[1].ok()) << statuses[1];
  EXPECT_EQ(statuses[2].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(statuses[2].message()), HasSubstr("clip before uploading"));
  // Unweighted mean of a and b (0.015, not the example-weighted 0.019), plus noise of
  // stddev z * C / 2 = 0.005 per value.
  double sum = 0, squares = 0;
  for (float v : m.values) {
    sum += v - 1.015;
    squares += (v - 1.015) * (v - 1.015);
  }
  const double n = static_cast<double>(m.values.size());
  const double mean = sum / n, stddev = std::sqrt(squares / n - mean * mean);
  EXPECT_LT(std::abs(mean), 5 * 0.005 / std::sqrt(n));
  EXPECT_NEAR(stddev, 0.005, 0.0005);
  std::ifstream in(o.state_dir + "/metrics.jsonl");
  std::vector<nlohmann::json> metrics;
  for (std::string line; std::getline(in, line);) metrics.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_GT(metrics[1]["epsilon"].get<double>(), 0);
}

TEST(RoundEngineTest, RefusesToResumeFromTamperedCheckpoint) {
  EngineOptions o = Options("tampered");
  RunFederation(o, {{"a", Behaviour{.delta = 1.0f}}, {"b", Behaviour{.delta = 1.0f}}});
  std::string path = o.state_dir + "/checkpoints/round-0001.safetensors";
  auto model = ReadSafetensorsFile(path);
  model->values[0] = 42;
  ASSERT_TRUE(WriteSafetensorsFile(path, *model).ok());
  auto engine = RoundEngine::Create(o, InitialModel());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(engine.status().message()), HasSubstr("restore it from a backup"));
}

std::string FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ToHex(Sha256(bytes));
}

// The checkpoints, the strategy's state and the published payload are the same bytes however
// the engine holds the model in memory: these digests were taken before the engine kept the
// global model only as its payload and stepped it in place. A change of the file format
// changes them on purpose; nothing else may.
TEST(RoundEngineTest, CheckpointsHoldTheSameBytesAsBeforeTheModelWasHeldOnce) {
  EngineOptions o = Options("checkpoint_bytes");
  o.strategy.name = "fedadam";
  Behaviour a{.delta = 0.5f, .examples = 100};
  Behaviour b{.delta = -1.0f, .examples = 300};
  RunFederation(o, {{"a", a}, {"b", b}});
  o.rounds = 2;  // the second round after a restart: from the checkpoint read back
  Model m = RunFederation(o, {{"a", a}, {"b", b}});
  const std::string dir = o.state_dir + "/checkpoints/";
  EXPECT_EQ(FileSha256(dir + "round-0000.safetensors"),
            "6a8287bf105931ad9bac67889def02a46afc501ea2caf156a05835b9d606292e");
  EXPECT_EQ(FileSha256(dir + "round-0001.safetensors"),
            "35023abb38b410d19b12f47c0ace9d69d1d5eec728427df59b7c62ef53bc20b9");
  EXPECT_EQ(FileSha256(dir + "round-0002.safetensors"),
            "d8aa04c77cc373bddaf744e419395ca00cd856075ec84d001a08dcd3e1bda486");
  EXPECT_EQ(FileSha256(dir + "strategy-0002.safetensors"),
            "95aff3e5c3424f4a0a2b68ba380f7e76dc9fe689f6df61edc5f003327fa380d6");
  // A resumed engine serves the checkpoint's very bytes and hands out its values.
  auto engine = RoundEngine::Create(o, Model{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  const std::string sha = FileSha256(dir + "round-0002.safetensors");
  auto payload = (*engine)->Download("a", 3, sha);
  ASSERT_TRUE(payload.ok()) << payload.status();
  EXPECT_EQ(ToHex(Sha256(payload->view())), sha);
  EXPECT_TRUE(payload->mapped());  // the checkpoint file itself, not a copy in memory
  StatusOr<Model> global = (*engine)->global_model();
  ASSERT_TRUE(global.ok()) << global.status();
  EXPECT_TRUE(global->layout.CheckSameAs(m.layout).ok());
  ASSERT_EQ(global->values.size(), m.values.size());
  EXPECT_EQ(std::memcmp(global->values.data(), m.values.data(), sizeof(float) * m.values.size()),
            0);
  // A payload asked for by another digest is refused, naming the current round.
  auto stale = (*engine)->Download("a", 3, FileSha256(dir + "round-0001.safetensors"));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("after round 2"));
}

TEST(RoundEngineTest, ShutdownStopsRunPromptly) {
  EngineOptions o = Options("shutdown");
  o.clock = Clock::Real();  // promptness in real time
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok());
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(200));
    (*engine)->Shutdown();
  });
  absl::Time start = absl::Now();
  Status st = (*engine)->Run();  // waits for sites that never come
  stopper.join();
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

}  // namespace
}  // namespace hansa
