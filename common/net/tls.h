// Mutual TLS 1.3 for every Hansa connection. There is no plaintext channel, even for tests.
#pragma once

#include <memory>
#include <string>

#include "common/status/status.h"

namespace grpc {
class ChannelCredentials;
}

namespace hansa {

// PEM material of one participant: its certificate, private key and the federation CA.
struct TlsFiles {
  std::string certificate_pem;
  std::string private_key_pem;
  std::string ca_certificate_pem;
};

// Reads the three PEM files and checks that the key belongs to the certificate and the
// certificate is currently valid under the CA; errors name the file and what to do.
StatusOr<TlsFiles> LoadTlsFiles(const std::string& certificate, const std::string& private_key,
                                const std::string& ca_certificate);

// Makes every TLS context this process creates accept TLS 1.3 only. gRPC 1.51 has no public
// option for the minimum version, so this loads an OpenSSL configuration (from memory) whose
// system_default section disables everything below TLS 1.3; it applies to each SSL_CTX created
// afterwards. Call once at process start, before any channel or server exists. Idempotent.
Status EnforceTls13Only();

// Client credentials presenting the site's certificate and verifying the coordinator's
// against the federation CA.
StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(const TlsFiles& files);

}  // namespace hansa
