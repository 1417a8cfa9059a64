// Test helpers for TLS at the OpenSSL level: owning pointers for SSL objects, a participant (a
// certificate the test federation's CA issued, and its key), and a loopback TCP connection with
// a receive timeout, so a test that would hang fails instead. Header only; single-threaded use.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/internal/openssl_util.h"
#include "common/pki/key.h"

namespace hansa::testing {

using SslCtxPtr = std::unique_ptr<SSL_CTX, pki_internal::Deleter<SSL_CTX, SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, pki_internal::Deleter<SSL, SSL_free>>;
using EvpPkeyPtr = pki_internal::EvpPkeyPtr;
using BioPtr = pki_internal::BioPtr;
using X509Ptr = pki_internal::X509Ptr;

struct Participant {
  Certificate cert;
  PrivateKey key;
};

// A key of `type` and a certificate for `name` (organisation `name`, country DE) from `ca`: for
// TLS servers (localhost and 127.0.0.1) when `server`, for clients otherwise; valid over
// [not_before, not_after] where given, the CA's defaults otherwise.
inline Participant IssueParticipant(const CertificateAuthority& ca, const std::string& name,
                                    bool server, KeyType type = KeyType::kEd25519,
                                    std::optional<absl::Time> not_before = std::nullopt,
                                    std::optional<absl::Time> not_after = std::nullopt) {
  auto key = PrivateKey::Generate(type);
  EXPECT_TRUE(key.ok()) << key.status();
  CertificateRequest request;
  request.subject = {name, name, "DE"};
  request.server_auth = server;
  request.client_auth = !server;
  if (not_before) request.not_before = *not_before;
  if (not_after) request.not_after = *not_after;
  if (server) {
    request.dns_names = {"localhost"};
    request.ip_addresses = {"127.0.0.1"};
  }
  auto cert = ca.Issue(request, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  return Participant{*std::move(cert), std::move(key).value()};
}

// A TCP connection to 127.0.0.1:`port` whose reads give up after `receive_timeout`.
inline int ConnectLoopback(int port, absl::Duration receive_timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv = absl::ToTimeval(receive_timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

}  // namespace hansa::testing
