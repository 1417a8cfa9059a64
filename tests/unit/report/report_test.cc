#include "common/report/report.h"

#include "common/report/data_flow.h"

#include <filesystem>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/audit/audit_log.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"
#include "tests/unit/report/synthetic_state.h"

namespace hansa {
namespace {

using ::hansa::testing::MakeTempDir;
using ::hansa::testing::TestFederation;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const TestFederation& Fed() { return TestFederation::Get(); }

TEST(ReportTest, ParticipantsRoundsAndVerificationFromASyntheticStateDir) {
  std::string root = MakeTempDir("report");
  std::string state = WriteSyntheticState(root);
  ReportOptions options;
  options.state_dir = state;  // the CA is found at STATE_DIR/../ca.pem
  options.generated_at = "2025-01-31T12:00:00.000Z";
  auto built = BuildReport(options);
  ASSERT_TRUE(built.ok()) << built.status();
  const json& r = *built;

  EXPECT_EQ(r["schema"], "hansa.report/1");
  EXPECT_EQ(r["generated_at"], "2025-01-31T12:00:00.000Z");
  EXPECT_EQ(r["audit"]["verified"], true) << r["audit"]["error"];
  EXPECT_EQ(r["audit"]["records"], 24);
  EXPECT_EQ(r["audit"]["events"]["update_received"], 6);
  EXPECT_EQ(r["audit"]["signer"]["name"], "coordinator");

  const json& fed = r["federation"];
  EXPECT_EQ(fed["name"], "demo");
  EXPECT_EQ(fed["coordinator"]["name"], "coordinator");
  EXPECT_EQ(fed["coordinator"]["country_name"], "Germany");
  EXPECT_EQ(fed["ca"]["fingerprint"], Fed().ca().Sha256Fingerprint());
  EXPECT_EQ(fed["allowed_countries_text"], "EU and EEA member states");
  EXPECT_EQ(fed["restarts"], 1);
  EXPECT_EQ(fed["finished"], true);

  ASSERT_EQ(r["participants"].size(), 3u);
  const json& berlin = r["participants"][0];
  EXPECT_EQ(berlin["site"], "berlin");
  EXPECT_EQ(berlin["organisation"], "Charité Berlin");
  EXPECT_EQ(berlin["country"], "DE");
  EXPECT_EQ(berlin["fingerprint"], Fed().site("berlin").cert.Sha256Fingerprint());
  EXPECT_EQ(berlin["rounds_contributed"], 2);
  EXPECT_EQ(r["participants"][1]["site"], "milan");
  EXPECT_EQ(r["participants"][1]["rounds_contributed"], 1);
  ASSERT_EQ(r["refusals"].size(), 1u);
  EXPECT_EQ(r["refusals"][0]["country"], "US");
  EXPECT_THAT(r["refusals"][0]["reason"].get<std::string>(), HasSubstr("not an allowed"));

  ASSERT_EQ(r["rounds"].size(), 2u);
  const json& one = r["rounds"][0];
  EXPECT_EQ(one["round"], 1);
  EXPECT_EQ(one["attempts"], 1);
  EXPECT_EQ(one["cohort"], json({"berlin", "milan", "paris"}));
  EXPECT_EQ(one["aggregation"], "secure");
  EXPECT_EQ(one["secure_aggregation"]["threshold"], 2);
  EXPECT_EQ(one["privacy"]["mechanism"], "distributed_discrete_gaussian");
  EXPECT_EQ(one["model_sha256"], ToHex(Sha256("model 1")));
  EXPECT_EQ(one["accuracy"], 0.74);
  EXPECT_EQ(one["epsilon"], 1.5);
  EXPECT_EQ(one["checkpoint"]["path"], "checkpoints/round-0001.safetensors");
  const json& two = r["rounds"][1];
  EXPECT_EQ(two["attempts"], 2);
  EXPECT_EQ(two["dropouts"], json::parse(R"([{"site":"milan","stage":"upload"}])"));
  EXPECT_EQ(two["declined"][0]["site"], "paris");
  EXPECT_EQ(two["aggregated_sites"], json({"berlin", "paris"}));

  EXPECT_EQ(r["privacy"]["enabled"], true);
  EXPECT_EQ(r["privacy"]["final_epsilon"], 2.25);
  EXPECT_EQ(r["privacy"]["epsilon_over_rounds"].size(), 2u);
  ASSERT_EQ(r["accuracy_over_rounds"].size(), 3u);
  EXPECT_EQ(r["accuracy_over_rounds"][0]["round"], 0);
  EXPECT_EQ(r["accuracy_over_rounds"][2]["accuracy"], 0.83);

  // Two attempts of round 2 sum into one figure per site.
  json bytes = r["bytes_received"];
  ASSERT_EQ(bytes.size(), 5u);
  EXPECT_EQ(bytes[0], json::parse(R"({"site":"berlin","round":1,"bytes":1000})"));
  EXPECT_EQ(bytes[1], json::parse(R"({"site":"berlin","round":2,"bytes":2000})"));

  std::string flow = r["data_flow"].dump();
  EXPECT_THAT(flow, HasSubstr("never leave the site"));
  EXPECT_THAT(flow, HasSubstr("masked under secure aggregation"));
  EXPECT_THAT(flow, HasSubstr("clipped to [-1, 1] per value, quantized to 20-bit integers"));
  EXPECT_THAT(flow, HasSubstr("at least 2 colluding sites"));
  EXPECT_THAT(flow, HasSubstr("epsilon = 2.25 at delta = 1e-05"));
  EXPECT_THAT(flow, HasSubstr("1 join attempt was refused"));
  EXPECT_THAT(flow, HasSubstr("France (1), Germany (1), Italy (1)"));
  EXPECT_THAT(flow, HasSubstr("verified against the federation CA"));
}

TEST(ReportTest, TamperedAuditLogIsReportedNotHidden) {
  std::string root = MakeTempDir("report");
  std::string state = WriteSyntheticState(root);
  std::string path = state + "/audit.jsonl";
  std::string contents = *ReadFile(path);
  size_t at = contents.find("\"bytes\":1000");
  ASSERT_NE(at, std::string::npos);
  contents.replace(at, 12, "\"bytes\":1001");
  ASSERT_TRUE(WriteFileAtomically(path, contents).ok());

  auto r = BuildReport({state, "", ""});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["audit"]["verified"], false);
  EXPECT_THAT((*r)["audit"]["error"].get<std::string>(), HasSubstr("signature does not verify"));
  EXPECT_EQ((*r)["participants"].size(), 3u);  // still shown, marked unverified
  EXPECT_THAT((*r)["data_flow"].dump(), HasSubstr("did NOT verify"));
  EXPECT_THAT(RenderReportHtml(*r), HasSubstr("class=\"verdict bad\""));
}

TEST(ReportTest, WithoutACaOrAnAuditLogTheReportSaysSo) {
  std::string root = MakeTempDir("report");
  std::string state = WriteSyntheticState(root);
  std::filesystem::remove(root + "/ca.pem");
  auto r = BuildReport({state, "", ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["audit"]["verified"], false);
  EXPECT_THAT((*r)["audit"]["error"].get<std::string>(), HasSubstr("no federation CA"));

  std::filesystem::remove(state + "/audit.jsonl");
  r = BuildReport({state, "", ""});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["audit"]["present"], false);
  EXPECT_EQ((*r)["rounds"].size(), 2u);  // from metrics.jsonl alone
  EXPECT_THAT((*r)["data_flow"].dump(), HasSubstr("records no round plans"));
  EXPECT_THAT((*r)["data_flow"].dump(), HasSubstr("No differential privacy was applied"));

  EXPECT_EQ(BuildReport({root + "/absent", "", ""}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(BuildReport({state, root + "/absent.pem", ""}).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomically(state + "/metrics.jsonl", "{\"round\":1}\nnot json\n").ok());
  auto bad = BuildReport({state, "", ""});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("metrics.jsonl line 2"));
}

// The check named `name` in a report.
json CheckOf(const json& report, const std::string& name) {
  for (const json& c : report["checks"]) {
    if (c["check"] == name) return c;
  }
  ADD_FAILURE() << "no check " << name << " in " << report["checks"].dump(1);
  return json::object();
}

// Berlin's egress ledger for the synthetic state: its three uploads, and the coordinator's audit
// head it was shown with its last plan (`head`).
// Berlin's ledger, with `head` kept as the coordinator showed it (signed).
std::string WriteBerlinLedger(const std::string& root, AuditAnchor head) {
  auto digest = [](const std::string& s) { return ToHex(Sha256(s)); };
  auto signature = TestFederation::Get().coordinator().Key().Sign(
      AuditAnchorStatement(head.records, head.sha256));
  EXPECT_TRUE(signature.ok()) << signature.status();
  head.signature = absl::BytesToHexString(*signature);
  std::string path = root + "/berlin-egress.jsonl";
  const auto& berlin = TestFederation::Get().site("berlin");
  auto log = AuditLog::Open(path, berlin.Key(), berlin.cert);
  EXPECT_TRUE(log.ok()) << log.status();
  for (const AuditEvent& e :
       {MessageSent("upload", 1, 1000, digest("u1b")),
        MessageSent("upload", 2, 1000, digest("u2b-first")),
        PlanAccepted(2, digest("plan 2b"), head), MessageSent("upload", 2, 1000, digest("u2b"))}) {
    EXPECT_TRUE((*log)->Append(e).ok());
  }
  return path;
}

TEST(ReportTest, SaysWhichChecksItCouldMake) {
  std::string root = MakeTempDir("report");
  std::string state = WriteSyntheticState(root);
  ReportOptions options;
  options.state_dir = state;
  auto r = BuildReport(options);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ((*r)["checks"].size(), 5u) << (*r)["checks"].dump(1);
  EXPECT_EQ(CheckOf(*r, "chain_and_signatures")["passed"], true);
  EXPECT_EQ(CheckOf(*r, "signer_role")["passed"], true);
  EXPECT_EQ(CheckOf(*r, "signer_fingerprint")["made"], false);
  EXPECT_THAT(CheckOf(*r, "signer_fingerprint")["detail"].get<std::string>(),
              HasSubstr("no coordinator fingerprint given"));
  EXPECT_EQ(CheckOf(*r, "closing_record")["passed"], true);
  EXPECT_THAT(CheckOf(*r, "closing_record")["detail"].get<std::string>(),
              HasSubstr("closed by federation_finished at record 23"));
  EXPECT_EQ((*r)["audit"]["closed"], true);
  EXPECT_EQ(CheckOf(*r, "site_ledgers")["made"], false);
  EXPECT_THAT(CheckOf(*r, "site_ledgers")["detail"].get<std::string>(),
              HasSubstr("no site egress ledgers given"));
  std::string html = RenderReportHtml(*r);
  EXPECT_THAT(html, HasSubstr("<h2>Checks made</h2>"));
  EXPECT_THAT(html, HasSubstr("not made"));

  // Pinned to the coordinator, with berlin's ledger: every check made, every one passed.
  const std::string audit = state + "/audit.jsonl";
  auto summary = VerifyAuditLog(audit, TestFederation::Get().ca());
  ASSERT_TRUE(summary.ok()) << summary.status();
  options.coordinator_fingerprint = TestFederation::Get().coordinator().cert.Sha256Fingerprint();
  options.egress_ledgers = {WriteBerlinLedger(root, {summary->records, summary->head, {}})};
  r = BuildReport(options);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const json& c : (*r)["checks"]) EXPECT_EQ(c["passed"], true) << c.dump();
  EXPECT_THAT(CheckOf(*r, "site_ledgers")["detail"].get<std::string>(),
              HasSubstr("1 of 1 site ledgers reconciled with the audit log, 0 differences"));
  EXPECT_EQ((*r)["site_ledgers"][0]["site"], "berlin");
  EXPECT_EQ((*r)["site_ledgers"][0]["heads_confirmed"], 1);
  EXPECT_THAT(RenderReportHtml(*r), Not(HasSubstr("not made")));

  // The log cut before its end: not closed, and berlin's ledger shows what was cut.
  std::string contents = *ReadFile(audit);
  size_t cut = contents.size() - 1;
  for (int i = 0; i < 3; ++i) cut = contents.rfind('\n', cut - 1);
  ASSERT_TRUE(WriteFileAtomically(audit, contents.substr(0, cut + 1)).ok());
  r = BuildReport(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["audit"]["verified"], true);
  EXPECT_EQ(CheckOf(*r, "closing_record")["passed"], false);
  EXPECT_THAT(CheckOf(*r, "closing_record")["detail"].get<std::string>(),
              HasSubstr("no closing record"));
  EXPECT_EQ(CheckOf(*r, "site_ledgers")["passed"], false);
  EXPECT_THAT(CheckOf(*r, "site_ledgers")["detail"].get<std::string>(),
              HasSubstr("berlin: truncated: the coordinator's audit log holds 21 records"));
  auto written = WriteReport(options, root + "/out");
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->failed_checks.size(), 1u);
  EXPECT_THAT(written->failed_checks[0], HasSubstr("site_ledgers: "));
  EXPECT_THAT(*ReadFile(written->html_path), HasSubstr("FAILED"));

