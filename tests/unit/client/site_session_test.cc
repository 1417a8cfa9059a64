// The site conversation (client/site_session.h), one suite run over both links: in process
// (client/link/engine_link.h) and gRPC with mutual TLS on loopback (client/link/grpc_link.h,
// sim/loopback.h). Three sites with fixed updates train one round against a real RoundEngine;
// the published model is checked against the plaintext weighted mean.
#include "client/site_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "client/link/chunks.h"
#include "client/link/engine_link.h"
#include "client/link/forwarding_link.h"
#include "common/audit/verify.h"
#include "common/clock/clock.h"
#include "common/crypto/sha256.h"
#include "common/plan/study_facts.h"
#include "common/tensor/safetensors.h"
#include "coordinator/round_engine.h"
#include "proto/plan_digest.h"
#include "sim/loopback.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

enum class LinkKind { kInProcess, kGrpc };

// Forwards to a link and remembers the kinds of the tasks it carried.
class RecordingLink final : public ForwardingLink {
 public:
  explicit RecordingLink(std::unique_ptr<SiteLink> link)
      : ForwardingLink(link.get()), owned_(std::move(link)) {}
  StatusOr<v1::Task> NextTask(absl::Duration wait) override {
    StatusOr<v1::Task> task = ForwardingLink::NextTask(wait);
    if (task.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      kinds_.insert(task->kind());
      if (!first_.count(task->kind())) first_[task->kind()] = *task;
    }
    return task;
  }
  bool Saw(v1::Task::Kind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return kinds_.count(kind) > 0;
  }
  // The first task of `kind` it carried (an empty task when none).
  v1::Task First(v1::Task::Kind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return first_.count(kind) ? first_[kind] : v1::Task();
  }

 private:
  std::unique_ptr<SiteLink> owned_;
  std::mutex mu_;
  std::set<int> kinds_;
  std::map<int, v1::Task> first_;
};

// A coordinator that hands out a script of tasks, as a hostile one might replay them, and
// accepts whatever the site sends. Counts what left the site.
class ScriptedLink final : public SiteLink {
 public:
  explicit ScriptedLink(std::vector<v1::Task> script) : script_(std::move(script)) {}
  Status Connect(absl::Duration) override { return absl::OkStatus(); }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest&) override {
    v1::JoinReply reply;
    reply.set_site("a");
    reply.set_federation("test");
    return reply;
  }
  // The script's tasks, then PermissionDenied, which ends the site's run.
  StatusOr<v1::Task> NextTask(absl::Duration) override {
    if (next_ < script_.size()) return script_[next_++];
    return absl::PermissionDeniedError("the script is over");
  }
  StatusOr<Model> Download(const v1::RoundPlan&, uint64_t) override {
    ++downloads;
    return absl::InvalidArgumentError("no model in this script");
  }
  Status RespondToPlan(const v1::PlanResponse&) override { return absl::OkStatus(); }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan&, const v1::TransferHeader&,
                                   const std::vector<std::string_view>&) override {
    ++uploads;
    return v1::UploadReply();
  }
  Status SubmitSecAgg(const v1::SecAggSubmission&) override {
    ++secagg_messages;
    return absl::OkStatus();
  }
  Status ReportMetrics(const v1::MetricsReport&) override { return absl::OkStatus(); }
  uint32_t max_chunk_bytes() const override { return 1024; }
  int downloads = 0, uploads = 0, secagg_messages = 0;

 private:
  std::vector<v1::Task> script_;
  size_t next_ = 0;
};

// Cuts the first upload short, as a connection reset mid-stream would: the coordinator gets
// half of its chunks and the site an Unavailable error. Keeps the bytes of every upload.
class CutFirstUploadLink final : public ForwardingLink {
 public:
  explicit CutFirstUploadLink(std::unique_ptr<SiteLink> link)
      : ForwardingLink(link.get()), owned_(std::move(link)) {}
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    std::string bytes;
    std::vector<size_t> sizes;
    for (std::string_view piece : pieces) {
      bytes.append(piece);
      sizes.push_back(piece.size());
    }
    uploads.push_back(std::move(bytes));
    piece_sizes.push_back(std::move(sizes));
    if (uploads.size() > 1) return ForwardingLink::Upload(plan, header, pieces);
    const std::vector<std::string_view> half(pieces.begin(), pieces.begin() + pieces.size() / 2);
    StatusOr<v1::UploadReply> cut = ForwardingLink::Upload(plan, header, half);
    EXPECT_EQ(cut.status().code(), absl::StatusCode::kDataLoss) << cut.status();
    return absl::UnavailableError("connection reset mid-upload");
  }
  std::vector<std::string> uploads;              // one thread: the site's
  std::vector<std::vector<size_t>> piece_sizes;  // of each upload

 private:
  std::unique_ptr<SiteLink> owned_;
};

Model Ones(int64_t n) {
  Model m;
  m.layout = ModelLayout({{"w", DType::kF32, {n}}});
  m.values.assign(n, 1.0f);
  return m;
}

struct SiteSpec {
  float delta;
  int64_t examples;
};

class SiteSessionTest : public ::testing::TestWithParam<LinkKind> {
 protected:
  void SetUp() override {
    auto federation = LoopbackFederation::Create({"a", "b", "c"}, "DE");
    ASSERT_TRUE(federation.ok()) << federation.status();
    federation_ = *std::move(federation);
  }

  EngineOptions Options(const std::string& name) const {
    EngineOptions o;
    o.federation = "test";
    o.state_dir = ::testing::TempDir() + "site_session_" + name +
                  (GetParam() == LinkKind::kGrpc ? "_grpc" : "_local");
    std::filesystem::remove_all(o.state_dir);
    o.allowed_sites = {"a", "b", "c"};
    o.rounds = 1;
    o.min_sites = 3;
    o.wait_for_sites = absl::Seconds(30);
    o.upload_timeout = absl::Seconds(60);
    o.evaluate_timeout = absl::Seconds(30);
    o.chunk_bytes = 1024;  // several chunks per model and update
    o.max_chunk_bytes = 2048;
    o.secure.enabled = false;
    o.secure.unmask_device = "cpu";
    return o;
  }

  SiteSessionOptions SessionOptions(int i) const {
    SiteSessionOptions o;
    o.name = std::string(1, static_cast<char>('a' + i));
    o.policy.allowed_models = {"simple_cnn"};
    o.policy.require_secure_aggregation = false;
    o.policy.min_cohort = 1;
    o.ca_certificate_pem = federation_->site_tls(i).ca_certificate_pem;
    o.private_key_pem = federation_->site_tls(i).private_key_pem;
    o.reconnect_seconds = 0;
    o.poll_wait = absl::Milliseconds(100);
    o.stop_on_task_error = true;
    return o;
  }

