// RoundEngine's compliance records: what audit.jsonl holds after real rounds with sites as
// threads, checked against the federation CA the way `hansa audit verify` does.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/tensor/safetensors.h"
#include "coordinator/round_engine.h"
#include "proto/plan_digest.h"
#include "tests/unit/audit/test_federation.h"
#include "tests/unit/coordinator/engine_test_setup.h"

namespace hansa {
namespace {

using ::hansa::testing::TestFederation;
using ::testing::AllOf;
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
// accepted, and evaluates; until DONE, or until `stop` (when given) is set. `plans`, when
// given, gets every training and evaluation plan the site saw.
void RunSiteSeeing(RoundEngine* engine, const std::string& name, bool accept, float delta,
                   const std::atomic<bool>* stop, std::vector<v1::RoundPlan>* plans) {
  ASSERT_TRUE(engine->Join({name, "Org", "DE", "fp-" + name}).ok());
  std::string answered;
  for (int i = 0; i < 600; ++i) {
    if (stop != nullptr && stop->load()) return;
    auto task = engine->NextTask(name, absl::Milliseconds(100));
    ASSERT_TRUE(task.ok()) << task.status();
    const v1::RoundPlan& plan = task->plan();
    if (task->kind() == v1::Task::DONE) return;
    if (plans != nullptr &&
        (task->kind() == v1::Task::TRAIN || task->kind() == v1::Task::EVALUATE)) {
      plans->push_back(plan);
    }
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

void RunSite(RoundEngine* engine, const std::string& name, bool accept, float delta,
             const std::atomic<bool>* stop = nullptr) {
  RunSiteSeeing(engine, name, accept, delta, stop, nullptr);
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

// A site admitted once the federation has finished (one that connects in its last moments)
// adds nothing after the closing record: the log still verifies as closed, and the site hears
// DONE. A refusal is recorded whenever it happens, and one after the close leaves the log
// closed too.
TEST(RoundEngineAuditTest, AJoinAfterTheFederationFinishedLeavesTheLogClosed) {
  EngineOptions o = Options("late_join");
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE(RunTwoSites(engine->get(), 0.5f, true, -0.5f).ok());
  const size_t finished = Records(o).size();

  EXPECT_TRUE((*engine)->Join({"b", "Org", "DE", "fp-b2"}).ok());
  StatusOr<v1::Task> task = (*engine)->NextTask("b", absl::ZeroDuration());
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->kind(), v1::Task::DONE);
  std::vector<AuditRecord> records = Records(o);
  EXPECT_EQ(records.size(), finished);
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().event, "federation_finished");
  auto summary = VerifyAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                                VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->closed) << summary->ToText();

  EXPECT_FALSE((*engine)->Join({"intruder", "Org", "DE", "fp-x"}).ok());
  o.audit.reset();
  engine->reset();
  records = Records(o);
  ASSERT_EQ(records.size(), finished + 1);
  EXPECT_EQ(records.back().event, "site_refused");
  EXPECT_EQ(records.back().fields["site"], "intruder");
  summary = VerifyAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                           VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->closed) << summary->ToText();
  EXPECT_EQ(summary->closing_record, static_cast<int64_t>(finished) - 1);
  EXPECT_THAT(summary->ToText(), HasSubstr("(then 1 record of retention or refused connections)"));
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

// A site that dropped out and does not come back leaves too few within wait_for_sites: the
// engine stops, and the audit log ends with the round abandoned and why, not in the middle of a
// round. b joins and then stays silent: it is dropped from the round-0 evaluation and, once idle,
// no longer counts as connected.
TEST(RoundEngineAuditTest, TooFewSitesToPlanARoundAbandonItOnRecord) {
  EngineOptions o = Options("too_few");
  o.min_sites = 2;
  o.site_idle = absl::Seconds(2);
  o.wait_for_sites = absl::Milliseconds(300);
  o.evaluate_timeout = absl::Seconds(1);
  o.upload_timeout = absl::Seconds(1);
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->Join({"b", "Org", "DE", "fp-b"}).ok());
  std::atomic<bool> stop{false};
  std::thread a(RunSite, engine->get(), "a", true, 0.5f, &stop);
  Status run = (*engine)->Run();
  stop = true;
  a.join();
  EXPECT_EQ(run.code(), absl::StatusCode::kDeadlineExceeded) << run;
  EXPECT_THAT(std::string(run.message()), HasSubstr("only 1 of min_sites = 2"));
  o.audit.reset();
  engine->reset();

