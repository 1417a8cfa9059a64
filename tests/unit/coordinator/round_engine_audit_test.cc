// RoundEngine's compliance records: what audit.jsonl holds after real rounds with sites as
// threads, checked against the federation CA the way `hansa audit verify` does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <thread>

#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/tensor/safetensors.h"
#include "coordinator/round_engine.h"
#include "proto/plan_digest.h"
#include "tests/unit/audit/test_federation.h"
#include "tests/unit/coordinator/engine_test_setup.h"

namespace hansa {
namespace {

using ::hansa::testing::TestFederation;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

Model InitialModel() { return testing::OnesModel(20, 10); }

// One site suffices; timeouts long enough that a record of a dropout means a real one.
EngineOptions Options(const std::string& name) {
  EngineOptions o = testing::EngineTestOptions("audit_" + name);
  o.coordinator_country = "DE";
  o.min_sites = 1;
  o.upload_timeout = absl::Seconds(60);
  o.evaluate_timeout = absl::Seconds(60);
  o.config_sha256 = std::string(64, 'c');
  return o;
}

std::shared_ptr<AuditLog> OpenAudit(const EngineOptions& o) {
  const auto& coordinator = TestFederation::Get().coordinator();
  auto log = AuditLog::Open(o.state_dir + "/audit.jsonl", coordinator.Key(), coordinator.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? std::shared_ptr<AuditLog>(std::move(*log)) : nullptr;
}

// A site that answers every training plan (accepting or refusing), uploads `delta` when it
// accepted, and evaluates; until DONE.
void RunSite(RoundEngine* engine, const std::string& name, bool accept, float delta) {
  ASSERT_TRUE(engine->Join({name, "Org", "DE", "fp-" + name}).ok());
  std::string answered;
  for (int i = 0; i < 600; ++i) {
    auto task = engine->NextTask(name, absl::Milliseconds(100));
    ASSERT_TRUE(task.ok()) << task.status();
    const v1::RoundPlan& plan = task->plan();
    if (task->kind() == v1::Task::DONE) return;
    if (task->kind() == v1::Task::TRAIN && answered != PlanSha256(plan)) {
      answered = PlanSha256(plan);
      v1::PlanResponse response;
      response.set_round(plan.round());
      response.set_plan_sha256(answered);
      response.set_accepted(accept);
      if (!accept) response.set_reason("model not allowed by policy.allowed_models");
      ASSERT_TRUE(engine->RespondToPlan(name, response).ok());
      EXPECT_EQ(engine->RespondToPlan(name, response).code(), absl::StatusCode::kAlreadyExists);
      if (!accept) continue;
      auto [bytes, header] = testing::PlainUpdate(*engine, name, plan, delta, 10);
      auto sink = engine->BeginUpload(name, header);
      ASSERT_TRUE(sink.ok()) << sink.status();
      ASSERT_TRUE((*sink)->Write(0, bytes).ok());
      ASSERT_TRUE((*sink)->Finish().ok());
    }
    if (task->kind() == v1::Task::EVALUATE) {
      ASSERT_TRUE(engine->ReportMetrics(name, testing::PlausibleReport(plan.round())).ok());
    }
  }
  ADD_FAILURE() << name << " never saw DONE";
}

// a (accepting, uploading `a_delta`) and b (accepting or not) both join before the first
// plan, so both are in its cohort; runs the engine to its end.
Status RunTwoSites(RoundEngine* engine, float a_delta, bool b_accepts, float b_delta) {
  EXPECT_TRUE(engine->Join({"a", "Org", "DE", "fp-a"}).ok());
  EXPECT_TRUE(engine->Join({"b", "Org", "DE", "fp-b"}).ok());
  std::thread a([&] { RunSite(engine, "a", true, a_delta); });
  std::thread b([&] { RunSite(engine, "b", b_accepts, b_delta); });
  Status run = engine->Run();
  a.join();
  b.join();
  return run;
}

std::vector<AuditRecord> Records(const EngineOptions& o) {
  auto records = ReadAuditRecordsUnverified(o.state_dir + "/audit.jsonl");
  EXPECT_TRUE(records.ok()) << records.status();
  return records.ok() ? *records : std::vector<AuditRecord>{};
}

std::vector<const AuditRecord*> Events(const std::vector<AuditRecord>& records,
                                       const std::string& event) {
  std::vector<const AuditRecord*> out;
  for (const auto& r : records) {
    if (r.event == event) out.push_back(&r);
  }
  return out;
}

TEST(RoundEngineAuditTest, RecordsEveryStepOfARoundInAChainTheCaVerifies) {
  EngineOptions o = Options("round");
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();

  // A site from outside the EU/EEA is refused at join, and the refusal is on record.
  auto foreign = (*engine)->Join({"c", "Boston Clinic", "US", "fp-c"});
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(foreign.status().message()),
              HasSubstr("not an allowed jurisdiction of this federation"));
  EXPECT_EQ((*engine)->Join({"intruder", "Org", "DE", "fp-x"}).status().code(),
            absl::StatusCode::kPermissionDenied);

  Status run = RunTwoSites(engine->get(), 0.5f, true, -0.5f);
  ASSERT_TRUE(run.ok()) << run;
  o.audit.reset();
  engine->reset();

  auto summary = VerifyAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                                VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(summary.ok()) << summary.status();
  std::vector<AuditRecord> records = Records(o);
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front().event, "federation_started");
  EXPECT_EQ(records.front().fields["config_sha256"], o.config_sha256);
  EXPECT_EQ(records.front().fields["coordinator"], "coordinator");
  EXPECT_EQ(records.front().fields["aggregation"], "plaintext");
  EXPECT_EQ(records.back().event, "federation_finished");
  EXPECT_TRUE(summary->closed) << summary->ToText();  // the engine's last record closes the log

