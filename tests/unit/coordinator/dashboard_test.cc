// The operator's dashboard (coordinator/dashboard.h) over real sockets: what /status.json says
// and how it escapes what peers named, what the page's paths serve, and who may open it beyond
// loopback: an operator's certificate (OU=operator) yes; a site's, a revoked operator's, or none
// at all, no.
#include "coordinator/dashboard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "common/pki/authority.h"
#include "common/pki/ca_registry.h"
#include "common/pki/revocation.h"
#include "tests/support/http_get.h"
#include "tests/support/tls_peers.h"

namespace hansa {
namespace {

using ::hansa::testing::LoopbackHttp;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using json = nlohmann::json;

constexpr char kHostile[] = "<img src=x onerror=alert(1)>&\"</script>";

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

FederationStatus ThreeSites() {
  FederationStatus s;
  s.federation = "demo";
  s.ca_subject = "CN=demo CA, C=DE";
  s.started = kNow - absl::Minutes(5);
  s.total_rounds = 5;
  s.completed_rounds = 2;
  s.current_round = 3;
  s.stage = "train";
  s.stage_started = kNow - absl::Seconds(4);
  s.round_started = kNow - absl::Seconds(10);
  for (const char* name : {"berlin", "milan", kHostile}) {
    SiteStatus site;
    site.name = name;
    site.country = "DE";
    site.organization = name;
    site.last_seen = kNow - absl::Seconds(3);
    site.in_cohort = true;
    s.sites[name] = site;
  }
  s.sites["berlin"].round_upload_bytes = 4000;
  s.sites["berlin"].round_uploaded = true;
  s.sites["milan"].round_upload_bytes = 1000;
  s.sites["milan"].last_seen = kNow - absl::Minutes(10);  // longer than site_idle
  s.sites["milan"].dropouts = 1;
  s.dropouts = 1;
  RoundHistory first;
  first.round = 1;
  first.sites = 3;
  first.accuracy = 0.5;
  first.loss = 1.25;
  RoundHistory second;
  second.round = 2;
  second.sites = 3;  // not evaluated yet: NaN
  s.history = {first, second};
  s.privacy = {{"client_level", 0.75, 4.0, 1e-5}};
  s.audit_records = 42;
  s.audit_head = "ab12";
  return s;
}

TEST(DashboardStatusTest, SaysWhatTheSnapshotHoldsWithTimesAndNaNsAsTheyRead) {
  DashboardFacts facts;
  facts.ca_fingerprint = "ff00";
  const json doc = DashboardStatusJson(ThreeSites(), facts, kNow);
  EXPECT_EQ(doc["federation"]["name"], "demo");
  EXPECT_EQ(doc["federation"]["ca"]["fingerprint"], "ff00");
  EXPECT_EQ(doc["federation"]["started_at"], "2027-01-15T07:55:00Z");
  EXPECT_EQ(doc["federation"]["coordinator"]["certificate_not_after"], nullptr);
  EXPECT_EQ(doc["round"]["number"], 3);
  EXPECT_EQ(doc["round"]["stage"], "train");
  EXPECT_EQ(doc["round"]["stage_seconds"], 4.0);
  ASSERT_EQ(doc["sites"].size(), 3u);
  const json& berlin = doc["sites"][1];
  const json& milan = doc["sites"][2];
  ASSERT_EQ(berlin["name"], "berlin");
  EXPECT_EQ(berlin["state"], "connected");
  EXPECT_EQ(berlin["last_seen_seconds_ago"], 3.0);
  EXPECT_EQ(berlin["upload"]["expected_bytes"], 4000);
  EXPECT_EQ(milan["state"], "disconnected");
  EXPECT_EQ(milan["dropouts"], 1);
  // A site still uploading is measured against the first whole update of the round.
  EXPECT_EQ(milan["upload"]["received_bytes"], 1000);
  EXPECT_EQ(milan["upload"]["expected_bytes"], 4000);
  EXPECT_EQ(doc["connected"], 2);
  ASSERT_EQ(doc["history"].size(), 2u);
  EXPECT_EQ(doc["history"][0]["accuracy"], 0.5);
  EXPECT_EQ(doc["history"][1]["accuracy"], nullptr);
  EXPECT_EQ(doc["history"][1]["loss"], nullptr);
  EXPECT_EQ(doc["privacy"][0]["epsilon_budget"], 4.0);
  EXPECT_EQ(doc["audit"]["head_hash"], "ab12");
  EXPECT_FALSE(doc.contains("study"));

  FederationStatus with_study = ThreeSites();
  with_study.study.set_id("fmnist-2027-01");
  with_study.study.set_purpose("Train a classifier");
  with_study.study.set_retention_days(30);
  const json study = DashboardStatusJson(with_study, facts, kNow)["study"];
  EXPECT_EQ(study["id"], "fmnist-2027-01");
  EXPECT_EQ(study["purpose"], "Train a classifier");
  EXPECT_EQ(study["retention_days"], 30);
}

TEST(DashboardStatusTest, ListsTheNewestDropoutsAndRefusalsFirstWithWhy) {
  FederationStatusBoard board;
  board.SiteJoined("berlin", "Charite", "DE", absl::InfiniteFuture(), kNow);
  board.SiteJoined("milan", "Policlinico", "IT", absl::InfiniteFuture(), kNow);
  board.PlanOpened(3, {"berlin", "milan"}, kNow);
  board.StageBegan("consent", kNow);
  board.SiteRefused("berlin", "privacy budget spent: 3.9 of 4");
  board.StageBegan("train", kNow);
  board.SiteDropped("milan", "train");

  json doc = DashboardStatusJson(board.Snapshot(), DashboardFacts{}, kNow);
  EXPECT_EQ(doc["dropouts"], 1);
  EXPECT_EQ(doc["refusals"], 1);
  ASSERT_EQ(doc["events"].size(), 2u);
  EXPECT_EQ(doc["events"][0], (json{{"round", 3},
                                    {"site", "milan"},
                                    {"kind", "dropped"},
                                    {"stage", "train"},
                                    {"reason", ""}}));
  EXPECT_EQ(doc["events"][1]["kind"], "refused");
  EXPECT_EQ(doc["events"][1]["stage"], "consent");
  EXPECT_EQ(doc["events"][1]["reason"], "privacy budget spent: 3.9 of 4");

  // Only the newest are kept: a long-running federation's list does not grow without end.
  for (int i = 0; i < 60; ++i) board.SiteRefused("berlin", "refusal " + std::to_string(i));
  const FederationStatus status = board.Snapshot();
  ASSERT_EQ(status.recent_events.size(), kMaxRecentSiteEvents);
  EXPECT_EQ(status.recent_events.back().reason, "refusal 59");
  EXPECT_EQ(status.refusals, 61);
  doc = DashboardStatusJson(status, DashboardFacts{}, kNow);
  EXPECT_EQ(doc["events"][0]["reason"], "refusal 59");
}

TEST(DashboardStatusTest, NoStringFromAPeerReadsAsMarkup) {
  FederationStatus status = ThreeSites();
  status.federation = kHostile;
  status.recent_events.push_back({3, kHostile, "refused", "consent", kHostile});
  status.study.set_purpose(kHostile);
  const std::string text = SafeJsonText(DashboardStatusJson(status, DashboardFacts{}, kNow));
  EXPECT_THAT(text, Not(HasSubstr("<")));
  EXPECT_THAT(text, Not(HasSubstr(">")));
  EXPECT_THAT(text, Not(HasSubstr("&")));
  EXPECT_THAT(text, HasSubstr("\\u003cimg src=x onerror=alert(1)\\u003e\\u0026\\\"\\u003c/script"));
  // ... and reads back as exactly what was named.
  const json back = json::parse(text);
  EXPECT_EQ(back["federation"]["name"], kHostile);
  EXPECT_EQ(back["sites"][0]["name"], kHostile);
  EXPECT_EQ(back["study"]["purpose"], kHostile);
  EXPECT_EQ(back["events"][0]["reason"], kHostile);
  // Bytes that are not UTF-8 are replaced, not a reason to fail the page.
  EXPECT_NO_THROW(json::parse(SafeJsonText(json{{"site", std::string("a\xff")}})));
}

std::string Body(const std::string& reply) {
  const size_t at = reply.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : reply.substr(at + 4);
}

TEST(DashboardServeTest, ThePageItsAssetsAndItsJsonOnLoopback) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  auto server = HttpServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  auto board = std::make_shared<FederationStatusBoard>();
  board->Update([](FederationStatus& s) { s = ThreeSites(); });
  RegisterDashboard(**server, board, nullptr, DashboardFacts{});
  const int port = (*server)->port();