  // Runs one round of `engine` with the three sites; returns each site's Run status.
  // With `clock` (the engine's) and a `failing` site, the engine's deadlines are passed on the
  // fake clock as soon as that site has given up, instead of waited for.
  std::vector<Status> RunRound(RoundEngine* engine, const std::vector<SiteSpec>& specs,
                               const std::vector<SiteSessionOptions>& options, int64_t n,
                               Status* engine_status, FakeClock* clock = nullptr,
                               int failing = -1) {
    std::unique_ptr<LoopbackServer> server;
    links_.clear();
    for (int i = 0; i < 3; ++i) {
      std::unique_ptr<SiteLink> link;
      if (GetParam() == LinkKind::kInProcess) {
        const TlsFiles& tls = federation_->site_tls(i);
        SiteIdentity id;
        id.name = options[i].name;
        id.organisation = id.name;
        id.country = "DE";
        id.fingerprint = std::string(64, '0');
        id.certificate_pem = tls.certificate_pem;
        link = EngineSiteLink(engine, id);
      } else {
        if (!server) {
          auto served = federation_->Serve(engine);
          EXPECT_TRUE(served.ok()) << served.status();
          if (!served.ok()) return {};
          server = *std::move(served);
        }
        auto connected = federation_->Connect(i, *server);
        EXPECT_TRUE(connected.ok()) << connected.status();
        if (!connected.ok()) return {};
        link = *std::move(connected);
      }
      if (i == cut_site_) {
        auto cut = std::make_unique<CutFirstUploadLink>(std::move(link));
        cut_ = cut.get();
        link = std::move(cut);
      }
      links_.push_back(std::make_unique<RecordingLink>(std::move(link)));
    }
    std::vector<std::unique_ptr<FixedUpdateTrainer>> trainers;
    std::vector<std::unique_ptr<SiteSession>> sessions;
    for (int i = 0; i < 3; ++i) {
      trainers.push_back(std::make_unique<FixedUpdateTrainer>(std::vector<float>(n, specs[i].delta),
                                                              specs[i].examples));
      auto session = SiteSession::Create(options[i], links_[i].get(), trainers.back().get());
      EXPECT_TRUE(session.ok()) << session.status();
      if (!session.ok()) return {};
      sessions.push_back(*std::move(session));
    }
    std::vector<Status> results(3);
    std::vector<std::thread> threads;
    std::atomic<bool> failed{false}, engine_done{false};
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&, i] {
        results[i] = sessions[i]->Run();
        if (i == failing) failed = true;
      });
    }
    std::thread ticker([&] {
      while (clock != nullptr && !engine_done) {
        if (failed) clock->Advance(absl::Seconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    *engine_status = engine->Run();
    engine_done = true;
    ticker.join();
    if (!engine_status->ok()) {
      engine->Shutdown();  // a failed engine leaves its sites waiting: end their sessions
      for (auto& s : sessions) s->Stop();
    }
    for (auto& t : threads) t.join();
    if (server) server->Retarget(nullptr);
    return results;
  }

  // One round of three honest sites (kSpecs) on a model of `n` ones: every site ends OK and
  // the published model is 1 + the plaintext weighted mean, within `tolerance`.
  void ExpectTheMean(const EngineOptions& o, int64_t n, double tolerance);
  std::vector<Status> RunWithFailingSite(EngineOptions o, int64_t n, int failing,
                                         const std::function<void(SiteSessionOptions*)>& change,
                                         Status* run);

  // One honest round of the three sites (kSpecs, a model of 100 values) under the options
  // named `name`; site a's link, which kept the first task of each kind it carried.
  RecordingLink* HonestRound(const std::string& name, bool secure);

  // Site a, with `options`, against a coordinator playing `hostile`; what it refused (its
  // Run status). Nothing may be trained: `trained` gets how often the trainer ran.
  static Status Refused(const SiteSessionOptions& options, ScriptedLink* hostile, int* trained) {
    FixedUpdateTrainer trainer(std::vector<float>(100, 0.5f), 10);
    auto session = SiteSession::Create(options, hostile, &trainer);
    if (!session.ok()) return session.status();
    Status refused = (*session)->Run();
    *trained = trainer.trained();
    return refused;
  }

  static Model Published(const EngineOptions& o) {
    auto m = ReadSafetensorsFile(o.state_dir + "/checkpoints/round-0001.safetensors");
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : Model();
  }

  std::unique_ptr<LoopbackFederation> federation_;
  std::vector<std::unique_ptr<RecordingLink>> links_;
  int cut_site_ = -1;  // this site's first upload is cut short (cut_)
  CutFirstUploadLink* cut_ = nullptr;
};

const std::vector<SiteSpec> kSpecs = {{0.1f, 100}, {0.2f, 300}, {-0.3f, 600}};
// The plaintext reference: the example-weighted mean of the fixed updates.
constexpr double kMean = (0.1 * 100 + 0.2 * 300 - 0.3 * 600) / 1000.0;

std::vector<SiteSessionOptions> AllOptions(const std::function<SiteSessionOptions(int)>& f) {
  return {f(0), f(1), f(2)};
}

void SiteSessionTest::ExpectTheMean(const EngineOptions& o, int64_t n, double tolerance) {
  auto engine = RoundEngine::Create(o, Ones(n));
  ASSERT_TRUE(engine.ok()) << engine.status();
  Status run;
  auto sites = RunRound(engine->get(), kSpecs, AllOptions([&](int i) { return SessionOptions(i); }),
                        n, &run);
  ASSERT_TRUE(run.ok()) << run;
  for (const Status& s : sites) EXPECT_TRUE(s.ok()) << s;
  Model published = Published(o);
  ASSERT_EQ(published.values.size(), static_cast<size_t>(n));
  for (float v : published.values) ASSERT_NEAR(v, 1.0 + kMean, tolerance);
}

RecordingLink* SiteSessionTest::HonestRound(const std::string& name, bool secure) {
  EngineOptions o = Options(name);
  o.secure.enabled = secure;
  o.secure.max_examples = 1000;
  auto engine = RoundEngine::Create(o, Ones(100));
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return nullptr;
  Status run;
  RunRound(engine->get(), kSpecs, AllOptions([&](int i) { return SessionOptions(i); }), 100, &run);
  EXPECT_TRUE(run.ok()) << run;
  return run.ok() ? links_[0].get() : nullptr;
}

TEST_P(SiteSessionTest, PlaintextRoundPublishesTheWeightedMean) {
  ExpectTheMean(Options("plain"), 3000, 1e-5);  // 12 kB: a dozen chunks each way
  EXPECT_TRUE(links_[0]->Saw(v1::Task::EVALUATE));
}

TEST_P(SiteSessionTest, SecureRoundPublishesTheMeanWithinQuantization) {
  EngineOptions o = Options("secure");
  o.secure.enabled = true;
  o.secure.max_examples = 1000;
  ExpectTheMean(o, 2000, 2e-3);
  EXPECT_TRUE(links_[2]->Saw(v1::Task::SECAGG_UNMASK));
  EXPECT_FALSE(links_[2]->Saw(v1::Task::SECAGG_CONSISTENCY));
}

// Against a malicious coordinator the sites check each other's certificates and sign the
// survivor list (the consistency-check stage) before revealing any share.
TEST_P(SiteSessionTest, MaliciousModeRunsTheConsistencyCheck) {
  EngineOptions o = Options("malicious");
  o.secure.enabled = true;
  o.secure.malicious = true;
  o.secure.max_examples = 1000;
  ExpectTheMean(o, 1000, 2e-3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(links_[i]->Saw(v1::Task::SECAGG_CONSISTENCY)) << i;
}

// The connection breaks mid-upload: the site rejoins, is handed the same plan again and sends
// the very same bytes (a masked update is neither masked again nor given its share delivery
// twice, which would abort its SecAgg+ session); what the cut upload folded was withdrawn, so
// the round publishes the mean of the three.
TEST_P(SiteSessionTest, AnUploadCutShortIsSentAgainByteForByte) {
  for (bool secure : {false, true}) {
    SCOPED_TRACE(secure ? "secure" : "plaintext");
    EngineOptions o = Options(secure ? "cut_secure" : "cut_plain");
    o.secure.enabled = secure;
    o.secure.max_examples = 1000;
    o.max_attempts = 1;  // a site that gave up fails the round instead of waiting out retries
    o.upload_timeout = absl::Seconds(20);
    auto engine = RoundEngine::Create(o, Ones(2000));
    ASSERT_TRUE(engine.ok()) << engine.status();
    auto options = AllOptions([&](int i) { return SessionOptions(i); });
    options[1].stop_on_task_error = false;  // it rejoins, as hansa-client does
    cut_site_ = 1;
    Status run;
    auto sites = RunRound(engine->get(), kSpecs, options, 2000, &run);
    ASSERT_TRUE(run.ok()) << run;
    for (const Status& s : sites) EXPECT_TRUE(s.ok()) << s;
    ASSERT_NE(cut_, nullptr);
    ASSERT_EQ(cut_->uploads.size(), 2u);
    EXPECT_TRUE(cut_->uploads[0] == cut_->uploads[1]) << "the update sent again differs";
    EXPECT_EQ(cut_->piece_sizes[0], cut_->piece_sizes[1]);
    if (!secure) {
      // The plaintext update is the safetensors delta, cut where CutChunks cuts a whole
      // payload (its header and values are sent from where they lie, not joined first).
      Model delta;
      delta.layout = ModelLayout({{"w", DType::kF32, {2000}}});
      delta.values.assign(2000, kSpecs[1].delta);
      const std::string payload = EncodeSafetensors(delta);
      EXPECT_TRUE(cut_->uploads[1] == payload) << "the plaintext upload is not the delta";
      std::vector<size_t> sizes;
      for (std::string_view piece : CutChunks(payload, o.chunk_bytes, o.max_chunk_bytes)) {
        sizes.push_back(piece.size());
      }
      EXPECT_EQ(cut_->piece_sizes[1], sizes);
      EXPECT_GT(sizes.size(), 4u);
    }
    Model published = Published(o);
    ASSERT_EQ(published.values.size(), 2000u);
    for (float v : published.values) ASSERT_NEAR(v, 1.0 + kMean, secure ? 2e-3 : 1e-5);
  }
}

// One round in which site `failing`, its options changed by `change`, gives up: the engine
// (one attempt, on a fake clock) passes its deadlines at once. Each site's Run status.
std::vector<Status> SiteSessionTest::RunWithFailingSite(
    EngineOptions o, int64_t n, int failing, const std::function<void(SiteSessionOptions*)>& change,
    Status* run) {
  o.max_attempts = 1;
  auto clock = std::make_shared<FakeClock>(absl::Now());
  o.clock = clock;
  auto engine = RoundEngine::Create(o, Ones(n));
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  auto options = AllOptions([&](int i) { return SessionOptions(i); });
  change(&options[failing]);
  return RunRound(engine->get(), kSpecs, options, n, run, clock.get(), failing);
}

// Without its certificate key a site cannot take part in a malicious-mode round: it says so.
TEST_P(SiteSessionTest, MaliciousModeWithoutTheSitesKeyIsRefusedClearly) {
  EngineOptions o = Options("malicious_nokey");
  o.secure.enabled = true;
  o.secure.malicious = true;
  Status run;
  auto sites = RunWithFailingSite(
      o, 100, 1, [](SiteSessionOptions* s) { s->private_key_pem.clear(); }, &run);
  ASSERT_EQ(sites.size(), 3u);
  EXPECT_EQ(sites[1].code(), absl::StatusCode::kInvalidArgument) << sites[1];
  EXPECT_THAT(std::string(sites[1].message()), HasSubstr("malicious coordinator"));
  EXPECT_FALSE(run.ok());
}

// The chunk checks hold on both links: a model over the site's limit is refused by its
// declared size, before anything is reserved for it.
TEST_P(SiteSessionTest, AModelOverTheSitesLimitIsRefusedByItsDeclaredSize) {
  Status run;
  auto sites = RunWithFailingSite(
      Options("limit"), 1000, 0, [](SiteSessionOptions* s) { s->policy.max_model_bytes = 1024; },
      &run);
  ASSERT_EQ(sites.size(), 3u);
  EXPECT_EQ(sites[0].code(), absl::StatusCode::kInvalidArgument) << sites[0];
  EXPECT_THAT(std::string(sites[0].message()),
              HasSubstr("(policy.max_model_bytes in site.toml) declares"));
}

// A plan for a model the site's policy does not allow is refused, and the refusal reaches the
// coordinator with its reason.
TEST_P(SiteSessionTest, APlanForAModelThePolicyRefusesIsAnsweredNo) {
  Status run;
  auto sites = RunWithFailingSite(
      Options("refuse"), 100, 2, [](SiteSessionOptions* s) { s->policy.allowed_models = {"mlp"}; },
      &run);
  ASSERT_EQ(sites.size(), 3u);
  EXPECT_EQ(sites[2].code(), absl::StatusCode::kInvalidArgument) << sites[2];
  EXPECT_THAT(std::string(sites[2].message()), HasSubstr("policy.allowed_models"));
  EXPECT_FALSE(run.ok());  // three sites needed, one refused
}

// After a round, a coordinator hands site a the plan that spent its update again: in a new
// secure session (ADVERTISE: fresh keys and masks over the same update), or as TRAIN. Had the
// site answered, a second sum with the same updates and without another site would reveal
// that site's update. It refuses both before anything leaves or is trained.
TEST_P(SiteSessionTest, AnUpdateThatLeftIsNotSentAgainUnderTheSamePlan) {
  for (bool secure : {false, true}) {
    SCOPED_TRACE(secure ? "secure" : "plaintext");
    RecordingLink* a = HonestRound(secure ? "spent_secure" : "spent_plain", secure);
    ASSERT_NE(a, nullptr);
    const v1::Task train = a->First(v1::Task::TRAIN);
    ASSERT_TRUE(train.has_plan());
    v1::Task again = secure ? a->First(v1::Task::SECAGG_ADVERTISE) : train;
    ASSERT_EQ(PlanSha256(again.plan()), PlanSha256(train.plan()));

    SiteSessionOptions options = SessionOptions(0);  // site a, restarted: its ledger says
    ASSERT_TRUE(options.spent.Spend(train.plan(), EgressRecorder(nullptr)).ok());
    ScriptedLink hostile({again});
    int trained = -1;
    Status refused = Refused(options, &hostile, &trained);
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
    EXPECT_THAT(std::string(refused.message()), HasSubstr("has already left"));
    EXPECT_EQ(hostile.secagg_messages, 0);
    EXPECT_EQ(hostile.uploads, 0);
    EXPECT_EQ(hostile.downloads, 0);
    EXPECT_EQ(trained, 0);
  }
}

// A secure session is settled for the plan it was advertised under (its minimum of
// survivors, the noise each site adds). A coordinator that advertises with one plan and then
// hands out TRAIN with another plan of the same round is refused before anything is trained.
TEST_P(SiteSessionTest, AStageUnderAnotherPlanThanTheAdvertisedOneIsRefused) {
  RecordingLink* a = HonestRound("other_plan", /*secure=*/true);
  ASSERT_NE(a, nullptr);
  const v1::Task advertise = a->First(v1::Task::SECAGG_ADVERTISE);
  v1::Task train = a->First(v1::Task::TRAIN);
  ASSERT_TRUE(advertise.has_plan() && train.has_plan());
  ASSERT_EQ(PlanSha256(advertise.plan()), PlanSha256(train.plan()));  // the honest engine
  train.mutable_plan()->mutable_training()->set_epochs(train.plan().training().epochs() + 1);

  ScriptedLink hostile({advertise, train});
  int trained = -1;
  Status refused = Refused(SessionOptions(0), &hostile, &trained);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("another plan than the one its secure session was advertised under"));
  EXPECT_EQ(hostile.secagg_messages, 1);  // the advertisement, under the first plan
  EXPECT_EQ(hostile.uploads, 0);
  EXPECT_EQ(hostile.downloads, 0);
  EXPECT_EQ(trained, 0);
}

INSTANTIATE_TEST_SUITE_P(Links, SiteSessionTest,
                         ::testing::Values(LinkKind::kInProcess, LinkKind::kGrpc),
                         [](const ::testing::TestParamInfo<LinkKind>& info) {
                           return info.param == LinkKind::kGrpc ? "GrpcWithMutualTls" : "InProcess";
                         });

// A link to a coordinator that never comes up: every connection attempt fails.
class UnreachableLink final : public SiteLink {
 public:
  Status Connect(absl::Duration) override {
    ++attempts;
    return absl::UnavailableError("connection refused");
  }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest&) override { return Unreachable(); }
  StatusOr<v1::Task> NextTask(absl::Duration) override { return Unreachable(); }
  StatusOr<Model> Download(const v1::RoundPlan&, uint64_t) override { return Unreachable(); }
  Status RespondToPlan(const v1::PlanResponse&) override { return Unreachable(); }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan&, const v1::TransferHeader&,
                                   const std::vector<std::string_view>&) override {
    return Unreachable();
  }
  Status SubmitSecAgg(const v1::SecAggSubmission&) override { return Unreachable(); }
  Status ReportMetrics(const v1::MetricsReport&) override { return Unreachable(); }
  uint32_t max_chunk_bytes() const override { return 1024; }
  std::atomic<int> attempts{0};

 private:
  static Status Unreachable() { return absl::InternalError("never connected"); }
};