  // Another coordinator's fingerprint: the log is not this federation's coordinator's.
  options.coordinator_fingerprint = TestFederation::Get().site("paris").cert.Sha256Fingerprint();
  r = BuildReport(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["audit"]["verified"], false);
  EXPECT_EQ(CheckOf(*r, "signer_role")["passed"], true);
  EXPECT_EQ(CheckOf(*r, "signer_fingerprint")["passed"], false);
  EXPECT_THAT(CheckOf(*r, "signer_fingerprint")["detail"].get<std::string>(),
              HasSubstr("not by the expected"));
}

TEST(ReportTest, HtmlIsSelfContainedAndEscapesWhatParticipantsWrote) {
  std::string root = MakeTempDir("report");
  std::string state = WriteSyntheticState(root, "<script>alert(1)</script>");
  auto written = WriteReport({state, "", ""}, root + "/out");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(written->audit_verified) << written->audit_error;
  std::string html = *ReadFile(written->html_path);
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("href=")));
  EXPECT_THAT(html, Not(HasSubstr("url(")));
  EXPECT_THAT(html, HasSubstr("default-src 'none'"));
  EXPECT_THAT(html, HasSubstr("id=\"chart-accuracy\""));
  EXPECT_THAT(html, HasSubstr("id=\"chart-epsilon\""));
  EXPECT_THAT(html, HasSubstr("id=\"chart-bytes\""));
  json j = json::parse(*ReadFile(written->json_path));
  EXPECT_EQ(j["participants"].size(), 3u);
  EXPECT_EQ(j["participants"][1]["organisation"], "<script>alert(1)</script>");
}