  const std::string page = LoopbackHttp(port, "/");
  EXPECT_THAT(page, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(page, HasSubstr("Content-Type: text/html; charset=utf-8"));
  EXPECT_THAT(page,
              HasSubstr(std::string("Content-Security-Policy: ") + kStrictContentSecurityPolicy));
  EXPECT_THAT(page, HasSubstr("<script src=\"/dashboard.js\" defer></script>"));
  EXPECT_THAT(page, HasSubstr("id=\"chart-accuracy\""));
  // No inline script or style: the policy would block them.
  EXPECT_THAT(Body(page), Not(HasSubstr("<script>")));
  EXPECT_THAT(Body(page), Not(HasSubstr("style=")));
  EXPECT_THAT(Body(page), Not(HasSubstr("http://")));
  EXPECT_THAT(Body(page), Not(HasSubstr("https://")));

  const std::string script = LoopbackHttp(port, "/dashboard.js");
  EXPECT_THAT(script, HasSubstr("Content-Type: text/javascript; charset=utf-8"));
  EXPECT_THAT(script, HasSubstr("/status.json"));
  EXPECT_THAT(Body(script), Not(HasSubstr("innerHTML")));
  EXPECT_THAT(LoopbackHttp(port, "/dashboard.css"),
              HasSubstr("Content-Type: text/css; charset=utf-8"));

  const std::string status = LoopbackHttp(port, "/status.json");
  EXPECT_THAT(status, HasSubstr("Content-Type: application/json"));
  EXPECT_THAT(status, HasSubstr("Cache-Control: no-store"));
  const json doc = json::parse(Body(status));
  EXPECT_EQ(doc["sites"].size(), 3u);
  EXPECT_EQ(doc["sites"][0]["name"], kHostile);

  board->Update([](FederationStatus& s) {
    RoundHistory third;
    third.round = 3;
    third.accuracy = 0.7;
    s.history.push_back(third);
  });
  EXPECT_EQ(json::parse(Body(LoopbackHttp(port, "/status.json")))["history"].size(), 3u);
  EXPECT_THAT(LoopbackHttp(port, "/status"), StartsWith("HTTP/1.1 404"));
}

class DashboardAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca =
        CertificateAuthority::Create({.federation = "demo", .organization = "", .country = "DE"});
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<CertificateAuthority>(*std::move(ca));
    policy_ = std::make_shared<ClientCertificatePolicy>(ca_->certificate());
  }