// Site a's Run over `link` with `options` on a fake clock that a thread moves on by `tick`
// every millisecond; *took gets how much of the clock the run took.
Status RunOnATickingClock(SiteSessionOptions options, SiteLink* link, absl::Duration tick,
                          absl::Duration* took) {
  auto clock = std::make_shared<FakeClock>();
  options.clock = clock;
  FixedUpdateTrainer trainer({}, 1);
  auto session = SiteSession::Create(options, link, &trainer);
  if (!session.ok()) return session.status();
  std::atomic<bool> done{false};
  std::thread ticker([&] {
    while (!done) {
      clock->Advance(tick);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const absl::Time started = clock->Now();
  Status st = (*session)->Run();
  done = true;
  ticker.join();
  *took = clock->Now() - started;
  return st;
}

// A site keeps trying a lost coordinator for reconnect_seconds with a backoff of 0.5 s doubling
// to 5 s, then gives up: ten minutes of the site's clock, passed on a fake one.
TEST(SiteSessionReconnectTest, GivesUpAfterReconnectSecondsWithBackoff) {
  UnreachableLink link;
  SiteSessionOptions o;
  o.name = "a";
  o.reconnect_seconds = 600;
  absl::Duration took;
  Status st = RunOnATickingClock(o, &link, absl::Milliseconds(500), &took);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("unreachable for 600 s"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("connection refused"));
  EXPECT_GE(took, absl::Seconds(600));
  // 0.5 + 1 + 2 + 4 s, then every 5 s: about 125 attempts in 600 s, never one per poll.
  EXPECT_GE(link.attempts.load(), 100);
  EXPECT_LE(link.attempts.load(), 130);
}

// The coordinator holds a poll until it has a task or the wait runs out. One that answers WAIT
// at once (shutting down, or hostile) had the site poll again at once, in a tight loop of
// calls: the site now asks at most once per min(poll_wait, 250 ms) of its clock.
TEST(SiteSessionReconnectTest, AWaitAnsweredAtOnceDoesNotMakeTheSitePollInATightLoop) {
  v1::Task wait;
  wait.set_kind(v1::Task::WAIT);
  ScriptedLink link(std::vector<v1::Task>(50, wait));  // then PermissionDenied ends the run
  SiteSessionOptions o;
  o.name = "a";
  o.poll_wait = absl::Milliseconds(100);
  absl::Duration took;
  Status st = RunOnATickingClock(o, &link, absl::Milliseconds(10), &took);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied) << st;
  // 50 answers, each at least 100 ms of the site's clock after the poll before it.
  EXPECT_GE(took, absl::Milliseconds(50 * 100));
}

// A coordinator address whose process comes and goes: the calls go to the link of the
// coordinator running now, or fail Unavailable when none runs. Counts what the site saw.
class SwitchLink final : public SiteLink {
 public:
  explicit SwitchLink(SiteLink* link) : link_(link) {}
  void Retarget(SiteLink* link) { link_ = link; }
  Status Connect(absl::Duration timeout) override {
    SiteLink* l = Now();
    return l ? l->Connect(timeout) : Gone();
  }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest& request) override {
    SiteLink* l = Now();
    if (l == nullptr) return Gone();
    ++joins;
    return l->Join(request);
  }
  StatusOr<v1::Task> NextTask(absl::Duration wait) override {
    SiteLink* l = Now();
    if (l == nullptr) return Gone();
    StatusOr<v1::Task> task = l->NextTask(wait);
    if (task.ok() && task->kind() == v1::Task::DONE) ++dones;
    return task;
  }
  StatusOr<Model> Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) override {
    SiteLink* l = Now();
    if (l == nullptr) return Gone();
    return l->Download(plan, max_model_bytes);
  }
  Status RespondToPlan(const v1::PlanResponse& response) override {
    SiteLink* l = Now();
    if (l == nullptr) return Gone();
    (response.accepted() ? accepted : refused)++;
    return l->RespondToPlan(response);
  }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    SiteLink* l = Now();
    if (l == nullptr) return Gone();
    StatusOr<v1::UploadReply> reply = l->Upload(plan, header, pieces);
    if (reply.ok() && after_upload) after_upload();
    return reply;
  }
  Status SubmitSecAgg(const v1::SecAggSubmission& submission) override {
    SiteLink* l = Now();
    return l ? l->SubmitSecAgg(submission) : Gone();
  }
  Status ReportMetrics(const v1::MetricsReport& report) override {
    SiteLink* l = Now();
    return l ? l->ReportMetrics(report) : Gone();
  }
  uint32_t max_chunk_bytes() const override { return 2048; }
  void Stop() override {
    if (SiteLink* l = Now()) l->Stop();
  }

  std::atomic<int> joins{0}, dones{0}, gone{0}, accepted{0}, refused{0};
  std::function<void()> after_upload;  // set before the site runs

 private:
  SiteLink* Now() { return link_.load(); }
  Status Gone() {
    ++gone;
    return absl::UnavailableError("connection refused (no coordinator at the address)");
  }
  std::atomic<SiteLink*> link_;
};