// The rounds carry the clinical figures metrics.jsonl has, and the HTML table shows a column
// for each figure some round has: AUC for a binary federation, MSE, MAE and R² for a regression.
TEST(ReportTest, RoundsShowAucOrRegressionErrorsWhereTheFederationHasThem) {
  std::string root = MakeTempDir("report");
  std::string state = WriteSyntheticState(root);
  ASSERT_TRUE(WriteFileAtomically(state + "/metrics.jsonl",
                                  "{\"round\":1,\"sites\":3,\"accuracy\":0.74,\"loss\":0.65,"
                                  "\"balanced_accuracy\":0.7,\"macro_f1\":0.69,\"auc\":0.8125}\n"
                                  "{\"round\":2,\"sites\":2,\"accuracy\":0.83,\"loss\":0.45}\n")
                  .ok());
  auto binary = WriteReport({state, "", ""}, root + "/binary");
  ASSERT_TRUE(binary.ok()) << binary.status();
  json j = json::parse(*ReadFile(binary->json_path));
  EXPECT_EQ(j["rounds"][0]["auc"], 0.8125);
  EXPECT_EQ(j["rounds"][0]["balanced_accuracy"], 0.7);
  EXPECT_FALSE(j["rounds"][0].contains("mse"));
  EXPECT_FALSE(j["rounds"][1].contains("auc"));  // not there: not made up
  std::string html = *ReadFile(binary->html_path);
  EXPECT_THAT(html, HasSubstr("<th>AUC</th>"));
  EXPECT_THAT(html, HasSubstr("<td>0.8125</td>"));
  EXPECT_THAT(html, HasSubstr("<th>Balanced accuracy</th>"));
  EXPECT_THAT(html, Not(HasSubstr("<th>MSE</th>")));

  ASSERT_TRUE(WriteFileAtomically(state + "/metrics.jsonl",
                                  "{\"round\":1,\"sites\":3,\"accuracy\":0,\"loss\":2900.5,"
                                  "\"mse\":2900.5,\"mae\":43.25,\"r2\":0.51}\n")
                  .ok());
  auto regression = WriteReport({state, "", ""}, root + "/regression");
  ASSERT_TRUE(regression.ok()) << regression.status();
  j = json::parse(*ReadFile(regression->json_path));
  EXPECT_EQ(j["rounds"][0]["r2"], 0.51);
  html = *ReadFile(regression->html_path);
  for (const char* column : {"<th>MSE</th>", "<th>MAE</th>", "<th>R&sup2;</th>"}) {
    EXPECT_THAT(html, HasSubstr(column));
  }
  EXPECT_THAT(html, HasSubstr("<td>43.25</td>"));
  EXPECT_THAT(html, Not(HasSubstr("<th>AUC</th>")));
  EXPECT_THAT(html, Not(HasSubstr("<th>Balanced accuracy</th>")));
}