  // A client certificate of the federation CA, an operator's when `ou` is kOperatorUnit.
  testing::Participant Issue(const std::string& name, const std::string& ou) {
    auto key = PrivateKey::Generate();
    EXPECT_TRUE(key.ok());
    CertificateRequest request;
    request.subject = {name, name, "DE"};
    request.organizational_unit = ou;
    request.client_auth = true;
    auto cert = ca_->Issue(request, key->GetPublicKey());
    EXPECT_TRUE(cert.ok()) << cert.status();
    return testing::Participant{*std::move(cert), *std::move(key)};
  }

  // The dashboard's server as the coordinator starts it beyond loopback: HTTPS, the CA's
  // client certificates, OperatorAuthorizer. Listens on 0.0.0.0, reached through 127.0.0.1.
  std::unique_ptr<HttpServer> Start() {
    testing::Participant server_id = testing::IssueParticipant(*ca_, "coordinator", true);
    HttpServerOptions options;
    options.listen = "0.0.0.0:0";
    options.tls =
        TlsFiles{server_id.cert.ToPem(), server_id.key.ToPem().value(), ca_->certificate().ToPem()};
    options.authorize = OperatorAuthorizer(policy_);
    auto server = HttpServer::Start(std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    auto board = std::make_shared<FederationStatusBoard>();
    board->Update([](FederationStatus& s) { s = ThreeSites(); });
    RegisterDashboard(**server, board, nullptr, DashboardFacts{});
    return *std::move(server);
  }

  // GET /status.json over TLS 1.3 presenting `client` (none: no certificate). Empty when the
  // server sent no HTTP response (a refused handshake).
  std::string HttpsGet(int port, const testing::Participant* client) {
    return testing::LoopbackHttpsGet(port, "/status.json", client);
  }

  std::unique_ptr<CertificateAuthority> ca_;
  std::shared_ptr<ClientCertificatePolicy> policy_;
};

TEST_F(DashboardAccessTest, AnOperatorCertificateOpensItASitesDoesNot) {
  std::unique_ptr<HttpServer> server = Start();
  ASSERT_NE(server, nullptr);
  const testing::Participant op = Issue("alice", kOperatorUnit);
  const std::string opened = HttpsGet(server->port(), &op);
  EXPECT_THAT(opened, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(opened, HasSubstr("\"federation\""));

  const testing::Participant site = Issue("berlin", "");
  const std::string refused = HttpsGet(server->port(), &site);
  EXPECT_THAT(refused, StartsWith("HTTP/1.1 403"));
  EXPECT_THAT(refused, HasSubstr("the certificate of 'berlin'"));
  EXPECT_THAT(refused, HasSubstr("hansa ca sign --role operator"));
  EXPECT_THAT(refused, Not(HasSubstr("\"federation\"")));

  // Another unit than the CA's operator mark is no operator either.
  const testing::Participant other = Issue("bob", "operators");
  EXPECT_THAT(HttpsGet(server->port(), &other), StartsWith("HTTP/1.1 403"));
}

TEST_F(DashboardAccessTest, NoCertificateOrARevokedOperatorIsRefused) {
  std::unique_ptr<HttpServer> server = Start();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(HttpsGet(server->port(), nullptr), "");

  const testing::Participant op = Issue("alice", kOperatorUnit);
  auto list = RevocationList::Issue(*ca_, {{op.cert.SerialHex(), absl::Now(), "keyCompromise"}}, 1,
                                    absl::Now() - absl::Minutes(1), absl::Now() + absl::Hours(24));
  ASSERT_TRUE(list.ok()) << list.status();
  policy_->SetRevocationList(std::make_shared<const RevocationList>(*std::move(list)));
  const std::string refused = HttpsGet(server->port(), &op);
  EXPECT_THAT(refused, StartsWith("HTTP/1.1 403"));
  EXPECT_THAT(refused, HasSubstr("revoked"));
}

TEST(DashboardAccessRuleTest, BeyondLoopbackNeedsTlsAndTheOperatorMark) {
  // Without TLS the server does not start beyond loopback, so no request there ever goes
  // unchecked.
  HttpServerOptions options;
  options.listen = "0.0.0.0:0";
  options.authorize = OperatorAuthorizer(nullptr);
  auto plain = HttpServer::Start(std::move(options));
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plain.status().message()), HasSubstr("without TLS"));
}

}  // namespace
}  // namespace hansa