  std::vector<AuditRecord> records = Records(o);
  ASSERT_FALSE(records.empty());
  const AuditRecord& last = records.back();
  EXPECT_EQ(last.event, "round_abandoned") << last.fields.dump();
  EXPECT_EQ(last.fields["round"], 1);
  EXPECT_LE(last.fields["attempts"].get<int64_t>(), 1);  // b may still count for one plan
  EXPECT_THAT(last.fields.value("reason", ""), HasSubstr("sites connected within"));
  EXPECT_TRUE(Events(records, "aggregate_released").empty());
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

// A site whose policy refuses an evaluation plan answers it with the refusal: it is on record
// (site_declined) and the evaluation stops waiting for the site at once, on an engine whose
// clock stands still (so only the answer can end the evaluation). An acceptance, an answer
// naming another plan and a second refusal are refused.
TEST(RoundEngineAuditTest, ARefusedEvaluationIsOnRecordAndNotWaitedFor) {
  EngineOptions o = Options("refused_evaluation");
  o.clock = testing::StoppedClock();
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->Join({"a", "Org", "DE", "fp-a"}).ok());
  std::thread run([&] { EXPECT_TRUE(absl::IsCancelled((*engine)->Run())); });
  v1::Task task;
  for (int i = 0; i < 200 && task.kind() != v1::Task::EVALUATE; ++i) {
    auto next = (*engine)->NextTask("a", absl::Milliseconds(100));
    ASSERT_TRUE(next.ok());
    task = *next;
  }
  ASSERT_EQ(task.kind(), v1::Task::EVALUATE);
  EXPECT_EQ(task.plan().round(), 0u);
  v1::PlanResponse answer;
  answer.set_round(0);
  answer.set_plan_sha256(PlanSha256(task.plan()));
  answer.set_accepted(true);
  EXPECT_EQ((*engine)->RespondToPlan("a", answer).code(), absl::StatusCode::kInvalidArgument);
  answer.set_accepted(false);
  answer.set_reason("policy.require_legal_basis");
  v1::PlanResponse other = answer;
  other.set_plan_sha256(std::string(64, '0'));
  EXPECT_EQ((*engine)->RespondToPlan("a", other).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*engine)->RespondToPlan("a", answer).ok());
  const Status again = (*engine)->RespondToPlan("a", answer);
  // A replay while the evaluation is open, or (once it closed) an answer to no open plan.
  EXPECT_TRUE(absl::IsAlreadyExists(again) || absl::IsFailedPrecondition(again)) << again;
  // The stopped clock never reaches the evaluation's deadline: round 1's plan comes because
  // the refusal ended the evaluation.
  for (int i = 0; i < 200 && task.kind() != v1::Task::TRAIN; ++i) {
    auto next = (*engine)->NextTask("a", absl::Milliseconds(100));
    ASSERT_TRUE(next.ok());
    task = *next;
  }
  EXPECT_EQ(task.kind(), v1::Task::TRAIN);
  (*engine)->Shutdown();
  run.join();
  o.audit.reset();
  engine->reset();

