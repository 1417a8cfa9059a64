// A site's own report over ledgers written by the site's egress code (client/egress.h): plans
// accepted and refused, the figures sent, privacy spent, and a ledger that was tampered with.
#include "common/report/site_report.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>

#include "absl/strings/str_format.h"
#include "client/egress.h"
#include "common/audit/audit_log.h"
#include "common/audit/events.h"
#include "common/fileio/fileio.h"
#include "common/plan/study_facts.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

namespace ev = audit_events;
using ::hansa::testing::MakeTempDir;
using ::hansa::testing::TestFederation;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

const TestFederation& Fed() { return TestFederation::Get(); }

// A site's kit as a deployment lays it out: ca.pem beside state/egress.jsonl.
struct SiteDir {
  std::string root;
  std::string state;
  std::string ledger;
};

SiteDir MakeSiteDir(const std::string& name) {
  SiteDir d;
  d.root = MakeTempDir("site_report_" + name);
  d.state = d.root + "/state";
  d.ledger = d.state + "/egress.jsonl";
  EXPECT_TRUE(WriteFileAtomically(d.root + "/ca.pem", Fed().ca().ToPem()).ok());
  return d;
}

std::unique_ptr<AuditLog> OpenLedger(const std::string& path, const std::string& who = "berlin") {
  const auto& id = who == "coordinator" ? Fed().coordinator() : Fed().site(who);
  auto log = AuditLog::Open(path, id.Key(), id.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

v1::JoinReply Reply(const std::string& federation) {
  v1::JoinReply reply;
  reply.set_federation(federation);
  reply.set_site("berlin");
  reply.set_coordinator_country("DE");
  return reply;
}

v1::MetricsReport Metrics(uint64_t round, double accuracy, double loss) {
  v1::MetricsReport m;
  m.set_round(round);
  m.set_num_examples(600);
  m.set_accuracy(accuracy);
  m.set_loss(loss);
  m.set_seconds(0.5);
  m.set_classes(2);
  for (uint64_t c : {290, 10, 20, 280}) m.add_confusion(c);
  return m;
}

// The site's side of a secure round as SiteSession records it: answer, upload, evaluation.
void SecureRound(EgressRecorder& egress, uint64_t round, double accuracy, double epsilon) {
  const std::string plan = absl::StrFormat("%064x", round);
  ASSERT_TRUE(egress.Append(PlanAccepted(static_cast<int64_t>(round), plan)).ok());
  ASSERT_TRUE(egress.Sending(ev::kMessagePlanResponse, round, "accepted " + plan).ok());
  ASSERT_TRUE(egress.Sending(ev::kMessageSecAgg, round, "keys").ok());
  AuditEvent spent = PrivacySpentEvent(static_cast<int64_t>(round), epsilon, 1e-5);
  spent.fields["guarantee"] = "client-level";
  ASSERT_TRUE(egress.Append(spent).ok());
  v1::TransferHeader masked;  // a masked upload's header: no figures in the clear
  masked.set_round(round);
  masked.set_total_bytes(4096);
  masked.set_sha256(std::string(64, 'a'));
  ASSERT_TRUE(egress
                  .Sending(ev::kMessageUpload, round, masked.total_bytes(), masked.sha256(),
                           EgressValues(masked))
                  .ok());
  v1::MetricsReport m = Metrics(round, accuracy, 0.3);
  ASSERT_TRUE(
      egress.Sending(ev::kMessageMetrics, round, m.SerializeAsString(), EgressValues(m)).ok());
}

// Two accepted rounds and a refused third, after a join.
void WriteStudy(const std::string& path) {
  auto ledger = OpenLedger(path);
  EgressRecorder egress(ledger.get());
  ASSERT_TRUE(egress.Sending(ev::kMessageJoin, 0, "join").ok());
  ASSERT_TRUE(egress.Joined(Reply("oncology-eu")).ok());
  ASSERT_TRUE(egress.Joined(Reply("oncology-eu")).ok());  // a rejoin: recorded once
  SecureRound(egress, 1, 0.81, 0.5);
  SecureRound(egress, 2, 0.87, 0.75);
  ASSERT_TRUE(egress
                  .Append(PlanRefused(3, std::string(64, '3'),
                                      "privacy budget: epsilon 1.25 would exceed the site's 1"))
                  .ok());
  ASSERT_TRUE(egress.Sending(ev::kMessagePlanResponse, 3, "refused").ok());
}

json Build(const SiteDir& d, const std::string& fingerprint = "") {
  SiteReportOptions options;
  options.state_dir = d.state;  // the CA is found at STATE_DIR/../ca.pem
  options.site_fingerprint = fingerprint;
  options.generated_at = "2026-01-31T12:00:00.000Z";
  auto built = BuildSiteReport(options);
  EXPECT_TRUE(built.ok()) << built.status();
  return built.ok() ? *built : json();
}

TEST(SiteReportTest, ListsThePlansAnsweredAndTheFiguresSentPerRound) {
  SiteDir d = MakeSiteDir("study");
  WriteStudy(d.ledger);
  json r = Build(d, Fed().site("berlin").cert.Sha256Fingerprint());

  EXPECT_EQ(r["schema"], "hansa.site_report/1");
  EXPECT_EQ(r["ledger"]["verified"], true) << r["ledger"]["error"];
  EXPECT_EQ(r["ledger"]["records"], 16);
  for (const json& c : r["checks"]) EXPECT_EQ(c["passed"], true) << c.dump();
  EXPECT_EQ(r["site"]["name"], "berlin");
  EXPECT_EQ(r["site"]["country_name"], "Germany");
  EXPECT_EQ(r["federation"]["name"], "oncology-eu");
  ASSERT_EQ(r["federations"].size(), 1u);
  EXPECT_EQ(r["federations"][0]["joins"], 1);

  ASSERT_EQ(r["plans"].size(), 3u);
  EXPECT_EQ(r["plans"][0]["accepted"], true);
  EXPECT_EQ(r["plans"][2]["accepted"], false);
  EXPECT_THAT(r["plans"][2]["reason"].get<std::string>(), HasSubstr("privacy budget"));
  EXPECT_EQ(r["totals"]["plans_accepted"], 2);
  EXPECT_EQ(r["totals"]["plans_refused"], 1);
  EXPECT_EQ(r["totals"]["joins"], 1);

  ASSERT_EQ(r["rounds"].size(), 3u);
  const json& first = r["rounds"][0];
  EXPECT_EQ(first["round"], 1);
  EXPECT_EQ(first["answer"], "accepted");
  EXPECT_EQ(first["messages"], 4);
  EXPECT_EQ(first["update"]["bytes"], 4096);
  EXPECT_EQ(first["update"]["sha256"], std::string(64, 'a'));
  EXPECT_TRUE(first["update"]["values"].is_null());  // masked: nothing in the clear
  EXPECT_EQ(first["metrics"]["accuracy"], 0.81);
  EXPECT_EQ(first["metrics"]["num_examples"], 600);
  EXPECT_EQ(first["metrics"]["confusion"], json({290, 10, 20, 280}));
  EXPECT_EQ(first["epsilon"], 0.5);
  EXPECT_EQ(r["rounds"][1]["metrics"]["accuracy"], 0.87);
  EXPECT_EQ(r["rounds"][2]["answer"], "refused");
  EXPECT_TRUE(r["rounds"][2]["update"].is_null());

  EXPECT_EQ(r["privacy"]["enabled"], true);
  EXPECT_EQ(r["privacy"]["final_epsilon"], 0.75);
  EXPECT_EQ(r["privacy"]["record_level"]["enabled"], false);

  const std::string html = RenderSiteReportHtml(r);
  EXPECT_THAT(html, HasSubstr("Site report: berlin in oncology-eu"));
  EXPECT_THAT(html, HasSubstr("Egress ledger verified: 16 records"));
  EXPECT_THAT(html, HasSubstr("epsilon 1.25 would exceed the site&#39;s 1"));
  EXPECT_THAT(html, HasSubstr("accuracy&nbsp;0.87"));
  EXPECT_THAT(html, HasSubstr("id=\"chart-bytes\""));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
}

TEST(SiteReportTest, AOneByteChangeInTheLedgerIsReportedLoudlyWithTheLine) {
  SiteDir d = MakeSiteDir("tampered");
  WriteStudy(d.ledger);
  auto text = ReadFile(d.ledger);
  ASSERT_TRUE(text.ok());
  // The site claims a better accuracy than it sent: 0.87 becomes 0.97.
  const size_t at = text->find("\"accuracy\":0.87");
  ASSERT_NE(at, std::string::npos);
  (*text)[at + std::string("\"accuracy\":0.").size()] = '9';
  ASSERT_TRUE(WriteFileAtomically(d.ledger, *text).ok());

  SiteReportOptions options;
  options.state_dir = d.state;
  auto written = WriteSiteReport(options, d.root + "/out");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_FALSE(written->audit_verified);
  EXPECT_THAT(written->audit_error, HasSubstr("line 14"));
  ASSERT_FALSE(written->failed_checks.empty());
  EXPECT_THAT(written->failed_checks[0], HasSubstr("chain_and_signatures"));
  auto html = ReadFile(written->html_path);
  ASSERT_TRUE(html.ok());
  EXPECT_THAT(*html, HasSubstr("Egress ledger NOT verified"));
  EXPECT_THAT(*html, HasSubstr("FAILED"));
  auto report = ReadFile(written->json_path);
  ASSERT_TRUE(report.ok());
  json r = json::parse(*report);
  EXPECT_EQ(r["ledger"]["verified"], false);
  // What the records say is still shown, beside the verdict.
  EXPECT_EQ(r["plans"].size(), 3u);
}

TEST(SiteReportTest, ALedgerSignedByTheCoordinatorFailsTheSiteRole) {
  SiteDir d = MakeSiteDir("coordinator_signed");
  {
    auto ledger = OpenLedger(d.ledger, "coordinator");
    ASSERT_TRUE(EgressRecorder(ledger.get()).Sending(ev::kMessageJoin, 0, "join").ok());
  }
  json r = Build(d);
  EXPECT_EQ(r["ledger"]["verified"], false);
  EXPECT_EQ(r["checks"][0]["passed"], true);
  EXPECT_EQ(r["checks"][1]["check"], "signer_role");
  EXPECT_EQ(r["checks"][1]["passed"], false);
  EXPECT_THAT(r["ledger"]["error"].get<std::string>(), HasSubstr("client"));
}

TEST(SiteReportTest, AnotherSitesCertificateFailsThePin) {
  SiteDir d = MakeSiteDir("pinned");
  WriteStudy(d.ledger);
  json r = Build(d, Fed().site("paris").cert.Sha256Fingerprint());
  EXPECT_EQ(r["ledger"]["verified"], false);
  EXPECT_EQ(r["checks"][2]["check"], "signer_fingerprint");
  EXPECT_EQ(r["checks"][2]["passed"], false);
  EXPECT_THAT(r["checks"][2]["detail"].get<std::string>(), HasSubstr("not by the expected"));
}

// A ledger handed over to a renewed certificate (signer_renewed) verifies, names the site by
// its current certificate and accepts a pin of either; the policies it recorded are listed.
TEST(SiteReportTest, ARenewedLedgerAndItsPoliciesAreShown) {
  SiteDir d = MakeSiteDir("renewed");
  const auto& berlin = Fed().site("berlin");
  const auto renewed = Fed().Renewed(berlin);
  const json policy = {{"allowed_models", {"simple_cnn"}}, {"min_cohort", 3}, {"study", ""}};
  {
    auto ledger = OpenLedger(d.ledger);
    ASSERT_TRUE(
        ledger
            ->Append("policy_applied",
                     {{"reason", "start"}, {"sha256", std::string(64, 'a')}, {"policy", policy}})
            .ok());
    ASSERT_TRUE(ledger->Append(PlanAccepted(1, std::string(64, '1'))).ok());
  }
  {
    auto log = AuditLog::Open(d.ledger, renewed.Key(), renewed.cert);
    ASSERT_TRUE(log.ok()) << log.status();
    json stricter = policy;
    stricter["min_cohort"] = 5;
    ASSERT_TRUE(
        (*log)
            ->Append("policy_applied",
                     {{"reason", "reload"}, {"sha256", std::string(64, 'b')}, {"policy", stricter}})
            .ok());
    ASSERT_TRUE((*log)->Append(PlanRefused(2, std::string(64, '2'), "policy.min_cohort")).ok());
  }
  for (const auto* pin : {&berlin.cert, &renewed.cert}) {
    json r = Build(d, pin->Sha256Fingerprint());
    EXPECT_EQ(r["ledger"]["verified"], true) << r["ledger"]["error"];
    for (const json& c : r["checks"]) EXPECT_EQ(c["passed"], true) << c.dump();
    EXPECT_EQ(r["site"]["fingerprint"], renewed.cert.Sha256Fingerprint());
  }
  json r = Build(d);
  ASSERT_EQ(r["policies"].size(), 2u);
  EXPECT_EQ(r["policies"][0]["reason"], "start");
  EXPECT_EQ(r["policies"][1]["reason"], "reload");
  EXPECT_EQ(r["policies"][1]["policy"]["min_cohort"], 5);
  EXPECT_EQ(r["policies"][1]["sha256"], std::string(64, 'b'));

  SiteReportOptions options;
  options.state_dir = d.state;
  auto written = WriteSiteReport(options, d.root + "/out");
  ASSERT_TRUE(written.ok()) << written.status();
  auto html = ReadFile(written->html_path);
  ASSERT_TRUE(html.ok());
  EXPECT_THAT(*html, HasSubstr("Policies the site answered under"));
  EXPECT_THAT(*html, HasSubstr("reloaded (SIGHUP)"));
}

TEST(SiteReportTest, WithoutACertificateAuthorityNothingIsCalledVerified) {
  SiteDir d = MakeSiteDir("no_ca");
  WriteStudy(d.ledger);
  std::filesystem::remove(d.root + "/ca.pem");
  json r = Build(d);
  EXPECT_EQ(r["ledger"]["verified"], false);
  EXPECT_EQ(r["checks"][0]["made"], false);
  EXPECT_THAT(r["ledger"]["error"].get<std::string>(), HasSubstr("no federation CA"));
  EXPECT_EQ(r["plans"].size(), 3u);
}

TEST(SiteReportTest, AnOlderLedgerWithoutJoinsOrFiguresStillReads) {
  SiteDir d = MakeSiteDir("older");
  {
    auto ledger = OpenLedger(d.ledger);
    // As site egress wrote before it kept figures: message_sent without values.
    ASSERT_TRUE(ledger->Append(MessageSent("join", 0, 4, std::string(64, 'j'))).ok());
    ASSERT_TRUE(ledger->Append(PlanAccepted(1, std::string(64, '1'))).ok());
    ASSERT_TRUE(ledger->Append(MessageSent("metrics", 1, 20, std::string(64, 'm'))).ok());
    ASSERT_TRUE(ledger->Append(SendFailed("metrics", 1, std::string(64, 'm'), "deadline")).ok());
  }
  json r = Build(d);
  EXPECT_EQ(r["ledger"]["verified"], true) << r["ledger"]["error"];
  EXPECT_TRUE(r["federation"].is_null());
  ASSERT_EQ(r["rounds"].size(), 1u);
  EXPECT_TRUE(r["rounds"][0]["metrics"].is_null());
  EXPECT_EQ(r["rounds"][0]["failed_sends"], 1);
  EXPECT_EQ(r["rounds"][0]["sent"][0]["failed"], "deadline");
  EXPECT_THAT(RenderSiteReportHtml(r), HasSubstr("no join recorded"));
}

TEST(SiteReportTest, ALongLivedSitesNextStudyIsShownApart) {
  SiteDir d = MakeSiteDir("two_studies");
  {
    auto ledger = OpenLedger(d.ledger);
    EgressRecorder egress(ledger.get());
    ASSERT_TRUE(egress.Joined(Reply("study-a")).ok());
    SecureRound(egress, 1, 0.7, 0.5);
    SecureRound(egress, 2, 0.8, 0.75);
    ASSERT_TRUE(egress.Joined(Reply("study-b")).ok());
    SecureRound(egress, 1, 0.6, 0.5);
  }
  json r = Build(d);
  ASSERT_EQ(r["rounds"].size(), 3u);
  EXPECT_EQ(r["rounds"][1]["study"], 1);
  EXPECT_EQ(r["rounds"][2]["study"], 2);
  EXPECT_EQ(r["rounds"][2]["metrics"]["accuracy"], 0.6);
  EXPECT_EQ(r["federation"]["name"], "study-b");
  EXPECT_EQ(r["federations"].size(), 2u);
}

// Each study the plans named is shown by its identifier (the study_facts the site recorded),
// beside the report's own count of studies.
TEST(SiteReportTest, NamesEachStudyByItsIdentifier) {
  SiteDir d = MakeSiteDir("study_ids");
  {
    auto ledger = OpenLedger(d.ledger);
    EgressRecorder egress(ledger.get());
    ASSERT_TRUE(egress.Joined(Reply("fmnist")).ok());
    for (const char* id : {"fmnist-2027-01", "fmnist-2027-02"}) {
      v1::StudyFacts facts;
      facts.set_id(id);
      facts.set_purpose("Classify clothing");
      ASSERT_TRUE(
          egress.Append(StudyFactsSeen(1, StudyFactsSha256(facts), StudyFactsJson(facts))).ok());
      SecureRound(egress, 1, 0.7, 0.5);
    }
  }
  json r = Build(d);
  ASSERT_EQ(r["studies"].size(), 2u);
  EXPECT_EQ(r["studies"][0]["facts"]["id"], "fmnist-2027-01");
  EXPECT_EQ(r["studies"][1]["facts"]["id"], "fmnist-2027-02");
  const std::string html = RenderSiteReportHtml(r);
  EXPECT_THAT(html, HasSubstr("<th>Study</th><th>Identifier</th><th>First seen</th>"));
  EXPECT_THAT(html, HasSubstr("<tr><td>2</td><td>fmnist-2027-02</td>"));
}

TEST(SiteReportTest, AMissingStateDirIsNotFound) {
  SiteReportOptions options;
  options.state_dir = ::testing::TempDir() + "/no_such_site_state";
  auto built = BuildSiteReport(options);
  EXPECT_TRUE(absl::IsNotFound(built.status())) << built.status();
  EXPECT_THAT(std::string(built.status().message()), HasSubstr("no_such_site_state"));
}

// How long a report of a long-lived site's ledger takes (the page rebuilds it per request):
// the figure goes into the test's XML output, nothing is asserted about it.
TEST(SiteReportTest, BuildsTheReportOfFiveHundredRounds) {
  SiteDir d = MakeSiteDir("thousand");
  {
    auto ledger = OpenLedger(d.ledger);
    EgressRecorder egress(ledger.get());
    ASSERT_TRUE(egress.Joined(Reply("long")).ok());
    for (uint64_t round = 1; round <= 500; ++round) {
      SecureRound(egress, round, 0.5 + 0.0004 * static_cast<double>(round), 0.01 * round);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  json r = Build(d);
  const std::string html = RenderSiteReportHtml(r);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("records", r["ledger"]["records"].get<int>());
  RecordProperty("build_and_render_ms", static_cast<int>(std::lround(ms)));
  std::printf("site report of %d records: %.0f ms (html %zu bytes)\n",
              r["ledger"]["records"].get<int>(), ms, html.size());
  EXPECT_EQ(r["ledger"]["verified"], true);
  EXPECT_EQ(r["rounds"].size(), 500u);
}

}  // namespace
}  // namespace hansa