  auto refused = Events(records, "site_refused");
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(refused[0]->fields["site"], "c");
  EXPECT_EQ(refused[0]->fields["country"], "US");
  EXPECT_THAT(refused[0]->fields["reason"].get<std::string>(), HasSubstr("jurisdiction"));
  EXPECT_EQ(refused[1]->fields["site"], "intruder");

  auto planned = Events(records, "round_planned");
  ASSERT_FALSE(planned.empty());
  const json& plan = planned.back()->fields;
  EXPECT_EQ(plan["round"], 1);
  EXPECT_EQ(plan["plan_sha256"].get<std::string>().size(), 64u);

  EXPECT_THAT(plan["cohort"], ElementsAre("a", "b"));
  auto consented = Events(records, "site_consented");
  auto updates = Events(records, "update_received");
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(consented.size(), updates.size());
  for (const AuditRecord* u : updates) {
    EXPECT_EQ(u->fields["round"], 1);
    EXPECT_EQ(u->fields["sha256"].get<std::string>().size(), 64u);
    EXPECT_GT(u->fields["bytes"].get<int64_t>(), 0);
  }
  auto released = Events(records, "aggregate_released");
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0]->fields["sites"], plan["cohort"]);
  auto checkpoints = Events(records, "checkpoint_written");
  ASSERT_EQ(checkpoints.size(), 1u);
  EXPECT_EQ(checkpoints[0]->fields["sha256"], released[0]->fields["model_sha256"]);
  EXPECT_TRUE(Events(records, "site_dropped").empty());
}

TEST(RoundEngineAuditTest, DeclinedSiteLeavesTheRoundAtOnceWithItsReasonOnRecord) {
  EngineOptions o = Options("declined");
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  Status run = RunTwoSites(engine->get(), 0.5f, false, 0.0f);
  ASSERT_TRUE(run.ok()) << run;
  o.audit.reset();
  engine->reset();

  std::vector<AuditRecord> records = Records(o);
  auto declined = Events(records, "site_declined");
  ASSERT_EQ(declined.size(), 1u);
  EXPECT_EQ(declined[0]->fields["site"], "b");
  EXPECT_THAT(declined[0]->fields["reason"].get<std::string>(), HasSubstr("allowed_models"));
  // b was taken out of the round when it said no: it is not recorded as having dropped out
  // at the upload deadline, and only a's update is in the aggregate.
  for (const AuditRecord* d : Events(records, "site_dropped")) {
    EXPECT_NE(d->fields["site"], "b") << d->fields.dump();
  }
  auto released = Events(records, "aggregate_released");
  ASSERT_EQ(released.size(), 1u);
  EXPECT_THAT(released[0]->fields["sites"], ElementsAre("a"));
}

TEST(RoundEngineAuditTest, AnswersToAnotherPlanOrOutsideARoundAreRefused) {
  EngineOptions o = Options("answers");
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->Join({"a", "Org", "DE", "fp-a"}).ok());
  v1::PlanResponse early;
  early.set_round(1);
  early.set_plan_sha256(std::string(64, '0'));
  early.set_accepted(true);
  EXPECT_EQ((*engine)->RespondToPlan("a", early).code(), absl::StatusCode::kFailedPrecondition);

  std::thread run([&] { EXPECT_TRUE(absl::IsCancelled((*engine)->Run())); });
  v1::Task task;
  for (int i = 0; i < 200 && task.kind() != v1::Task::TRAIN; ++i) {
    auto next = (*engine)->NextTask("a", absl::Milliseconds(100));
    ASSERT_TRUE(next.ok());
    task = *next;
    if (task.kind() == v1::Task::EVALUATE) {
      v1::MetricsReport r;
      r.set_round(task.plan().round());
      r.set_num_examples(1);
      r.set_accuracy(0.1);
      ASSERT_TRUE((*engine)->ReportMetrics("a", r).ok());
    }
  }
  ASSERT_EQ(task.kind(), v1::Task::TRAIN);
  v1::PlanResponse other = early;
  auto status = (*engine)->RespondToPlan("a", other);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("not the plan of round 1"));
  // Refusing ends a's part in the round; with nobody left the round is retried, then the
  // engine stops when told.
  v1::PlanResponse no = early;
  no.set_plan_sha256(PlanSha256(task.plan()));
  no.set_accepted(false);
  EXPECT_TRUE((*engine)->RespondToPlan("a", no).ok());
  (*engine)->Shutdown();
  run.join();
}