  std::vector<AuditRecord> records = Records(o);
  auto declined = Events(records, "site_declined");
  ASSERT_EQ(declined.size(), 1u);
  EXPECT_EQ(declined[0]->fields["round"], 0);
  EXPECT_EQ(declined[0]->fields["site"], "a");
  EXPECT_EQ(declined[0]->fields["reason"], "policy.require_legal_basis");
  EXPECT_TRUE(Events(records, "site_dropped").empty());
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

// ---------------------------------------------------------------------------------------------
// A coordinator killed after it released a round (checkpoint_written, aggregate_released on
// record) and before the state store made that round the global model.

void ExecSql(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << (err ? err : "") << " in: " << sql;
  sqlite3_free(err);
  sqlite3_close(db);
}

// Runs a federation of two rounds with sites a and b (each uploading 0.25 from 10 examples)
// whose state store refuses to record round 1: a trigger in state.db, so the engine's own
// writes are untouched and the files left behind are those of a coordinator killed right
// before that write. Closes the engine and its audit log, drops the trigger; the run's status.
Status RunUntilReleasedButNotStored(EngineOptions& o) {
  o.rounds = 2;
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return engine.status();
  const std::string db = o.state_dir + "/state.db";
  ExecSql(db,
          "CREATE TRIGGER killed BEFORE INSERT ON rounds WHEN NEW.round = 1"
          " BEGIN SELECT RAISE(ABORT, 'coordinator killed here'); END");
  EXPECT_TRUE((*engine)->Join({"a", "Org", "DE", "fp-a"}).ok());
  EXPECT_TRUE((*engine)->Join({"b", "Org", "DE", "fp-b"}).ok());
  std::atomic<bool> stop{false};
  std::thread a([&] { RunSite(engine->get(), "a", true, 0.25f, &stop); });
  std::thread b([&] { RunSite(engine->get(), "b", true, 0.25f, &stop); });
  Status run = (*engine)->Run();
  stop = true;
  (*engine)->Shutdown();
  a.join();
  b.join();
  engine->reset();
  o.audit.reset();
  ExecSql(db, "DROP TRIGGER killed");
  return run;
}

std::vector<const AuditRecord*> EventsOfRound(const std::vector<AuditRecord>& records,
                                              const std::string& event, int64_t round) {
  std::vector<const AuditRecord*> out;
  for (const AuditRecord* r : Events(records, event)) {
    if (r->fields["round"] == round) out.push_back(r);
  }
  return out;
}

TEST(RoundEngineAuditTest, RestartAfterAKillBetweenReleaseAndStateStoreAdoptsTheRound) {
  EngineOptions o = Options("release_gap");
  Status killed = RunUntilReleasedButNotStored(o);
  ASSERT_EQ(killed.code(), absl::StatusCode::kInternal) << killed;
  ASSERT_THAT(std::string(killed.message()), HasSubstr("coordinator killed here"));
  std::vector<AuditRecord> records = Records(o);
  ASSERT_GE(records.size(), 2u);
  ASSERT_EQ(records[records.size() - 2].event, "checkpoint_written");
  ASSERT_EQ(records.back().event, "aggregate_released");
  const std::string released = records.back().fields["model_sha256"];
  const size_t first_run = records.size();

  // The restart makes the released round the global model instead of running it again.
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->completed_round(), 1);
  auto model = (*engine)->global_model();
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(ToHex(Sha256(*ReadFile(o.state_dir + "/checkpoints/round-0001.safetensors"))),
            released);
  for (float v : model->values) ASSERT_EQ(v, 1.25f);
  // Round 2 follows on it: 1.25 + 0.5 (a rerun of round 1 would give 1.5 + 0.5).
  std::atomic<bool> stop{false};
  std::thread a([&] { RunSite(engine->get(), "a", true, 0.5f, &stop); });
  std::thread b([&] { RunSite(engine->get(), "b", true, 0.5f, &stop); });
  Status run = (*engine)->Run();
  a.join();
  b.join();
  ASSERT_TRUE(run.ok()) << run;
  model = (*engine)->global_model();
  ASSERT_TRUE(model.ok()) << model.status();
  for (float v : model->values) ASSERT_EQ(v, 1.75f);
  engine->reset();
  o.audit.reset();