// Waits (bounded: a minute of real time) for what another thread does.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 12000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

// One site, the only one its federation needs, against coordinators in process.
class SiteStudiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto federation = LoopbackFederation::Create({"a"}, "DE");
    ASSERT_TRUE(federation.ok()) << federation.status();
    federation_ = *std::move(federation);
    site_.name = "a";
    site_.organisation = "a";
    site_.country = "DE";
    site_.fingerprint = std::string(64, '0');
    site_.certificate_pem = federation_->site_tls(0).certificate_pem;
  }

  static EngineOptions Study(const std::string& name, uint64_t seed, int rounds) {
    EngineOptions o;
    o.federation = "test";
    o.state_dir = ::testing::TempDir() + "site_studies_" + name;
    std::filesystem::remove_all(o.state_dir);
    o.allowed_sites = {"a"};
    o.rounds = rounds;
    o.min_sites = 1;
    o.wait_for_sites = absl::Seconds(60);
    o.upload_timeout = absl::Seconds(60);
    o.evaluate_timeout = absl::Seconds(30);
    o.secure.enabled = false;
    o.training.set_seed(seed);  // a new study trains other updates
    return o;
  }

  SiteSessionOptions Session() const {
    SiteSessionOptions o;
    o.name = "a";
    o.policy.allowed_models = {"simple_cnn"};
    o.policy.require_secure_aggregation = false;
    o.policy.min_cohort = 1;
    o.reconnect_seconds = 0;  // a lost coordinator mid-study: give up at once
    o.poll_wait = absl::Milliseconds(100);
    o.study_poll = absl::Milliseconds(10);
    o.stop_on_task_error = true;
    return o;
  }

  // A coordinator in process (its model: 100 ones), the site's link to it, and a trainer whose
  // every update is 100 halves: what a study below runs against. Made before the session, so
  // that it outlives it.
  struct InProcessStudy {
    InProcessStudy(std::unique_ptr<RoundEngine> e, const SiteIdentity& site)
        : engine(std::move(e)), inner(EngineSiteLink(engine.get(), site)), link(inner.get()) {}
    std::unique_ptr<RoundEngine> engine;
    std::unique_ptr<SiteLink> inner;
    SwitchLink link;
    FixedUpdateTrainer trainer{std::vector<float>(100, 0.5f), 10};
  };

  // The study of `o`; null (and the test failed) when its engine cannot be made.
  std::unique_ptr<InProcessStudy> Open(const EngineOptions& o) const {
    auto engine = RoundEngine::Create(o, Ones(100));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::make_unique<InProcessStudy>(*std::move(engine), site_) : nullptr;
  }

  std::unique_ptr<LoopbackFederation> federation_;
  SiteIdentity site_;
};