TEST(RoundEngineAuditTest, RestartContinuesTheSameChainWithAResumeRecord) {
  EngineOptions o = Options("restart");
  // One coordinator run up to `rounds`, its audit log closed at the end as at an exit.
  auto run_to = [&](int64_t rounds) {
    o.rounds = rounds;
    o.audit = OpenAudit(o);
    auto engine = RoundEngine::Create(o, InitialModel());
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::thread a([&] { RunSite(engine->get(), "a", true, 0.25f); });
    EXPECT_TRUE((*engine)->Run().ok());
    a.join();
    engine->reset();
    o.audit.reset();
  };
  run_to(1);
  const size_t first_run = Records(o).size();
  run_to(2);

  auto summary = VerifyAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                                VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(summary.ok()) << summary.status();
  std::vector<AuditRecord> records = Records(o);
  ASSERT_GT(records.size(), first_run);
  EXPECT_EQ(records[first_run].event, "coordinator_resumed");
  EXPECT_EQ(records[first_run].fields["after_round"], 1);
  EXPECT_EQ(Events(records, "federation_started").size(), 1u);
  auto released = Events(records, "aggregate_released");
  ASSERT_EQ(released.size(), 2u);
  EXPECT_EQ(released[1]->fields["round"], 2);
}

// Polls until `site` is asked to train, reporting any evaluation first; the TRAIN task.
v1::Task NextTrainTask(RoundEngine* engine, const std::string& site) {
  for (int i = 0; i < 600; ++i) {
    auto task = engine->NextTask(site, absl::Milliseconds(100));
    if (!task.ok() || task->kind() == v1::Task::TRAIN || task->kind() == v1::Task::DONE) {
      return task.ok() ? *task : v1::Task();
    }
    if (task->kind() == v1::Task::EVALUATE) {
      v1::MetricsReport r;
      r.set_round(task->plan().round());
      r.set_num_examples(1);
      r.set_accuracy(0.1);
      EXPECT_TRUE(engine->ReportMetrics(site, r).ok());
    }
  }
  return v1::Task();
}

// A site's reason is its own bytes: cut at 2048 bytes in the middle of a character, or not
// UTF-8 at all, it once made the audit append fail, so the refusal went unrecorded (and the
// site's answer was refused). Now each refusal is on record, cut at a character boundary.
TEST(RoundEngineAuditTest, RefusalIsRecordedWhateverBytesItsReasonHolds) {
  EngineOptions o = Options("reason_bytes");
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  // 'x' then é's (2 bytes each): byte 2048 is the second half of an é.
  std::string accents = "x";
  for (int i = 0; i < 1499; ++i) accents += "\xC3\xA9";
  accents += "x";
  ASSERT_EQ(accents.size(), 3000u);
  const std::string invalid = "policy \xFF\xFE says no \xC3";
  ASSERT_TRUE((*engine)->Join({"a", "Org", "DE", "fp-a"}).ok());
  ASSERT_TRUE((*engine)->Join({"b", "Org", "DE", "fp-b"}).ok());

  std::thread run([&] { (void)(*engine)->Run(); });  // ends at Shutdown, however it ends
  auto refuse = [&](const std::string& site, const std::string& reason) {
    v1::Task task = NextTrainTask(engine->get(), site);
    ASSERT_EQ(task.kind(), v1::Task::TRAIN) << site;
    v1::PlanResponse no;
    no.set_round(task.plan().round());
    no.set_plan_sha256(PlanSha256(task.plan()));
    no.set_accepted(false);
    no.set_reason(reason);
    Status answered = (*engine)->RespondToPlan(site, no);
    EXPECT_TRUE(answered.ok()) << site << ": " << answered;
  };
  std::thread a([&] { refuse("a", accents); });
  std::thread b([&] { refuse("b", invalid); });
  a.join();
  b.join();
  (*engine)->Shutdown();
  run.join();
  o.audit.reset();
  engine->reset();

  auto summary = VerifyAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                                VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<AuditRecord> records = Records(o);
  std::map<std::string, std::string> reasons;
  for (const AuditRecord* d : Events(records, "site_declined")) {
    reasons[d->fields["site"].get<std::string>()] = d->fields["reason"].get<std::string>();
  }
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons["a"], accents.substr(0, 2047));  // the split é left out whole
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(reasons["b"], "policy " + fffd + fffd + " says no " + fffd);
}

}  // namespace
}  // namespace hansa