TEST(DataFlowTest, PlaintextRoundsAndCentralNoiseAreStatedAsSuch) {
  json report = json::parse(R"({
    "federation": {"allowed_countries_text": "DE, FR", "coordinator": null},
    "participants": [], "refusals": [],
    "rounds": [{"round": 1, "aggregation": "plaintext", "secure_aggregation": null,
                "privacy": {"mechanism": "central_gaussian", "level": "site"}}],
    "privacy": {"enabled": true, "final_epsilon": 3, "delta": 1e-6},
    "audit": {"verified": false, "error": "no audit log at x"}})");
  std::string flow = DataFlowStatement(report).dump();
  EXPECT_THAT(flow, HasSubstr("its model update without masking"));
  EXPECT_THAT(flow, HasSubstr("it also sees each site's individual model update"));
  EXPECT_THAT(flow, Not(HasSubstr("added before masking")));
  EXPECT_THAT(flow, HasSubstr("with the noise added by the coordinator to the sum"));
  EXPECT_THAT(flow, HasSubstr("epsilon = 3 at delta = 1e-06"));
  EXPECT_THAT(flow, HasSubstr("about any single site."));
  EXPECT_THAT(flow, HasSubstr("Sites may join only from: DE, FR."));
  EXPECT_THAT(flow, HasSubstr("did NOT verify: no audit log at x"));
}