// hansa-client without --once: after its study it stays, polls the finished coordinator
// without training again, outlasts the coordinator's exit (past reconnect_seconds), takes
// part in the next study when a new coordinator comes up at the address, and stops on Stop().
TEST_F(SiteStudiesTest, ALongLivedSiteWaitsAfterItsStudyAndTakesPartInTheNext) {
  constexpr int64_t kValues = 100;
  EngineOptions one = Study("one", 1, 1), two = Study("two", 2, 1);
  auto engine1 = RoundEngine::Create(one, Ones(kValues));
  auto engine2 = RoundEngine::Create(two, Ones(kValues));
  ASSERT_TRUE(engine1.ok()) << engine1.status();
  ASSERT_TRUE(engine2.ok()) << engine2.status();
  auto link1 = EngineSiteLink(engine1->get(), site_);
  auto link2 = EngineSiteLink(engine2->get(), site_);
  SwitchLink link(link1.get());
  FixedUpdateTrainer trainer(std::vector<float>(kValues, 0.5f), 10);
  SiteSessionOptions o = Session();
  o.wait_for_next_study = true;
  o.stop_on_task_error = false;  // as hansa-client: a lost coordinator is not the site's error
  auto session = SiteSession::Create(o, &link, &trainer);
  ASSERT_TRUE(session.ok()) << session.status();
  Status result = absl::UnknownError("not run");
  std::thread site([&] { result = (*session)->Run(); });

  ASSERT_TRUE((*engine1)->Run().ok());
  // The finished coordinator answers DONE to every poll; the site keeps polling.
  EXPECT_TRUE(Eventually([&] { return link.dones >= 5; })) << link.dones;
  EXPECT_EQ(trainer.trained(), 1);
  EXPECT_EQ(link.accepted, 1);
  link.Retarget(nullptr);  // the first coordinator exits
  EXPECT_TRUE(Eventually([&] { return link.gone >= 3; })) << link.gone;
  const int joins = link.joins;
  link.Retarget(link2.get());  // the next study's coordinator starts at the same address
  ASSERT_TRUE((*engine2)->Run().ok());
  EXPECT_EQ(trainer.trained(), 2);
  EXPECT_EQ(link.accepted, 2);
  EXPECT_GT(link.joins, joins);
  auto published = ReadSafetensorsFile(two.state_dir + "/checkpoints/round-0001.safetensors");
  ASSERT_TRUE(published.ok()) << published.status();
  for (float v : published->values) ASSERT_NEAR(v, 1.5, 1e-6);

  EXPECT_TRUE(Eventually([&] { return link.dones >= 7; }));  // waiting for a third study
  (*session)->Stop();
  site.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_EQ(trainer.trained(), 2);
}

// --once (the default of SiteSessionOptions): the study's DONE ends Run with OK.
TEST_F(SiteStudiesTest, WithOnceTheSiteEndsWithItsStudy) {
  EngineOptions one = Study("once", 1, 1);
  std::unique_ptr<InProcessStudy> study = Open(one);
  ASSERT_NE(study, nullptr);
  auto session = SiteSession::Create(Session(), &study->link, &study->trainer);
  ASSERT_TRUE(session.ok()) << session.status();
  Status result = absl::UnknownError("not run");
  std::thread site([&] { result = (*session)->Run(); });
  ASSERT_TRUE(study->engine->Run().ok());
  site.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(study->link.dones, 1);
}

