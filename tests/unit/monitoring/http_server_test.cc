// The monitoring HTTP server over real loopback sockets: what it serves (exact paths, GET and
// HEAD only, security headers), the loopback rule, and HTTPS with client certificates from the
// federation CA (accepted), none or another CA's (refused in the handshake), and the authorize
// hook (403 with its reason).
#include "common/monitoring/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>

#include "common/pki/authority.h"
#include "tests/support/http_get.h"
#include "tests/support/tls_peers.h"

namespace hansa {
namespace {

using ::hansa::testing::LoopbackHttp;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

HttpResponse Text(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

StatusOr<std::unique_ptr<HttpServer>> StartLoopback() {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  return HttpServer::Start(std::move(options));
}

TEST(HttpServerTest, ServesRegisteredPathsAndAnswers404And405) {
  auto server = StartLoopback();
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  (*server)->Handle("/metrics", [](const HttpRequest& r) { return Text("q=" + r.query + "\n"); });

  const std::string ok = LoopbackHttp((*server)->port(), "/metrics?x=1");
  EXPECT_THAT(ok, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\nq=x=1\n"));
  EXPECT_THAT(ok, HasSubstr("X-Content-Type-Options: nosniff"));
  EXPECT_THAT(ok, HasSubstr("Cache-Control: no-store"));
  EXPECT_THAT(ok, HasSubstr("Content-Type: text/plain; charset=utf-8"));

  EXPECT_THAT(LoopbackHttp((*server)->port(), "/metrics/"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(LoopbackHttp((*server)->port(), "/"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(LoopbackHttp((*server)->port(), "/../etc/passwd"), Not(HasSubstr("root:")));
  const std::string post = LoopbackHttp((*server)->port(), "/metrics", "POST");
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(post, HasSubstr("Allow: GET, HEAD"));

  const std::string head = LoopbackHttp((*server)->port(), "/metrics?x=1", "HEAD");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(head, HasSubstr("Content-Length: 6\r\n"));
  EXPECT_THAT(head, Not(HasSubstr("q=")));
}

TEST(HttpServerTest, HandlersAddedLaterAndHtmlGetsAStrictPolicy) {
  auto server = StartLoopback();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT(LoopbackHttp((*server)->port(), "/page"), StartsWith("HTTP/1.1 404"));
  (*server)->Handle("/page", [](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = "<p>hi</p>";
    return r;
  });
  const std::string page = LoopbackHttp((*server)->port(), "/page");
  EXPECT_THAT(page, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(page, HasSubstr(std::string("Content-Security-Policy: ") +
                              kStrictContentSecurityPolicy + "\r\n"));
}

TEST(HttpServerTest, RefusesOversizedRequests) {
  auto server = StartLoopback();
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Handle("/metrics", [](const HttpRequest&) { return Text("ok"); });
  const std::string big =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(64 << 10, 'a') + "\r\n\r\n";
  const auto answer = testing::LoopbackSend((*server)->port(), big);
  EXPECT_THAT(answer.value_or(""), Not(HasSubstr("HTTP/1.1 200")));
}

TEST(HttpServerTest, RefusesNonLoopbackWithoutTlsAndMalformedAddresses) {
  HttpServerOptions options;
  options.listen = "0.0.0.0:0";
  auto any = HttpServer::Start(options);
  EXPECT_EQ(any.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(any.status().message()), HasSubstr("without TLS"));
  options.listen = "localhost:9464";
  EXPECT_THAT(std::string(HttpServer::Start(options).status().message()),
              HasSubstr("not a numeric IPv4 address"));
  options.listen = "127.0.0.1";
  EXPECT_THAT(std::string(HttpServer::Start(options).status().message()), HasSubstr("port"));
  options.listen = "";
  EXPECT_EQ(HttpServer::Start(options).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
}

TEST(HttpServerTest, RefusesAnAddressInUse) {
  auto first = StartLoopback();
  ASSERT_TRUE(first.ok()) << first.status();
  HttpServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string((*first)->port());
  EXPECT_EQ(HttpServer::Start(options).status().code(), absl::StatusCode::kUnavailable);
}

class HttpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca =
        CertificateAuthority::Create({.federation = "demo", .organization = "", .country = "DE"});
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<CertificateAuthority>(*std::move(ca));
    auto rogue =
        CertificateAuthority::Create({.federation = "rogue", .organization = "", .country = "DE"});
    ASSERT_TRUE(rogue.ok()) << rogue.status();
    rogue_ = std::make_unique<CertificateAuthority>(*std::move(rogue));
  }

  StatusOr<std::unique_ptr<HttpServer>> Start(
      std::function<Status(const Certificate&)> authorize = nullptr) {
    testing::Participant server = testing::IssueParticipant(*ca_, "coordinator", true);
    HttpServerOptions options;
    options.listen = "127.0.0.1:0";
    options.tls =
        TlsFiles{server.cert.ToPem(), server.key.ToPem().value(), ca_->certificate().ToPem()};
    options.authorize = std::move(authorize);
    auto started = HttpServer::Start(std::move(options));
    if (started.ok()) {
      (*started)->Handle("/metrics", [](const HttpRequest& r) {
        return Text("hello " + r.client_common_name + "\n");
      });
    }
    return started;
  }

  // GET /metrics over TLS 1.3 presenting `client` (none: no certificate). Empty when the server
  // sent no HTTP response.
  std::string HttpsGet(int port, const testing::Participant* client) {
    return testing::LoopbackHttpsGet(port, "/metrics", client);
  }

  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<CertificateAuthority> rogue_;
};

TEST_F(HttpsServerTest, AcceptsACertificateOfTheFederationCa) {
  auto server = Start();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->tls());
  const testing::Participant site = testing::IssueParticipant(*ca_, "berlin", false);
  const std::string reply = HttpsGet((*server)->port(), &site);
  EXPECT_THAT(reply, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(reply, HasSubstr("hello berlin\n"));
}

TEST_F(HttpsServerTest, RefusesNoCertificateAndAnotherCasCertificate) {
  auto server = Start();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(HttpsGet((*server)->port(), nullptr), "");
  const testing::Participant stranger = testing::IssueParticipant(*rogue_, "berlin", false);
  EXPECT_EQ(HttpsGet((*server)->port(), &stranger), "");
  // Plain HTTP to the HTTPS port gets no page either.
  EXPECT_THAT(LoopbackHttp((*server)->port(), "/metrics"), Not(HasSubstr("hello")));
}

TEST_F(HttpsServerTest, AuthorizeRefusesWith403AndItsReason) {
  std::atomic<int> asked{0};
  auto server = Start([&asked](const Certificate& client) {
    ++asked;
    if (client.Subject().common_name == "operator") return absl::OkStatus();
    return absl::PermissionDeniedError("'" + client.Subject().common_name +
                                       "' has no operator role");
  });
  ASSERT_TRUE(server.ok()) << server.status();
  const testing::Participant site = testing::IssueParticipant(*ca_, "berlin", false);
  const std::string refused = HttpsGet((*server)->port(), &site);
  EXPECT_THAT(refused, StartsWith("HTTP/1.1 403"));
  EXPECT_THAT(refused, HasSubstr("'berlin' has no operator role"));
  const testing::Participant op = testing::IssueParticipant(*ca_, "operator", false);
  EXPECT_THAT(HttpsGet((*server)->port(), &op), HasSubstr("hello operator\n"));
  EXPECT_EQ(asked.load(), 2);
}

TEST_F(HttpsServerTest, NonLoopbackIsAllowedWithTls) {
  testing::Participant server_id = testing::IssueParticipant(*ca_, "coordinator", true);
  HttpServerOptions options;
  options.listen = "0.0.0.0:0";
  options.tls =
      TlsFiles{server_id.cert.ToPem(), server_id.key.ToPem().value(), ca_->certificate().ToPem()};
  auto server = HttpServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Handle("/metrics", [](const HttpRequest&) { return Text("x"); });
  const testing::Participant site = testing::IssueParticipant(*ca_, "berlin", false);
  EXPECT_THAT(HttpsGet((*server)->port(), &site), StartsWith("HTTP/1.1 200"));
}

}  // namespace
}  // namespace hansa
