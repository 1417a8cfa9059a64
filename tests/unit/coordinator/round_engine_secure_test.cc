// RoundEngine under secure aggregation and the limits on what one site may do, with sites as
// threads: no transport, real SecAgg+ sessions on both sides, a real state dir and audit log;
// timeouts on a stopped clock that a test moves past a deadline once only the deadline is left.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/plan/plan_readers.h"
#include "common/secagg/client.h"
#include "common/tensor/safetensors.h"
#include "coordinator/federation_status.h"
#include "coordinator/round_engine.h"
#include "coordinator/spill_file.h"
#include "proto/plan_digest.h"
#include "tests/unit/audit/test_federation.h"
#include "tests/unit/coordinator/engine_test_setup.h"

namespace hansa {
namespace {

using ::hansa::testing::TestFederation;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

Model InitialModel() { return testing::OnesModel(20, 10); }

std::shared_ptr<AuditLog> OpenAudit(const EngineOptions& o) {
  const auto& coordinator = TestFederation::Get().coordinator();
  auto log = AuditLog::Open(o.state_dir + "/audit.jsonl", coordinator.Key(), coordinator.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? std::shared_ptr<AuditLog>(std::move(*log)) : nullptr;
}

std::vector<std::string> EventsOf(const EngineOptions& o, const std::string& name) {
  std::vector<std::string> out;
  auto records = ReadAuditRecordsUnverified(o.state_dir + "/audit.jsonl");
  EXPECT_TRUE(records.ok()) << records.status();
  for (const AuditRecord& r : *records) {
    if (r.event == name) out.push_back(r.fields.dump());
  }
  return out;
}

// What a secure site saw: each task kind per attempt of round 1.
struct Seen {
  std::mutex mu;
  std::map<uint32_t, std::multiset<int>> kinds;  // attempt -> task kinds
  std::set<uint64_t> seeds;                      // training seeds of the plans it trained for
  std::atomic<int> uploads{0};                   // committed, over all attempts
  std::atomic<int> advertised{0};                // key advertisements the engine took
  // When set, this other site of the federation first sends each of the site's SecAgg+ messages
  // as its own, which the coordinator must refuse (signed as another site, or a replay).
  std::string also_sent_by;
  std::atomic<int> refused_copies{0};
};

// A site of a secure round, with its own SecAgg+ session per attempt; it uploads the update
// `delta` everywhere, except that it sits out the uploads of attempts up to `skip_attempts`.
// Runs until DONE or `stop`.
void RunSecureSite(RoundEngine* engine, const std::string& name, float delta,
                   uint32_t skip_attempts, Seen* seen, const std::atomic<bool>* stop) {
  ASSERT_TRUE(engine->Join({name, "Org", "DE", "fp-" + name}).ok());
  std::unique_ptr<ClientSession> session;
  std::string answered;
  for (int i = 0; i < 1200 && !*stop; ++i) {
    auto task = engine->NextTask(name, absl::Milliseconds(100));
    ASSERT_TRUE(task.ok()) << task.status();
    const v1::RoundPlan& plan = task->plan();
    if (task->kind() == v1::Task::DONE) return;
    if (task->kind() == v1::Task::WAIT) continue;
    {
      std::lock_guard<std::mutex> lock(seen->mu);
      if (plan.round() == 1) seen->kinds[plan.attempt()].insert(task->kind());
    }
    if (task->kind() == v1::Task::EVALUATE) {
      (void)engine->ReportMetrics(name, testing::PlausibleReport(plan.round()));
      continue;
    }
    if (answered != PlanSha256(plan)) {
      answered = PlanSha256(plan);
      ASSERT_TRUE(engine->Accept(name, plan).ok());
    }
    v1::SecAggSubmission m;
    m.set_round(plan.round());
    m.set_stage(task->kind());
    switch (task->kind()) {
      case v1::Task::SECAGG_ADVERTISE: {
        uint32_t self = 0;
        auto params = SecAggParamsOfPlan(plan, name, &self);
        ASSERT_TRUE(params.ok()) << params.status();
        auto resolved = ResolveParams(*params);
        ASSERT_TRUE(resolved.ok()) << resolved.status();
        auto created = ClientSession::Create(*resolved, self, nullptr);
        ASSERT_TRUE(created.ok()) << created.status();
        session = *std::move(created);
        m.set_payload(session->Start()->Serialize());
        break;
      }
      case v1::Task::SECAGG_SHARE: {
        auto shares = session->OnKeyDirectory(*KeyDirectory::Parse(task->payload()));
        ASSERT_TRUE(shares.ok()) << shares.status();
        m.set_payload(shares->Serialize());
        break;
      }
      case v1::Task::SECAGG_UNMASK: {
        auto response = session->OnUnmaskRequest(*UnmaskRequest::Parse(task->payload()));
        ASSERT_TRUE(response.ok()) << response.status();
        m.set_payload(response->Serialize());
        break;
      }
      case v1::Task::TRAIN: {
        if (plan.attempt() <= skip_attempts ||
            session->stage() != ClientSession::Stage::kSharesSent) {
          absl::SleepFor(absl::Milliseconds(50));
          continue;
        }
        ASSERT_TRUE(session->OnShareDelivery(*ShareDelivery::Parse(task->payload())).ok());
        {
          std::lock_guard<std::mutex> lock(seen->mu);
          seen->seeds.insert(plan.training().seed());
        }
        std::vector<float> update(InitialModel().values.size(), delta);
        auto chunks = MaskUpdateForPlan(plan, *session, update, 100);
        ASSERT_TRUE(chunks.ok()) << chunks.status();
        auto sink = engine->BeginUpload(name, MaskedUploadHeader(plan.round(), *chunks));
        ASSERT_TRUE(sink.ok()) << sink.status();
        uint64_t offset = 0;
        for (const std::string& c : *chunks) {
          ASSERT_TRUE((*sink)->Write(offset, c).ok());
          offset += c.size();
        }
        ASSERT_TRUE((*sink)->Finish().ok());
        ++seen->uploads;
        continue;
      }
      default:
        continue;
    }
    if (!seen->also_sent_by.empty()) {
      // Refused as signed by another site, or as a replay once the other site answered; either
      // way it leaves the other site's own answer to come (RunSecureSite asserts it is taken).
      Status copy = engine->SubmitSecAgg(seen->also_sent_by, m);
      ASSERT_THAT(std::string(copy.message()),
                  ::testing::AnyOf(HasSubstr("signed as site"), HasSubstr("replay refused")))
          << copy;
      ASSERT_FALSE(copy.ok());
      ++seen->refused_copies;
    }
    Status st = engine->SubmitSecAgg(name, m);
    ASSERT_TRUE(st.ok()) << st;
    if (m.stage() == v1::Task::SECAGG_ADVERTISE) ++seen->advertised;
  }
}

EngineOptions SecureOptions(const std::string& name) {
  EngineOptions o = testing::EngineTestOptions("secure_" + name);
  o.allowed_sites = {"a", "b", "c", "d"};
  o.coordinator_country = "DE";
  o.secure.enabled = true;
  o.secure.degree = 3;
  o.secure.threshold = 2;
  o.secure.clip = 1.0;
  o.secure.unmask_device = "cpu";
  o.secure.stage_timeout = absl::Seconds(5);
  o.upload_timeout = absl::Seconds(2);
  o.config_sha256 = std::string(64, 'c');
  return o;
}

// On the engine's stopped clock, its first `attempts` attempts wait out upload_timeout for
// `straggler`, which sits their uploads out: once every other site in `seen` committed its
// upload of an attempt, moves the clock past that attempt's deadline (the straggler still asked
// to train until then). Returns early once `ran`.
void PassUploadDeadlines(RoundEngine& engine, int attempts, const std::string& straggler,
                         const std::map<std::string, Seen>& seen, const std::atomic<bool>& ran) {
  auto& clock = static_cast<FakeClock&>(*engine.options().clock);
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    auto uploaded = [&] {
      for (const auto& [name, s] : seen) {
        if (name != straggler && s.uploads.load() < attempt) return false;
      }
      return true;
    };
    if (!testing::Eventually([&] { return ran.load() || uploaded(); }) || ran.load()) return;
    testing::PassDeadline(clock, engine.options().upload_timeout, [&] {
      auto task = engine.NextTask(straggler, absl::ZeroDuration());
      return task.ok() && task->kind() == v1::Task::TRAIN;
    });
  }
}

// The review's case, end to end: 4 sites, no sum of fewer than 4; site d sits out its first
// upload. The engine does not unmask the three (no site is asked to unmask in attempt 1), the
// retry trains from another seed, and the one sum released is over all four.
TEST(RoundEngineSecureTest, ARoundBelowItsMinimumIsRetriedWithoutUnmaskingAnything) {
  EngineOptions o = SecureOptions("minimum");
  o.min_sites = 4;
  o.audit = OpenAudit(o);
  o.clock = testing::StoppedClock();
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (const char* s : {"a", "b", "c", "d"}) ASSERT_TRUE((*engine)->Join({s, "Org", "DE", s}).ok());
  const std::map<std::string, float> deltas{{"a", 0.1f}, {"b", 0.2f}, {"c", 0.3f}, {"d", 0.4f}};
  std::map<std::string, Seen> seen;
  seen["a"].also_sent_by = "b";  // b also sends a's messages as its own: refused, no effect
  std::vector<std::thread> sites;
  std::atomic<bool> stop{false};
  for (const auto& [name, delta] : deltas) {
    sites.emplace_back(RunSecureSite, engine->get(), name, delta, name == "d" ? 1u : 0u,
                       &seen[name], &stop);
  }
  std::atomic<bool> ran{false};
  std::thread mover([&] { PassUploadDeadlines(**engine, 1, "d", seen, ran); });
  Status run = (*engine)->Run();
  ran = true;
  (*engine)->Shutdown();  // had Run failed, sites waiting on the stopped clock hear WAIT
  mover.join();
  for (auto& t : sites) t.join();
  ASSERT_TRUE(run.ok()) << run;
  for (auto& [name, s] : seen) {
    EXPECT_EQ(s.kinds[1].count(v1::Task::SECAGG_UNMASK), 0u) << name;
    EXPECT_GE(s.kinds[2].count(v1::Task::SECAGG_UNMASK), 1u) << name;
  }
  // a's advertise, share and unmask messages of both attempts, each refused from b.
  EXPECT_GE(seen["a"].refused_copies.load(), 5);
  // a, b and c trained for both attempts, each time from another seed.
  EXPECT_EQ(seen["a"].seeds.size(), 2u);
  EXPECT_EQ(seen["d"].seeds.size(), 1u);
  // The plan said so, and the one released aggregate is the mean of all four deltas.
  EXPECT_EQ(EventsOf(o, audit_events::kAggregateReleased).size(), 1u);
  const std::vector<std::string> planned = EventsOf(o, audit_events::kRoundPlanned);
  ASSERT_EQ(planned.size(), 2u);
  for (int attempt = 0; attempt < 2; ++attempt) {
    EXPECT_THAT(planned[attempt], HasSubstr(absl::StrCat("\"attempt\":", attempt)));
    EXPECT_THAT(planned[attempt], HasSubstr("\"min_survivors\":4"));
  }
  auto model = ReadSafetensorsFile(o.state_dir + "/checkpoints/round-0001.safetensors");
  ASSERT_TRUE(model.ok()) << model.status();
  for (float v : model->values) ASSERT_NEAR(v, 1.25f, 1e-3);
}

// A site that is sent the plan and then falls silent (it neither answers the plan nor
// advertises a key; only its evaluations still come) is dropped at advertise_keys when that
// stage's deadline passes, on record: the others' sum is released without it, and nothing of
// it was consented to, received or unmasked.
TEST(RoundEngineSecureTest, ASiteSilentAfterThePlanIsDroppedWhereItFellSilent) {
  EngineOptions o = SecureOptions("silent");
  o.min_sites = 3;
  o.audit = OpenAudit(o);
  o.clock = testing::StoppedClock();
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (const char* s : {"a", "b", "c", "d"}) ASSERT_TRUE((*engine)->Join({s, "Org", "DE", s}).ok());
  const std::map<std::string, float> deltas{{"a", 0.1f}, {"b", 0.2f}, {"c", 0.3f}};
  std::map<std::string, Seen> seen;
  std::vector<std::thread> sites;
  std::atomic<bool> stop{false};
  for (const auto& [name, delta] : deltas) {
    sites.emplace_back(RunSecureSite, engine->get(), name, delta, 0u, &seen[name], &stop);
  }
  std::atomic<int> plans_seen_by_d{0};
  sites.emplace_back([&] {
    while (!stop) {
      auto task = (*engine)->NextTask("d", absl::Milliseconds(100));
      if (!task.ok() || task->kind() == v1::Task::DONE) return;
      if (task->kind() == v1::Task::SECAGG_ADVERTISE) ++plans_seen_by_d;
      if (task->kind() == v1::Task::EVALUATE) {
        (void)(*engine)->ReportMetrics("d", testing::PlausibleReport(task->plan().round()));
      }
    }
  });
  std::atomic<bool> ran{false};
  std::thread mover([&] {
    auto& clock = static_cast<FakeClock&>(*o.clock);
    const bool advertised = testing::Eventually([&] {
      return ran.load() || (plans_seen_by_d.load() > 0 && seen["a"].advertised.load() > 0 &&
                            seen["b"].advertised.load() > 0 && seen["c"].advertised.load() > 0);
    });
    if (!advertised || ran.load()) return;
    testing::PassDeadline(clock, o.secure.stage_timeout, [&] {
      auto task = (*engine)->NextTask("d", absl::ZeroDuration());
      return task.ok() && task->kind() == v1::Task::SECAGG_ADVERTISE;
    });
  });
  Status run = (*engine)->Run();
  ran = true;
  stop = true;
  (*engine)->Shutdown();
  mover.join();
  for (auto& t : sites) t.join();
  ASSERT_TRUE(run.ok()) << run;

  const std::vector<std::string> dropped = EventsOf(o, audit_events::kSiteDropped);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_THAT(dropped[0], AllOf(HasSubstr("\"site\":\"d\""), HasSubstr("\"round\":1"),
                                HasSubstr("\"stage\":\"advertise_keys\"")));
  for (const char* event : {audit_events::kSiteConsented, audit_events::kUpdateReceived}) {
    for (const std::string& r : EventsOf(o, event)) {
      EXPECT_THAT(r, Not(HasSubstr("\"site\":\"d\""))) << event;
    }
  }
  const std::vector<std::string> released = EventsOf(o, audit_events::kAggregateReleased);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_THAT(released[0], HasSubstr("\"sites\":[\"a\",\"b\",\"c\"]"));
  auto model = ReadSafetensorsFile(o.state_dir + "/checkpoints/round-0001.safetensors");
  ASSERT_TRUE(model.ok()) << model.status();
  for (float v : model->values) ASSERT_NEAR(v, 1.2f, 1e-3);
}

// A round that never reaches its minimum stops after rounds.max_attempts plans, on record,
// instead of planning (and costing the sites key material and privacy) without end. A
// coordinator restarted over the same state tries again, numbering its plans on from there.
TEST(RoundEngineSecureTest, AttemptsPerRoundAreCapped) {
  EngineOptions o = SecureOptions("cap");
  o.min_sites = 4;
  o.upload_timeout = absl::Milliseconds(500);
  o.audit = OpenAudit(o);
  o.clock = testing::StoppedClock();
  for (int max_attempts : {2, 1}) {
    o.max_attempts = max_attempts;
    auto engine = RoundEngine::Create(o, InitialModel());
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (const char* s : {"a", "b", "c", "d"}) {
      ASSERT_TRUE((*engine)->Join({s, "Org", "DE", s}).ok());
    }
    std::map<std::string, Seen> seen;
    std::vector<std::thread> sites;
    std::atomic<bool> stop{false};
    for (const char* name : {"a", "b", "c", "d"}) {
      // d never uploads: every attempt ends below the minimum.
      sites.emplace_back(RunSecureSite, engine->get(), name, 0.1f,
                         std::string(name) == "d" ? 1000u : 0u, &seen[name], &stop);
    }
    std::atomic<bool> ran{false};
    std::thread mover([&] { PassUploadDeadlines(**engine, max_attempts, "d", seen, ran); });
    Status run = (*engine)->Run();
    ran = true;
    stop = true;
    (*engine)->Shutdown();  // sites waiting on the stopped clock hear WAIT and see `stop`
    mover.join();
    for (auto& t : sites) t.join();
    EXPECT_EQ(run.code(), absl::StatusCode::kResourceExhausted) << run;
    EXPECT_THAT(std::string(run.message()), HasSubstr("rounds.max_attempts"));
  }
  const std::vector<std::string> planned = EventsOf(o, audit_events::kRoundPlanned);
  ASSERT_EQ(planned.size(), 3u);
  EXPECT_THAT(planned[2], HasSubstr("\"attempt\":2"));  // the restart's plan is the third
  EXPECT_EQ(EventsOf(o, audit_events::kRoundAbandoned).size(), 2u);
  EXPECT_EQ(EventsOf(o, audit_events::kAggregateReleased).size(), 0u);
}

StatusOr<v1::Task> AwaitTask(RoundEngine& engine, const std::string& site, v1::Task::Kind kind) {
  for (int i = 0; i < 100; ++i) {
    ASSIGN_OR_RETURN(v1::Task task, engine.NextTask(site, absl::Milliseconds(100)));
    if (task.kind() == kind) return task;
  }
  return absl::DeadlineExceededError(absl::StrCat(site, " got no ", v1::Task::Kind_Name(kind)));
}

// One site, one update: a second upload while the first is open is refused on record, and so
// is one after the first was committed; the aggregate counts the site once. A secure-
// aggregation message outside a secure stage is refused (it used to throw).
TEST(RoundEngineSecureTest, ASiteUploadsOneUpdatePerAttempt) {
  EngineOptions o = testing::EngineTestOptions("one_upload");
  o.coordinator_country = "DE";
  o.upload_timeout = absl::Seconds(30);
  o.evaluate_timeout = absl::Seconds(30);
  o.config_sha256 = std::string(64, 'c');
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  RoundEngine& e = **engine;
  for (const char* s : {"a", "b"}) ASSERT_TRUE(e.Join({s, "Org", "DE", s}).ok());
  // Runs the engine; a failed assertion below returns early, and this still stops and joins it.
  struct Driver {
    RoundEngine& engine;
    Status run;
    std::thread thread;
    ~Driver() {
      engine.Shutdown();
      if (thread.joinable()) thread.join();
    }
  } driver{e, {}, {}};
  driver.thread = std::thread([&] { driver.run = e.Run(); });
  for (const char* s : {"a", "b"}) {  // round 0's evaluation
    auto eval = AwaitTask(e, s, v1::Task::EVALUATE);
    ASSERT_TRUE(eval.ok()) << eval.status();
    v1::SecAggSubmission stray;
    stray.set_round(eval->plan().round());
    stray.set_stage(v1::Task::EVALUATE);
    EXPECT_EQ(e.SubmitSecAgg(s, stray).code(), absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE(e.ReportMetrics(s, testing::PlausibleReport(eval->plan().round())).ok());
  }
  auto task = AwaitTask(e, "a", v1::Task::TRAIN);
  ASSERT_TRUE(task.ok()) << task.status();
  const v1::RoundPlan plan = task->plan();
  ASSERT_TRUE(e.Accept("a", plan).ok());
  v1::SecAggSubmission stray;
  stray.set_round(plan.round());
  stray.set_stage(v1::Task::TRAIN);
  Status refused_message = e.SubmitSecAgg("a", stray);
  EXPECT_EQ(refused_message.code(), absl::StatusCode::kFailedPrecondition) << refused_message;

  auto [bytes, header] = testing::PlainUpdate(e, "a", plan, 0.5f, 100);
  auto first = e.BeginUpload("a", header);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = e.BeginUpload("a", header);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in progress"));
  ASSERT_TRUE((*first)->Write(0, bytes).ok());
  ASSERT_TRUE((*first)->Finish().ok());
  auto third = e.BeginUpload("a", header);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(EventsOf(o, audit_events::kUploadRefused).size(), 2u);

  ASSERT_TRUE(AwaitTask(e, "b", v1::Task::TRAIN).ok());
  ASSERT_TRUE(e.Accept("b", plan).ok());
  auto [b_bytes, b_header] = testing::PlainUpdate(e, "b", plan, 0.25f, 100);
  auto b = e.BeginUpload("b", b_header);
  ASSERT_TRUE(b.ok()) << b.status();
  const size_t half = b_bytes.size() / 2;
  ASSERT_TRUE((*b)->Write(0, b_bytes.substr(0, half)).ok());
  ASSERT_TRUE((*b)->Write(half, b_bytes.substr(half)).ok());
  ASSERT_TRUE((*b)->Finish().ok());
  for (const char* s : {"a", "b"}) {
    auto eval = AwaitTask(e, s, v1::Task::EVALUATE);
    ASSERT_TRUE(eval.ok()) << eval.status();
    ASSERT_TRUE(e.ReportMetrics(s, testing::PlausibleReport(eval->plan().round())).ok());
  }
  driver.thread.join();
  ASSERT_TRUE(driver.run.ok()) << driver.run;
  auto model = ReadSafetensorsFile(o.state_dir + "/checkpoints/round-0001.safetensors");
  ASSERT_TRUE(model.ok()) << model.status();
  for (float v : model->values) ASSERT_EQ(v, 1.375f);  // 1 + (0.5 + 0.25) / 2: a counted once
}

// A coordinator restarted in the middle of a round plans it again as a retry: attempt 2, with
// a training seed of its own. Sites that sent the first attempt's update would refuse to send
// it again; a plan with the first seed would leave the round without them.
TEST(RoundEngineSecureTest, ARoundReplannedAfterARestartIsARetryWithItsOwnSeed) {
  EngineOptions o = testing::EngineTestOptions("restart_attempt");
  o.min_sites = 1;
  v1::RoundPlan plans[2];
  for (v1::RoundPlan& plan : plans) {
    auto engine = RoundEngine::Create(o, InitialModel());
    ASSERT_TRUE(engine.ok()) << engine.status();
    RoundEngine& e = **engine;
    ASSERT_TRUE(e.Join({"a", "Org", "DE", "a"}).ok());
    Status run;
    std::thread driver([&] { run = e.Run(); });
    auto eval = e.NextTask("a", absl::Seconds(5));
    if (eval.ok() && eval->kind() == v1::Task::EVALUATE) {  // round 0, the first time only
      EXPECT_TRUE(e.ReportMetrics("a", testing::PlausibleReport(0)).ok());
    }
    auto train = AwaitTask(e, "a", v1::Task::TRAIN);
    e.Shutdown();
    driver.join();
    ASSERT_TRUE(train.ok()) << train.status();
    EXPECT_EQ(run.code(), absl::StatusCode::kCancelled) << run;
    plan = train->plan();
  }
  EXPECT_EQ(plans[0].round(), 1u);
  EXPECT_EQ(plans[1].round(), 1u);
  EXPECT_EQ(plans[0].attempt(), 1u);
  EXPECT_EQ(plans[1].attempt(), 2u);
  EXPECT_NE(plans[0].training().seed(), plans[1].training().seed());
}

// A plaintext site until DONE or `stop`: accepts each plan, uploads the update `delta`.
void RunPlainSite(RoundEngine* engine, const std::string& name, float delta,
                  const std::atomic<bool>* stop) {
  ASSERT_TRUE(engine->Join({name, "Org", "DE", name}).ok());
  std::string uploaded;
  for (int i = 0; i < 600 && !*stop; ++i) {
    auto task = engine->NextTask(name, absl::Milliseconds(100));
    ASSERT_TRUE(task.ok()) << task.status();
    const v1::RoundPlan& plan = task->plan();
    if (task->kind() == v1::Task::DONE) return;
    if (task->kind() == v1::Task::EVALUATE) {
      (void)engine->ReportMetrics(name, testing::PlausibleReport(plan.round()));
    }
    if (task->kind() != v1::Task::TRAIN || uploaded == PlanSha256(plan)) continue;
    uploaded = PlanSha256(plan);
    ASSERT_TRUE(engine->Accept(name, plan).ok());
    auto [bytes, header] = testing::PlainUpdate(*engine, name, plan, delta, 100);
    auto sink = engine->BeginUpload(name, header);
    ASSERT_TRUE(sink.ok()) << sink.status();
    ASSERT_TRUE((*sink)->Write(0, bytes).ok());
    ASSERT_TRUE((*sink)->Finish().ok());
  }
}

// An engine with the central Gaussian at a budget of 1000, on a stopped clock: no deadline
// passes, so every site answers.
EngineOptions CentralGaussianOptions(const std::string& name) {
  EngineOptions o = testing::EngineTestOptions(name);
  o.upload_timeout = absl::Seconds(30);
  o.privacy.enabled = true;
  o.privacy.mechanism = kCentralGaussian;
  o.privacy.clip_norm = 1.0;
  o.privacy.noise_multiplier = 1.0;
  o.privacy.budget = {1000.0, 1e-5};
  o.clock = testing::StoppedClock();
  return o;
}

// Runs `engine` with plaintext sites "a" and "b" (each uploading `delta`) until it returns;
// then shuts it down, so that sites waiting on a stopped clock hear WAIT and stop.
Status RunWithTwoPlainSites(RoundEngine* engine) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> sites;
  for (const char* name : {"a", "b"}) sites.emplace_back(RunPlainSite, engine, name, 0.01f, &stop);
  Status run = engine->Run();
  stop = true;
  engine->Shutdown();
  for (auto& t : sites) t.join();
  return run;
}

// Every aggregate that exists is a release and is booked, once per attempt: here a round's
// aggregate is computed, its checkpoint cannot be written and the coordinator stops; restarted,
// it runs the round again (attempt 2, new contributions) and books that aggregate too. Before,
// the ledger was keyed by round, so the second release of round 1 went unbooked.
TEST(RoundEnginePrivacyTest, EveryAggregateIsBookedAlsoWhenItsRoundRunsAgain) {
  EngineOptions o = CentralGaussianOptions("privacy_rerun");
  // A folder where round 1's checkpoint goes: writing it fails after the aggregate exists.
  const std::string blocker = o.state_dir + "/checkpoints/round-0001.safetensors";
  for (bool blocked : {true, false}) {
    if (blocked) std::filesystem::create_directories(blocker + "/x");
    auto engine = RoundEngine::Create(o, InitialModel());
    ASSERT_TRUE(engine.ok()) << engine.status();
    Status run = RunWithTwoPlainSites(engine->get());
    if (blocked) {
      EXPECT_FALSE(run.ok());
      std::filesystem::remove_all(blocker);
    } else {
      ASSERT_TRUE(run.ok()) << run;
    }
  }
  auto ledger = PrivacyLedger::Open(o.state_dir + "/privacy.json", o.privacy.budget);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EXPECT_EQ(ledger->num_rounds(), 2u);
}

// What the operator watches: each guarantee's epsilon against its own budget (the record-level
// one has a budget of its own, not the client-level one).
TEST(RoundEnginePrivacyTest, TheStatusBoardShowsEachGuaranteeAgainstItsOwnBudget) {
  EngineOptions o = CentralGaussianOptions("privacy_status");
  o.record_privacy.enabled = true;
  o.record_privacy.noise_multiplier = 1.0;
  o.record_privacy.sampling_rate = 0.01;
  o.record_privacy.steps = 10;
  o.record_privacy.budget = {40.0, 1e-5};
  o.training.set_epochs(1);
  o.status = std::make_shared<FederationStatusBoard>();
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  Status run = RunWithTwoPlainSites(engine->get());
  ASSERT_TRUE(run.ok()) << run;
  std::map<std::string, PrivacyStatus> by_guarantee;
  for (const PrivacyStatus& p : o.status->Snapshot().privacy) by_guarantee[p.guarantee] = p;
  ASSERT_EQ(by_guarantee.size(), 2u);
  EXPECT_EQ(by_guarantee["client-level"].epsilon_budget, 1000.0);
  EXPECT_EQ(by_guarantee["record-level"].epsilon_budget, 40.0);
  EXPECT_GT(by_guarantee["record-level"].epsilon_spent, 0.0);
}

// Spill files of two uploads never collide, whatever names they are given.
TEST(RoundEngineSecureTest, SpillFilesOfTwoUploadsNeverShareAFile) {
  const std::string dir = ::testing::TempDir() + "spill_unique";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto one = SpillFile::Create(dir, "a-1-masked");
  auto two = SpillFile::Create(dir, "a-1-masked");
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_NE((*one)->path(), (*two)->path());
  ASSERT_TRUE((*one)->Append("first", 5).ok());
  ASSERT_TRUE((*two)->Append("x", 1).ok());
  std::string back(5, '\0');
  ASSERT_TRUE((*one)->ReadAt(0, back.data(), 5).ok());
  EXPECT_EQ(back, "first");
  const std::string path = (*one)->path();
  one->reset();
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(SpillFile::Create(dir + "/absent", "a").ok());
}

}  // namespace
}  // namespace hansa