// SIGHUP's path: a policy replaced while the site runs judges the next plan, not the one
// answered. Round 1 is accepted under the old policy; the new one, given as round 1's upload
// is accepted, asks for larger cohorts, so round 2's plan is refused naming the key (the
// evaluation between them sends no update: the cohort floor does not apply to it).
std::unique_ptr<AuditLog> SiteLedger(const LoopbackFederation& federation, const std::string& name,
                                     std::string* path);
std::vector<AuditRecord> LedgerRecords(const std::string& path);

// The replaced policy is on the site's ledger (policy_applied, "reload") before the plan it
// refuses, after the one it started under ("start").
TEST_F(SiteStudiesTest, AReplacedPolicyAnswersTheNextPlan) {
  EngineOptions o = Study("reload", 1, 2);
  o.upload_timeout = absl::Seconds(5);
  o.wait_for_sites = absl::Seconds(5);
  std::unique_ptr<InProcessStudy> study = Open(o);
  ASSERT_NE(study, nullptr);
  std::string path;
  std::unique_ptr<AuditLog> ledger = SiteLedger(*federation_, "reload", &path);
  SiteSessionOptions options = Session();
  options.egress = ledger.get();
  auto session = SiteSession::Create(options, &study->link, &study->trainer);
  ASSERT_TRUE(session.ok()) << session.status();
  study->link.after_upload = [&] {
    SitePolicy stricter = Session().policy;
    stricter.min_cohort = 2;
    (*session)->ReplacePolicy(stricter);
  };
  Status engine_result;
  std::thread coordinator([&] { engine_result = study->engine->Run(); });
  Status result = (*session)->Run();
  study->engine->Shutdown();
  coordinator.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kInvalidArgument) << result;
  EXPECT_THAT(std::string(result.message()), HasSubstr("policy.min_cohort"));
  EXPECT_EQ(study->link.accepted, 1);
  EXPECT_EQ(study->link.refused, 1);
  EXPECT_EQ(study->trainer.trained(), 1);
  EXPECT_FALSE(engine_result.ok());  // its only site refused round 2
  ledger.reset();

  std::vector<std::string> events;
  std::vector<const AuditRecord*> applied;
  const std::vector<AuditRecord> records = LedgerRecords(path);
  for (const AuditRecord& r : records) {
    if (r.event == audit_events::kPolicyApplied) {
      applied.push_back(&r);
      events.push_back(absl::StrCat("policy_applied ", r.fields["reason"].get<std::string>()));
    }
    if (r.event == audit_events::kPlanAccepted || r.event == audit_events::kPlanRefused) {
      events.push_back(absl::StrCat(r.event, " ", r.fields["round"].get<int>()));
    }
  }
  EXPECT_THAT(events, ElementsAre("policy_applied start", "plan_accepted 1",
                                  "policy_applied reload", "plan_refused 2"));
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_EQ(applied[0]->fields["policy"]["min_cohort"], 1);
  EXPECT_EQ(applied[1]->fields["policy"]["min_cohort"], 2);
  EXPECT_EQ(applied[1]->fields["policy"]["allowed_models"], nlohmann::json({"simple_cnn"}));
  EXPECT_EQ(applied[1]->fields["sha256"], ToHex(Sha256(applied[1]->fields["policy"].dump())));
  EXPECT_NE(applied[0]->fields["sha256"], applied[1]->fields["sha256"]);
}

// The site's egress ledger at TempDir/site_studies_NAME_egress/egress.jsonl, signed as site a.
std::unique_ptr<AuditLog> SiteLedger(const LoopbackFederation& federation, const std::string& name,
                                     std::string* path) {
  *path = ::testing::TempDir() + "site_studies_" + name + "_egress/egress.jsonl";
  std::filesystem::remove_all(std::filesystem::path(*path).parent_path());
  auto key = PrivateKey::FromPem(federation.site_tls(0).private_key_pem);
  auto cert = Certificate::FromPem(federation.site_tls(0).certificate_pem);
  EXPECT_TRUE(key.ok() && cert.ok());
  auto log = AuditLog::Open(*path, *std::move(key), *std::move(cert));
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

std::vector<AuditRecord> LedgerRecords(const std::string& path) {
  auto records = ReadAuditRecordsUnverified(path);
  EXPECT_TRUE(records.ok()) << records.status();
  return records.ok() ? *std::move(records) : std::vector<AuditRecord>{};
}

// The study's GDPR facts a plan carried are on the site's ledger once for the study (the
// initial evaluation, then two rounds and two consents), before the first consent.
TEST_F(SiteStudiesTest, TheStudysGdprFactsAreOnTheSitesLedgerOnceBeforeItsConsent) {
  EngineOptions o = Study("facts", 1, 2);
  o.study.set_purpose("Pneumonia triage from chest X-rays");
  o.study.set_legal_basis("Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
  o.study.add_controllers("Charité Berlin");
  o.study.set_retention_days(3650);
  o.study.set_dpia_reference("DPIA-2026-017");
  std::unique_ptr<InProcessStudy> study = Open(o);
  ASSERT_NE(study, nullptr);
  std::string path;
  std::unique_ptr<AuditLog> ledger = SiteLedger(*federation_, "facts", &path);
  SiteSessionOptions s = Session();
  s.policy.require_legal_basis = true;
  s.egress = ledger.get();
  auto session = SiteSession::Create(s, &study->link, &study->trainer);
  ASSERT_TRUE(session.ok()) << session.status();
  Status result = absl::UnknownError("not run");
  std::thread site([&] { result = (*session)->Run(); });
  ASSERT_TRUE(study->engine->Run().ok());
  site.join();
  ASSERT_TRUE(result.ok()) << result;
  EXPECT_EQ(study->link.accepted, 2);
  ledger.reset();

  std::vector<AuditRecord> records = LedgerRecords(path);
  std::vector<size_t> facts, accepted;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].event == audit_events::kStudyFacts) facts.push_back(i);
    if (records[i].event == audit_events::kPlanAccepted) accepted.push_back(i);
  }
  ASSERT_EQ(facts.size(), 1u);
  ASSERT_EQ(accepted.size(), 2u);
  EXPECT_LT(facts[0], accepted[0]);
  const nlohmann::json& seen = records[facts[0]].fields;
  EXPECT_EQ(seen["round"], 0);  // the initial model's evaluation plan carried them first
  EXPECT_EQ(seen["sha256"], StudyFactsSha256(o.study));
  EXPECT_EQ(seen["study"], StudyFactsJson(o.study));
  EXPECT_EQ(seen["study"]["legal_basis"], "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
}

