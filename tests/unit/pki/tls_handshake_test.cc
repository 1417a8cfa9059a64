// Certificates from this module must work for mutual TLS 1.3 through OpenSSL, which is what
// gRPC uses underneath here. The handshake runs in memory over a BIO pair: no sockets.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <memory>

#include "common/pki/authority.h"
#include "gtest/gtest.h"
#include "tests/support/key_types.h"
#include "tests/support/tls_peers.h"

namespace hansa {
namespace {

using testing::IssueParticipant;
using testing::Participant;
using testing::SslCtxPtr;
using testing::SslPtr;

SslCtxPtr MakeContext(bool server, const Participant& me, const Certificate& ca) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  EXPECT_TRUE(ctx);
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), me.cert.get()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), me.key.get()), 1);
  EXPECT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get()), 1);
  SSL_CTX_set_verify(ctx.get(),
                     server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                     nullptr);
  return ctx;
}

// Runs both sides of the handshake to completion; true when both succeed.
bool Handshake(SSL* client, SSL* server) {
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  bool client_done = false, server_done = false;
  for (int i = 0; i < 20 && !(client_done && server_done); ++i) {
    if (!client_done) {
      int rc = SSL_do_handshake(client);
      if (rc == 1)
        client_done = true;
      else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ)
        break;
    }
    if (!server_done) {
      int rc = SSL_do_handshake(server);
      if (rc == 1)
        server_done = true;
      else if (SSL_get_error(server, rc) != SSL_ERROR_WANT_READ)
        break;
    }
  }
  // In TLS 1.3 the server checks the client's certificate after the client considers the
  // handshake done; an exchange of application data makes both sides see the outcome.
  bool ok = client_done && server_done;
  if (ok) {
    char byte = 'x';
    ok = SSL_write(client, &byte, 1) == 1 && SSL_read(server, &byte, 1) == 1;
  }
  ERR_clear_error();
  return ok;
}

class TlsHandshakeTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(TlsHandshakeTest, MutualTls13WithFederationCertificates) {
  CaOptions options;
  options.federation = "demo";
  options.country = "DE";
  options.key_type = GetParam();
  auto ca = CertificateAuthority::Create(options);
  ASSERT_TRUE(ca.ok());
  Participant coordinator = IssueParticipant(*ca, "coordinator", true, GetParam());
  Participant site = IssueParticipant(*ca, "berlin", false, GetParam());

  SslCtxPtr server_ctx = MakeContext(true, coordinator, ca->certificate());
  SslCtxPtr client_ctx = MakeContext(false, site, ca->certificate());
  SslPtr server(SSL_new(server_ctx.get()));
  SslPtr client(SSL_new(client_ctx.get()));
  ASSERT_EQ(SSL_set1_host(client.get(), "localhost"), 1);
  ASSERT_TRUE(Handshake(client.get(), server.get()));

  EXPECT_EQ(SSL_version(client.get()), TLS1_3_VERSION);
  EXPECT_EQ(SSL_get_verify_result(client.get()), X509_V_OK);
  EXPECT_EQ(SSL_get_verify_result(server.get()), X509_V_OK);
  X509* peer = SSL_get0_peer_certificate(server.get());
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(X509_cmp(peer, site.cert.get()), 0);  // the server sees the site's certificate
  int nid = NID_undef;
  ASSERT_EQ(SSL_get_peer_signature_type_nid(client.get(), &nid), 1);
  EXPECT_EQ(nid, GetParam() == KeyType::kEd25519 ? NID_ED25519 : NID_X9_62_id_ecPublicKey);
}

TEST_P(TlsHandshakeTest, ClientOfAnotherCaIsRefused) {
  CaOptions options;
  options.federation = "demo";
  options.country = "DE";
  options.key_type = GetParam();
  auto ca = CertificateAuthority::Create(options);
  auto rogue_ca = CertificateAuthority::Create(options);
  ASSERT_TRUE(ca.ok() && rogue_ca.ok());
  Participant coordinator = IssueParticipant(*ca, "coordinator", true, GetParam());
  Participant mallory = IssueParticipant(*rogue_ca, "mallory", false, GetParam());

  SslCtxPtr server_ctx = MakeContext(true, coordinator, ca->certificate());
  SslCtxPtr client_ctx = MakeContext(false, mallory, ca->certificate());
  SslPtr server(SSL_new(server_ctx.get()));
  SslPtr client(SSL_new(client_ctx.get()));
  EXPECT_FALSE(Handshake(client.get(), server.get()));
  EXPECT_NE(SSL_get_verify_result(server.get()), X509_V_OK);
}

INSTANTIATE_TEST_SUITE_P(Types, TlsHandshakeTest, testing::AllKeyTypes(), testing::KeyTypeTestName);

}  // namespace
}  // namespace hansa