TEST(DataFlowTest, RecordLevelPrivacyAloneIsStatedAndNotCalledNoPrivacy) {
  json report = json::parse(R"({
    "federation": {"allowed_countries_text": "DE", "coordinator": null},
    "participants": [], "refusals": [],
    "rounds": [{"round": 1, "aggregation": "secure", "secure_aggregation": null, "privacy": null}],
    "privacy": {"enabled": false, "final_epsilon": null, "delta": null,
                "record_level": {"enabled": true, "final_epsilon": 2.5, "delta": 1e-5}},
    "audit": {"verified": true}})");
  std::string flow = DataFlowStatement(report).dump();
  EXPECT_THAT(flow, HasSubstr("record-level differential privacy (DP-SGD"));
  EXPECT_THAT(flow, HasSubstr("epsilon = 2.5 at delta = 1e-05 for any single training record"));
  EXPECT_THAT(flow, Not(HasSubstr("No differential privacy was applied")));
}

// A record-level privacy_spent record goes to the round's record_epsilon, not its epsilon.
TEST(ReportTest, RecordLevelSpendingIsKeptApartFromClientLevel) {
  const std::string root = MakeTempDir("report_record_level");
  const std::string state = WriteSyntheticState(root);
  {
    const auto& who = Fed().coordinator();
    auto log = AuditLog::Open(state + "/audit.jsonl", who.Key(), who.cert);
    ASSERT_TRUE(log.ok()) << log.status();
    AuditEvent spent = PrivacySpentEvent(2, 0.75, 1e-5);
    spent.fields["guarantee"] = "record-level";
    ASSERT_TRUE((*log)->Append(spent).ok());
  }
  ReportOptions options;
  options.state_dir = state;
  auto r = BuildReport(options);
  ASSERT_TRUE(r.ok()) << r.status();
  const json& two = (*r)["rounds"][1];
  EXPECT_EQ(two["epsilon"], 2.25);
  EXPECT_EQ(two["record_epsilon"], 0.75);
  EXPECT_EQ((*r)["privacy"]["final_epsilon"], 2.25);
  EXPECT_EQ((*r)["privacy"]["record_level"]["final_epsilon"], 0.75);
  EXPECT_TRUE((*r)["audit"]["verified"].get<bool>()) << (*r)["audit"].dump();
}