// policy.require_legal_basis: plans that state a purpose but no legal basis are refused (the
// initial evaluation's unanswered, round 1's answered no and on the site's ledger, after the
// facts it saw), and nothing is trained or sent but the answer.
TEST_F(SiteStudiesTest, APlanWithoutALegalBasisIsRefusedOnRecordWhereThePolicyRequiresOne) {
  EngineOptions o = Study("no_legal_basis", 1, 1);
  o.study.set_purpose("Pneumonia triage from chest X-rays");
  o.evaluate_timeout = absl::Seconds(600);  // the refusal ends the evaluation, not the deadline
  std::unique_ptr<InProcessStudy> study = Open(o);
  ASSERT_NE(study, nullptr);
  std::string path;
  std::unique_ptr<AuditLog> ledger = SiteLedger(*federation_, "no_legal_basis", &path);
  SiteSessionOptions s = Session();
  s.policy.require_legal_basis = true;
  s.egress = ledger.get();
  s.stop_on_task_error = false;  // as hansa-client: a refused plan is not the end of the site
  auto session = SiteSession::Create(s, &study->link, &study->trainer);
  ASSERT_TRUE(session.ok()) << session.status();
  Status engine_result;
  std::thread coordinator([&] { engine_result = study->engine->Run(); });
  Status result = absl::UnknownError("not run");
  std::thread site([&] { result = (*session)->Run(); });
  // The evaluation of the initial model, then round 1's plan.
  EXPECT_TRUE(Eventually([&] { return study->link.refused >= 2; }));
  (*session)->Stop();
  site.join();
  study->engine->Shutdown();
  coordinator.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_EQ(study->link.accepted, 0);
  EXPECT_EQ(study->trainer.trained(), 0);
  ledger.reset();

  std::vector<AuditRecord> records = LedgerRecords(path);
  std::vector<const AuditRecord*> facts, refused;
  for (const AuditRecord& r : records) {
    if (r.event == audit_events::kStudyFacts) facts.push_back(&r);
    if (r.event == audit_events::kPlanRefused) refused.push_back(&r);
    if (r.event == audit_events::kMessageSent) {
      EXPECT_NE(r.fields["type"], audit_events::kMessageMetrics);  // the evaluation sent nothing
    }
  }
  ASSERT_EQ(facts.size(), 1u);
  EXPECT_EQ(facts[0]->fields["study"]["purpose"], "Pneumonia triage from chest X-rays");
  EXPECT_EQ(facts[0]->fields["study"]["legal_basis"], "");
  ASSERT_GE(refused.size(), 2u);  // a retried round 1 may be refused again
  EXPECT_LT(facts[0], refused[0]);
  for (int round : {0, 1}) {
    EXPECT_EQ(refused[round]->fields["round"], round);
    EXPECT_THAT(refused[round]->fields["reason"].get<std::string>(),
                HasSubstr(absl::StrCat("round ", round,
                                       " states no legal_basis of the study, but this site's "
                                       "policy requires a purpose and a legal basis "
                                       "(policy.require_legal_basis)")));
  }
}

// policy.study: a site that takes part in one study refuses, on its ledger, the evaluation of
// round 0 and round 1 of another study and of one that names none (nothing trained, nothing sent
// but joins and the answers), and takes part in its own; the study_facts it recorded name the
// study each plan said.
TEST_F(SiteStudiesTest, ASiteThatPinsAStudyRefusesAnyOtherOnRecordAndTakesPartInItsOwn) {
  const std::string tail =
      ", but this site's policy takes part only in study 'fmnist-2027-01' (policy.study); refused";
  struct Case {
    std::string name, study, refusal;  // refusal: after "round N"
  };
  for (const Case& c :
       {Case{"pinned_other", "fmnist-2027-02", " belongs to study 'fmnist-2027-02'" + tail},
        Case{"pinned_none", "", " names no study" + tail},
        Case{"pinned_own", "fmnist-2027-01", ""}}) {
    SCOPED_TRACE(c.name);
    EngineOptions o = Study(c.name, 1, 1);
    o.study.set_id(c.study);
    o.evaluate_timeout = absl::Seconds(600);  // the refusal ends the evaluation, not the deadline
    auto engine = RoundEngine::Create(o, Ones(100));
    ASSERT_TRUE(engine.ok()) << engine.status();
    auto inner = EngineSiteLink(engine->get(), site_);
    SwitchLink link(inner.get());
    FixedUpdateTrainer trainer(std::vector<float>(100, 0.5f), 10);
    std::string path;
    std::unique_ptr<AuditLog> ledger = SiteLedger(*federation_, c.name, &path);
    SiteSessionOptions s = Session();
    s.policy.study = "fmnist-2027-01";
    s.egress = ledger.get();
    s.stop_on_task_error = false;  // as hansa-client: a refused plan is not the end of the site
    auto session = SiteSession::Create(s, &link, &trainer);
    ASSERT_TRUE(session.ok()) << session.status();
    Status engine_result;
    std::thread coordinator([&] { engine_result = (*engine)->Run(); });
    Status result = absl::UnknownError("not run");
    std::thread site([&] { result = (*session)->Run(); });
    if (c.refusal.empty()) {
      site.join();
      coordinator.join();
      EXPECT_TRUE(result.ok()) << result;
      EXPECT_TRUE(engine_result.ok()) << engine_result;
      EXPECT_EQ(link.accepted, 1);
      EXPECT_EQ(link.refused, 0);
      EXPECT_EQ(trainer.trained(), 1);
    } else {
      EXPECT_TRUE(Eventually([&] { return link.refused >= 2; }));
      (*session)->Stop();
      site.join();
      (*engine)->Shutdown();
      coordinator.join();
      EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
      EXPECT_EQ(link.accepted, 0);
      EXPECT_EQ(trainer.trained(), 0);
    }
    ledger.reset();

    std::vector<const AuditRecord*> facts, refused, accepted;
    const std::vector<AuditRecord> records = LedgerRecords(path);
    for (const AuditRecord& r : records) {
      if (r.event == audit_events::kStudyFacts) facts.push_back(&r);
      if (r.event == audit_events::kPlanRefused) refused.push_back(&r);
      if (r.event == audit_events::kPlanAccepted) accepted.push_back(&r);
      if (!c.refusal.empty() && r.event == audit_events::kMessageSent) {
        const std::string type = r.fields["type"];
        EXPECT_TRUE(type == audit_events::kMessageJoin ||
                    type == audit_events::kMessagePlanResponse)
            << r.fields.dump();
      }
    }
    ASSERT_EQ(facts.size(), 1u);
    EXPECT_EQ(facts[0]->fields["study"]["id"], c.study);
    if (c.refusal.empty()) {
      EXPECT_TRUE(refused.empty());
      EXPECT_EQ(accepted.size(), 1u);
      continue;
    }
    ASSERT_GE(refused.size(), 2u);  // a retried round 1 may be refused again
    for (int round : {0, 1}) {
      EXPECT_EQ(refused[round]->fields["round"], round);
      EXPECT_EQ(refused[round]->fields["reason"], absl::StrCat("round ", round, c.refusal));
    }
    EXPECT_TRUE(accepted.empty());
  }
}

