// The site's page served by a real monitoring HTTP server on loopback, read with a socket.
#include "client/site_page.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "client/egress.h"
#include "common/audit/audit_log.h"
#include "common/audit/events.h"
#include "common/fileio/fileio.h"
#include "nlohmann/json.hpp"
#include "tests/support/http_get.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {
namespace {

namespace ev = audit_events;
using ::hansa::testing::LoopbackHttpGet;
using ::hansa::testing::MakeTempDir;
using ::hansa::testing::TestFederation;
using nlohmann::json;
using ::testing::HasSubstr;

class SitePageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("site_page");
    ledger_ = root_ + "/state/egress.jsonl";
    ASSERT_TRUE(WriteFileAtomically(root_ + "/ca.pem", Fed().ca().ToPem()).ok());
    ASSERT_TRUE(WriteFileAtomically(root_ + "/cert.pem", Fed().site("berlin").cert.ToPem()).ok());
    {
      const auto& berlin = Fed().site("berlin");
      auto log = AuditLog::Open(ledger_, berlin.Key(), berlin.cert);
      ASSERT_TRUE(log.ok()) << log.status();
      EgressRecorder egress(log->get());
      v1::JoinReply reply;
      reply.set_federation("cardiology-eu");
      reply.set_site("berlin");
      ASSERT_TRUE(egress.Joined(reply).ok());
      ASSERT_TRUE(egress.Append(PlanAccepted(1, std::string(64, '1'))).ok());
      v1::MetricsReport m;
      m.set_round(1);
      m.set_num_examples(300);
      m.set_accuracy(0.875);
      ASSERT_TRUE(
          egress.Sending(ev::kMessageMetrics, 1, m.SerializeAsString(), EgressValues(m)).ok());
      ASSERT_TRUE(egress.Append(PlanRefused(2, std::string(64, '2'), "model not allowed")).ok());
    }
    HttpServerOptions options;
    options.listen = "127.0.0.1:0";
    auto server = HttpServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // The policy's client-level budget: the page shows it beside what the ledger says was spent.
    ASSERT_TRUE(RegisterSitePage(
                    *server_, {root_ + "/state", root_ + "/ca.pem", root_ + "/cert.pem", 10, 8.0})
                    .ok());
  }

  static const TestFederation& Fed() { return TestFederation::Get(); }

  std::string root_, ledger_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(SitePageTest, ShowsTheFederationThePlansAndTheFiguresSent) {
  auto page = LoopbackHttpGet(server_->port(), "/");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200) << page->body;
  EXPECT_THAT(page->head, HasSubstr("text/html"));
  EXPECT_THAT(page->head, HasSubstr("default-src 'none'"));
  EXPECT_THAT(page->body, HasSubstr("Site report: berlin in cardiology-eu"));
  EXPECT_THAT(page->body, HasSubstr("Egress ledger verified: 4 records"));
  EXPECT_THAT(page->body, HasSubstr("model not allowed"));
  EXPECT_THAT(page->body, HasSubstr("accuracy&nbsp;0.875"));
  EXPECT_THAT(page->body, HasSubstr("http-equiv=\"refresh\" content=\"10\""));
  EXPECT_THAT(page->body, HasSubstr("Client-level budget: 8."));

  auto data = LoopbackHttpGet(server_->port(), "/report.json");
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->status, 200);
  json r = json::parse(data->body);
  EXPECT_EQ(r["federation"]["name"], "cardiology-eu");
  ASSERT_EQ(r["plans"].size(), 2u);
  EXPECT_EQ(r["plans"][1]["reason"], "model not allowed");
  EXPECT_EQ(r["rounds"][0]["metrics"]["accuracy"], 0.875);
  EXPECT_EQ(r["checks"][2]["passed"], true);  // signed with the site's own certificate
  EXPECT_EQ(r["privacy"]["budget"], 8.0);
}

TEST_F(SitePageTest, ReReadsTheLedgerOnEveryRequest) {
  auto text = ReadFile(ledger_);
  ASSERT_TRUE(text.ok());
  // A record being appended (no newline yet) is left out, not called a cut.
  ASSERT_TRUE(WriteFileAtomically(ledger_, *text + "{\"seq\":4,").ok());
  auto page = LoopbackHttpGet(server_->port(), "/");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(page->body, HasSubstr("Egress ledger verified: 4 records"));
  // A changed byte is seen at the next request.
  std::string changed = *text;
  changed[changed.find("model not allowed")] = 'M';
  ASSERT_TRUE(WriteFileAtomically(ledger_, changed).ok());
  page = LoopbackHttpGet(server_->port(), "/");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->body, HasSubstr("Egress ledger NOT verified"));
  EXPECT_THAT(page->body, HasSubstr("line 4"));
}

TEST_F(SitePageTest, AMissingStateDirIsAnErrorThatSaysWhich) {
  HttpResponse response = ServeSitePage({root_ + "/gone", root_ + "/ca.pem", "", 0}, {"GET", "/"});
  EXPECT_EQ(response.status, 500);
  EXPECT_THAT(response.body, HasSubstr("gone"));
}

}  // namespace
}  // namespace hansa