  auto summary = VerifyAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                                VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->closed);
  records = Records(o);
  ASSERT_GT(records.size(), first_run);
  EXPECT_EQ(records[first_run].event, "coordinator_resumed");
  EXPECT_EQ(records[first_run].fields["after_round"], 1);
  ASSERT_EQ(EventsOfRound(records, "aggregate_released", 1).size(), 1u);
  EXPECT_EQ(EventsOfRound(records, "checkpoint_written", 1).size(), 1u);
  EXPECT_EQ(EventsOfRound(records, "aggregate_released", 2).size(), 1u);
  const std::vector<AuditRecord> second_run(records.begin() + first_run, records.end());
  EXPECT_TRUE(EventsOfRound(second_run, "round_planned", 1).empty());
  EXPECT_TRUE(EventsOfRound(second_run, "update_received", 1).empty());
  EXPECT_EQ(EventsOfRound(second_run, "round_planned", 2).size(), 1u);

  // The adopted round's metrics line holds what its run knew: its sites and examples.
  std::ifstream in(o.state_dir + "/metrics.jsonl");
  std::vector<json> metrics;
  for (std::string line; std::getline(in, line);) metrics.push_back(json::parse(line));
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_EQ(metrics[1]["round"], 1);
  EXPECT_EQ(metrics[1]["sites"], 2);
  EXPECT_EQ(metrics[1]["examples"], 20);
  EXPECT_EQ(metrics[1]["model_sha256"], released);
}

// The released round's files are gone or changed: the restart stops, naming the round and
// the file, and neither adopts them nor runs the round again (a second sum of a released
// round); once the file is back from a backup, it resumes.
TEST(RoundEngineAuditTest, RestartRefusesAReleasedRoundWhoseCheckpointIsLostOrChanged) {
  EngineOptions o = Options("release_gap_lost");
  o.strategy.name = "fedavgm";  // with a state file of its own beside the checkpoint
  o.strategy.server_momentum = 0.5;
  ASSERT_EQ(RunUntilReleasedButNotStored(o).code(), absl::StatusCode::kInternal);
  const size_t records = Records(o).size();
  const std::string checkpoint = o.state_dir + "/checkpoints/round-0001.safetensors";
  const std::string strategy = o.state_dir + "/checkpoints/strategy-0001.safetensors";
  auto restart = [&] {
    o.audit = OpenAudit(o);
    auto engine = RoundEngine::Create(o, InitialModel());
    o.audit.reset();
    return engine.status();
  };
  auto kept = ReadFile(checkpoint);
  ASSERT_TRUE(kept.ok()) << kept.status();

  auto changed = ReadSafetensorsFile(checkpoint);
  ASSERT_TRUE(changed.ok()) << changed.status();
  changed->values[0] = 42;
  ASSERT_TRUE(WriteSafetensorsFile(checkpoint, *changed).ok());
  Status st = restart();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("round 1 was released"), HasSubstr(checkpoint), HasSubstr("SHA-256"),
                    HasSubstr("will not run round 1 again")));

  ASSERT_TRUE(std::filesystem::remove(checkpoint));
  st = restart();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("round 1 was released"), HasSubstr(checkpoint)));

  ASSERT_TRUE(WriteFileAtomically(checkpoint, *kept).ok());
  auto strategy_state = ReadFile(strategy);
  ASSERT_TRUE(strategy_state.ok()) << strategy_state.status();
  ASSERT_TRUE(std::filesystem::remove(strategy));
  st = restart();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(std::string(st.message()),
              AllOf(HasSubstr("round 1 was released"), HasSubstr(strategy)));
  EXPECT_EQ(Records(o).size(), records);  // nothing released, not even a resume on record

  ASSERT_TRUE(WriteFileAtomically(strategy, *strategy_state).ok());
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->completed_round(), 1);
}

