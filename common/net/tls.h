// Mutual TLS 1.3 for every Hansa connection. There is no plaintext channel, even for tests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "common/pki/certificate.h"
#include "common/pki/revocation.h"
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

// A client certificate the coordinator refused in a TLS handshake, for its audit log.
struct CertificateRefusal {
  SubjectName subject;      // empty fields when the certificate could not be read
  std::string fingerprint;  // SHA-256 of the certificate; "unreadable" when it could not be read
  std::string serial_hex;
  // What was wrong: "revoked", "expired", "not_yet_valid", "wrong_ca" (not issued by the
  // federation CA) or "invalid" (anything else: a CA certificate, a server-only certificate,
  // an unreadable one, a key of another kind).
  std::string kind;
  std::string message;  // the refusal as CheckClientCertificate / the policy said it
  // Where: "tls_handshake", or "call" for a certificate revoked while its connection was open.
  std::string stage = "tls_handshake";
};

// The coordinator's rule for client certificates, shared by gRPC's handshake threads (Check,
// Refused) and the coordinator (the rest): the federation CA, the CA's revocation list (none,
// set, or a watched file) and who is told of refusals. Thread-safe.
class ClientCertificatePolicy {
 public:
  explicit ClientCertificatePolicy(Certificate ca);

  const Certificate& ca() const { return ca_; }

  // Reads the revocation list at `path` now (an error names the file: the coordinator refuses
  // to start on it), then re-reads it whenever its size, modification time or inode changes,
  // looked at by Check at most once a second. A new file that does not load (damaged, signed
  // by another CA, an older cRLNumber) keeps the old list and is logged at error once per
  // change.
  Status WatchRevocationList(const std::string& path);
  // Replaces the list (null: none).
  void SetRevocationList(std::shared_ptr<const RevocationList> list);
  std::shared_ptr<const RevocationList> revocation_list() const;

  // Called once per certificate fingerprint and refusal kind (per process) after a handshake
  // was refused, on gRPC's handshake thread: it must not block for long (an audit append is
  // fine). Set it before the server starts; null: nobody.
  using RefusalSink = std::function<void(const CertificateRefusal&)>;
  void SetRefusalSink(RefusalSink sink);

  // Re-reads the watched revocation list if its file changed and a second has passed since the
  // last look (Check calls it; the coordinator also calls it once a second, so that a new list
  // takes effect, and is logged, without waiting for a handshake).
  void Refresh(absl::Time now);

  // CheckClientCertificate, then the revocation list: PermissionDenied "certificate of 'x'
  // (serial 1f...) was revoked by the federation CA on 2031-01-01 00:00:00 UTC (keyCompromise)".
  Status Check(std::string_view certificate_pem, absl::Time at);
  // The revocation list alone (Refresh first): OK, or Check's "... was revoked ..." error.
  Status CheckRevoked(const Certificate& cert, absl::Time at);
  // A handshake with `certificate_pem` was refused with `why` (a status from Check): logs it at
  // warn once a minute per certificate, and tells the sink once per fingerprint and kind.
  void Refused(std::string_view certificate_pem, const Status& why, absl::Time now,
               std::string_view stage = "tls_handshake");

 private:
  struct FileState {
    int64_t size = -1;
    int64_t mtime_ns = -1;
    uint64_t inode = 0;
    bool operator==(const FileState& o) const {
      return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode;
    }
  };
  static FileState Stat(const std::string& path);

  struct Reported {
    absl::Time at;
    int64_t suppressed;
  };
  const Certificate ca_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const RevocationList> list_ ABSL_GUARDED_BY(mu_);
  std::string watched_path_ ABSL_GUARDED_BY(mu_);
  FileState watched_state_ ABSL_GUARDED_BY(mu_);
  absl::Time last_look_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  RefusalSink sink_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Reported> logged_ ABSL_GUARDED_BY(mu_);  // by fingerprint
  std::map<std::string, bool> told_ ABSL_GUARDED_BY(mu_);        // by fingerprint + kind
};

// The refusal kind (CertificateRefusal::kind) of a status from ClientCertificatePolicy::Check.
std::string CertificateRefusalKind(const Status& why);

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
// With `policy` (null: one with the CA of `files` and no revocation list), its Check decides and
// its Refused is told of every refusal.
StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, std::shared_ptr<ClientCertificatePolicy> policy = nullptr);

}  // namespace hansa