// ModelReceiver: the one place a download's chunks are checked and decoded.
class ModelReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.layout = *ModelLayout::Create({{"w", DType::kF32, {25, 50}}});
    for (int i = 0; i < 1250; ++i) model_.values.push_back(0.25f * static_cast<float>(i) - 100);
    Announce(EncodeSafetensors(model_));
  }
  // The plan and the header name `payload`.
  void Announce(std::string payload) {
    payload_ = std::move(payload);
    plan_.set_round(4);
    plan_.set_global_model_bytes(payload_.size());
    plan_.set_global_model_sha256(ToHex(Sha256(payload_)));
    header_.set_total_bytes(payload_.size());
    header_.set_sha256(plan_.global_model_sha256());
  }
  // `bytes` received in chunks of `step` under the plan, which names `payload_`.
  StatusOr<Model> Receive(std::string_view bytes, uint32_t step) {
    ModelReceiver r(plan_, step, 1 << 20);
    RETURN_IF_ERROR(r.Header(header_));
    for (std::string_view piece : CutChunks(bytes, step, step)) {
      RETURN_IF_ERROR(r.Chunk(&piece[0] - bytes.data(), piece));
    }
    return r.Finish();
  }
  Model model_;
  std::string payload_;
  v1::RoundPlan plan_;
  v1::TransferHeader header_;
};

TEST_F(ModelReceiverTest, DecodesChunksInOrderAndChecksTheDigest) {
  // 999 bytes: chunks end inside the header and inside values.
  for (uint32_t step : {999u, 2048u, 1u << 20}) {
    auto got = Receive(payload_, step);
    ASSERT_TRUE(got.ok()) << step << ": " << got.status();
    EXPECT_EQ(got->values, model_.values) << step;
    EXPECT_EQ(got->layout.tensors()[0].name, "w");
    EXPECT_EQ(got->layout.tensors()[0].shape, (std::vector<int64_t>{25, 50}));
  }
  ModelReceiver r(plan_, 2048, 1 << 20);
  auto whole = r.Whole(SharedBytes(payload_));
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->values, model_.values);
}

TEST_F(ModelReceiverTest, RefusesOversizedOutOfOrderShortAndForeignPayloads) {
  {
    ModelReceiver r(plan_, 1024, 1 << 20);
    ASSERT_TRUE(r.Header(header_).ok());
    Status st = r.Chunk(0, std::string_view(payload_).substr(0, 2048));
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(st.message()), HasSubstr("out of order or oversized"));
  }
  {
    ModelReceiver r(plan_, 2048, 1 << 20);
    ASSERT_TRUE(r.Header(header_).ok());
    EXPECT_EQ(r.Chunk(100, std::string_view(payload_).substr(0, 100)).code(),
              absl::StatusCode::kDataLoss);
  }
  {
    ModelReceiver r(plan_, 2048, 1 << 20);
    ASSERT_TRUE(r.Header(header_).ok());
    ASSERT_TRUE(r.Chunk(0, std::string_view(payload_).substr(0, 2000)).ok());
    auto short_payload = r.Finish();
    EXPECT_EQ(short_payload.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(short_payload.status().message()), HasSubstr("ended after 2000"));
  }
  {
    ModelReceiver r(plan_, 2048, 1 << 20);
    auto foreign = r.Whole(SharedBytes(std::string(payload_.size(), 'y')));
    EXPECT_EQ(foreign.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("SHA-256"));
  }
  {
    ModelReceiver r(plan_, 2048, 1000);
    Status st = r.Header(header_);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr("more than the limit of 1000 bytes"));
  }
  {
    v1::TransferHeader lying = header_;
    lying.set_total_bytes(payload_.size() + 1);
    ModelReceiver r(plan_, 2048, 1 << 20);
    EXPECT_EQ(r.Header(lying).code(), absl::StatusCode::kDataLoss);
  }
}

// A model whose header is larger than an upload of its update could carry is refused once its
// first bytes arrive: before, a coordinator could have the site parse 16 MiB of header JSON.
TEST_F(ModelReceiverTest, AHeaderLargerThanAnUploadMayCarryIsRefused) {
  Announce(EncodeSafetensors(model_, {{"pad", std::string(kMaxTransferHeaderBytes, 'x')}}));
  ModelReceiver r(plan_, 4 << 20, 8 << 20);
  ASSERT_TRUE(r.Header(header_).ok());
  ASSERT_TRUE(r.Chunk(0, payload_).ok());  // hashed, so the site can say what arrived
  auto got = r.Finish();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr(absl::StrCat("exceeds the limit of ", kMaxTransferHeaderBytes)));
}

TEST_F(ModelReceiverTest, ABytesChangedOnTheWayIsDataLossWhereverItLands) {
  // In the header's length, in its JSON, in a value: decoding may fail or not, but what the
  // site hears is that the bytes are not the plan's.
  for (size_t at : {size_t{0}, size_t{20}, payload_.size() - 2}) {
    std::string damaged = payload_;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x5a);
    auto got = Receive(damaged, 999);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << at << ": " << got.status();
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("SHA-256")) << at;
  }
}

TEST_F(ModelReceiverTest, ThePlansOwnPayloadIsRefusedWhenItIsNoFiniteModel) {
  // A coordinator that announces bytes which are no model, or a model with a NaN: the digest
  // matches, the decoding does not.
  Announce(std::string(5000, 'x'));
  auto garbage = Receive(payload_, 999);
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument) << garbage.status();
  EXPECT_THAT(std::string(garbage.status().message()), HasSubstr("the global model of round 4"));

  Model nan = model_;
  nan.values[700] = std::nanf("");
  Announce(EncodeSafetensors(nan));
  auto with_nan = Receive(payload_, 999);
  EXPECT_EQ(with_nan.status().code(), absl::StatusCode::kInvalidArgument) << with_nan.status();
  EXPECT_THAT(std::string(with_nan.status().message()), HasSubstr("NaN"));

  // Values cut short (the header declares two more than arrive): the digest matches, so this
  // is the coordinator's malformed payload, not a loss on the way.
  Announce(EncodeSafetensors(model_).substr(0, EncodeSafetensors(model_).size() - 8));
  auto cut = Receive(payload_, 999);
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument) << cut.status();
  EXPECT_THAT(std::string(cut.status().message()), HasSubstr("truncated"));

  // A header that claims more values than the bytes the plan declares is refused as soon as
  // it is read, before anything is allocated for them.
  Model big;
  big.layout = *ModelLayout::Create({{"w", DType::kF32, {1000, 1000}}});
  std::string lying = EncodeSafetensorsHeader(big.layout, {});
  lying.append(4000, '\0');
  Announce(lying);
  ModelReceiver r(plan_, 1 << 20, 1 << 20);
  ASSERT_TRUE(r.Header(header_).ok());
  ASSERT_TRUE(r.Chunk(0, payload_).ok());
  auto refused = r.Finish();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("larger than the size limit"));
}

TEST(CutChunksTest, CutsAtThePlansSizeCappedByTheLink) {
  const std::string payload(10, 'z');
  EXPECT_EQ(CutChunks(payload, 4, 100).size(), 3u);
  EXPECT_EQ(CutChunks(payload, 0, 3).size(), 4u);  // the plan names none: the link's cap
  EXPECT_TRUE(CutChunks("", 4, 4).empty());
  std::string joined;
  for (std::string_view p : CutChunks(payload, 3, 100)) joined += p;
  EXPECT_EQ(joined, payload);
}

}  // namespace
}  // namespace hansa