// The study's GDPR facts from the signed federation_started record: in report.json, and in a
// section near the top of the page, escaped; a log without them says so rather than show blanks.
TEST(ReportTest, ShowsTheStudysPurposeAndLegalBasisEscaped) {
  std::string root = MakeTempDir("report");
  const json study = {{"id", "sepsis-2027.01"},
                      {"purpose", "Triage <b>pneumonia</b> & sepsis"},
                      {"legal_basis", "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR"},
                      {"controllers", {"Charité Berlin", "AP-HP <Paris>"}},
                      {"retention_days", 3650},
                      {"dpia_reference", ""},
                      {"purpose_sha256", std::string(64, 'f')}};
  std::string state = WriteSyntheticState(root, "Policlinico", study);
  auto written = WriteReport({state, "", ""}, root + "/out");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(written->audit_verified) << written->audit_error;
  json j = json::parse(*ReadFile(written->json_path));
  EXPECT_EQ(j["study"]["recorded"], true);
  EXPECT_EQ(j["study"]["id"], "sepsis-2027.01");
  EXPECT_EQ(j["study"]["purpose"], "Triage <b>pneumonia</b> & sepsis");
  EXPECT_EQ(j["study"]["legal_basis"], "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
  EXPECT_EQ(j["study"]["controllers"], study["controllers"]);
  EXPECT_EQ(j["study"]["retention_days"], 3650);
  std::string html = *ReadFile(written->html_path);
  EXPECT_THAT(html, HasSubstr("Triage &lt;b&gt;pneumonia&lt;/b&gt; &amp; sepsis"));
  EXPECT_THAT(html, Not(HasSubstr("<b>pneumonia")));
  EXPECT_THAT(html,
              HasSubstr("<dt>Study (what a site's policy.study pins)</dt><dd>sepsis-2027.01"));
  EXPECT_THAT(html, HasSubstr("<dt>Legal basis</dt><dd>Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR"));
  EXPECT_THAT(html, HasSubstr("Charité Berlin, AP-HP &lt;Paris&gt;"));
  EXPECT_THAT(html, HasSubstr("<dt>Retention (days)</dt><dd>3650</dd>"));
  EXPECT_EQ(j["study"]["purpose_sha256"], std::string(64, 'f'));
  EXPECT_THAT(
      html, HasSubstr("policy.purpose_sha256 pins)</dt><dd><code title=\"" + std::string(64, 'f')));
  EXPECT_THAT(html, HasSubstr("<dt>DPIA reference</dt><dd><span class=\"bad\">not stated"));
  // Near the top: before the checks, the federation and the rounds.
  const size_t at = html.find("id=\"study\"");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LT(at, html.find("id=\"federation\""));
  EXPECT_LT(at, html.find("id=\"rounds-section\""));

  std::string older = WriteSyntheticState(MakeTempDir("report"));
  auto without = BuildReport({older, "", ""});
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ((*without)["study"]["recorded"], false);
  EXPECT_TRUE((*without)["study"]["legal_basis"].is_null());
  EXPECT_THAT(RenderReportHtml(*without),
              HasSubstr("The audit log records no purpose, legal basis"));
}

}  // namespace
}  // namespace hansa
