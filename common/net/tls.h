// Mutual TLS 1.3 for every Hansa connection. There is no plaintext channel, even for tests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/pki/certificate.h"
#include "common/status/status.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

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

// A pinned peer certificate: the SHA-256 fingerprint (Certificate::Sha256Fingerprint) that the
// server's certificate must have, checked inside every TLS handshake of a channel made with
// MakeClientCredentials, after the CA chain and before the connection carries any call. A
// handshake with another certificate fails, so nothing is sent over it. Keeps what the last
// handshake showed, for the owner to say why it cannot connect. Thread-safe: gRPC calls
// Check from its own threads.
class CertificatePin {
 public:
  explicit CertificatePin(std::string fingerprint);

  const std::string& fingerprint() const { return fingerprint_; }
  // OK when `certificate_pem` (the peer's leaf certificate) has the pinned fingerprint;
  // Unauthenticated naming both fingerprints otherwise. Records the outcome.
  Status Check(std::string_view certificate_pem);
  // The fingerprint of the certificate the last handshake refused; empty when the last
  // handshake passed the pin or none has happened.
  std::string last_refused() const;
  // Handshakes refused so far.
  uint64_t refusals() const;
  // The end of the pinned certificate's validity, as a handshake last showed it; InfiniteFuture
  // before any handshake passed. A site names it when the coordinator can no longer be reached.
  absl::Time pinned_not_after() const;

 private:
  const std::string fingerprint_;
  mutable absl::Mutex mu_;
  absl::Time pinned_not_after_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::string last_refused_ ABSL_GUARDED_BY(mu_);
  uint64_t refusals_ ABSL_GUARDED_BY(mu_) = 0;
};

// Client credentials presenting the site's certificate and verifying the coordinator's
// against the federation CA and its host name; with `pin`, also that the coordinator's
// certificate is the pinned one, in every handshake.
StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(
    const TlsFiles& files, std::shared_ptr<CertificatePin> pin = nullptr);

// Whether the certificate a TLS client presented (PEM) may open a connection at time `at`: read,
// issued straight by the federation CA `ca` (its signature, names and validity, and the
// certificate's own), not a CA itself, allowed for TLS client authentication, and holding a key
// of a kind the federation issues (Ed25519 or ECDSA P-256). PermissionDenied naming the
// certificate and why otherwise (VerifyCertificate's messages: "certificate of 'x' expired on
// ...", "... is not yet valid: valid from ...", "... was not signed by the federation CA ...").
// Never more lenient than OpenSSL's own chain check in the handshake, which it replaces on the
// coordinator (see MakeServerCredentials): anything that check refuses, this refuses too.
Status CheckClientCertificate(std::string_view certificate_pem, const Certificate& ca,
                              absl::Time at);

// Server credentials for mutual TLS 1.3 (EnforceTls13Only first): the coordinator's
// certificate, and a client certificate required from every peer and verified against the
// federation CA. What the coordinator serves with, and tests that stand in for it.
//
// gRPC 1.51 checks a client certificate inside OpenSSL and, when it fails, logs only
// "certificate verify failed". So gRPC is told to require the certificate and hand it over
// unchecked, and CheckClientCertificate decides, inside the same handshake, before the
// connection carries any call: a refused handshake ends there, as before. Each refusal is
// logged once a minute per certificate at warn: "refused a TLS client: the client's
// certificate of 'alpha' expired on ... (sha256 ...)". gRPC 1.51 tells a verifier nothing of
// the peer's address, so the line names the certificate, not the address.
StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& files);

}  // namespace hansa