// A state database older than the audit log (removed, or restored from an older backup) would
// have the coordinator start over and release round 1 again, a second sum of the same round.
TEST(RoundEngineAuditTest, RestartRefusesAStateDatabaseOlderThanTheAuditLog) {
  EngineOptions o = Options("state_behind");
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE(RunTwoSites(engine->get(), 0.5f, true, 0.5f).ok());
  engine->reset();
  o.audit.reset();
  const size_t records = Records(o).size();
  for (const char* f : {"/state.db", "/state.db-wal", "/state.db-shm"}) {
    std::filesystem::remove(o.state_dir + f);
  }
  o.audit = OpenAudit(o);
  engine = RoundEngine::Create(o, InitialModel());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kDataLoss) << engine.status();
  EXPECT_THAT(std::string(engine.status().message()),
              AllOf(HasSubstr("released round 1"), HasSubstr("state database"),
                    HasSubstr("holds no round")));
  o.audit.reset();
  EXPECT_EQ(Records(o).size(), records);
}

// The study's identifier and GDPR facts are in the signed federation_started record, which verifies
// as `hansa audit verify` checks it, and in every plan the sites see: the plan digest on record
// (round_planned) is that of a plan carrying them.
TEST(RoundEngineAuditTest, FederationStartedAndEveryPlanCarryTheStudysGdprFacts) {
  EngineOptions o = Options("study");
  o.min_sites = 1;
  o.rounds = 2;
  o.study.set_id("xray-2027-01");
  o.study.set_purpose("Pneumonia triage <from chest X-rays>");
  o.study.set_legal_basis("Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
  o.study.add_controllers("Charité Berlin");
  o.study.add_controllers("AP-HP");
  o.study.set_retention_days(3650);
  o.study.set_dpia_reference("DPIA-2026-017");
  o.audit = OpenAudit(o);
  auto engine = RoundEngine::Create(o, InitialModel());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<v1::RoundPlan> plans;
  std::thread a([&] { RunSiteSeeing(engine->get(), "a", true, 0.5f, nullptr, &plans); });
  Status run = (*engine)->Run();
  a.join();
  ASSERT_TRUE(run.ok()) << run;
  o.audit.reset();
  engine->reset();

  auto verified = ReadVerifiedAuditLog(o.state_dir + "/audit.jsonl", TestFederation::Get().ca(),
                                       VerifyOptions{.usage = CertificateUsage::kTlsServer});
  ASSERT_TRUE(verified.ok()) << verified.status();
  ASSERT_FALSE(verified->empty());
  const AuditRecord& started = verified->front();
  EXPECT_EQ(started.event, "federation_started");
  EXPECT_EQ(started.fields["study"],
            json({{"id", "xray-2027-01"},
                  {"purpose", "Pneumonia triage <from chest X-rays>"},
                  {"purpose_sha256", ToHex(Sha256("Pneumonia triage <from chest X-rays>"))},
                  {"legal_basis", "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR"},
                  {"controllers", {"Charité Berlin", "AP-HP"}},
                  {"retention_days", 3650},
                  {"dpia_reference", "DPIA-2026-017"}}));

  std::set<std::string> trained;
  int evaluations = 0;
  for (const v1::RoundPlan& plan : plans) {
    EXPECT_EQ(plan.study().SerializeAsString(), o.study.SerializeAsString())
        << plan.ShortDebugString();
    if (plan.has_training()) {
      trained.insert(PlanSha256(plan));
    } else {
      ++evaluations;
    }
  }
  EXPECT_GE(evaluations, 1);
  std::set<std::string> planned;
  for (const AuditRecord* r : Events(*verified, "round_planned")) {
    planned.insert(r->fields["plan_sha256"].get<std::string>());
  }
  EXPECT_EQ(trained, planned);
  EXPECT_EQ(planned.size(), 2u);
}

}  // namespace
}  // namespace hansa
