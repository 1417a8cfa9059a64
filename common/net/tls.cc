#include "common/net/tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "common/fileio/fileio.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

StatusOr<std::string> ReadPem(const std::string& path, const char* what, const char* marker) {
  auto text = ReadFile(path, 1 << 20);
  if (!text.ok()) {
    return Annotate(text.status(),
                    absl::StrCat("reading the ", what, " (check the startup kit and config)"));
  }
  if (text->find(marker) == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " does not look like a PEM ", what, " (no '", marker, "' line)"));
  }
  return text;
}

const char kTls13Config[] = R"(
hansa_openssl_init = hansa_init
[hansa_init]
ssl_conf = hansa_ssl
[hansa_ssl]
system_default = hansa_tls
[hansa_tls]
MinProtocol = TLSv1.3
Protocol = -ALL, TLSv1.3
)";

// Runs inside gRPC's handshake once the chain verified against the CA: the pin first, then
// the host-name check that gRPC applies when no verifier of ours is set.
class PinningVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit PinningVerifier(std::shared_ptr<CertificatePin> pin) : pin_(std::move(pin)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback, grpc::Status* sync_status) override {
    grpc::string_ref pem = request->peer_cert();
    Status pinned = pin_->Check(std::string_view(pem.data(), pem.size()));
    if (!pinned.ok()) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(pinned.message()));
      return true;
    }
    return host_name_.Verify(request, std::move(callback), sync_status);
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest* request) override {
    host_name_.Cancel(request);
  }

 private:
  const std::shared_ptr<CertificatePin> pin_;
  grpc::experimental::HostNameCertificateVerifier host_name_;
};

// The coordinator's check of every client certificate, inside gRPC's handshake (gRPC hands the
// certificate over unchecked: GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY):
// the policy decides, and is told of each refusal.
class ClientCertificateVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit ClientCertificateVerifier(std::shared_ptr<ClientCertificatePolicy> policy)
      : policy_(std::move(policy)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback, grpc::Status* sync_status) override {
    grpc::string_ref pem = request->peer_cert();
    const std::string_view text(pem.data(), pem.size());
    const absl::Time now = absl::Now();
    Status st = policy_->Check(text, now);
    if (st.ok()) {
      *sync_status = grpc::Status::OK;
      return true;
    }
    policy_->Refused(text, st, now);
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(st.message()));
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::shared_ptr<ClientCertificatePolicy> policy_;
};

constexpr size_t kMaxRememberedCertificates = 4096;  // bounded, whoever connects

}  // namespace

Status CheckClientCertificate(std::string_view certificate_pem, const Certificate& ca,
                              absl::Time at) {
  StatusOr<Certificate> cert = Certificate::FromPem(certificate_pem);
  if (!cert.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate could not be read: ", cert.status().message()));
  }
  RETURN_IF_ERROR(VerifyCertificate(*cert, ca, at, CertificateUsage::kTlsClient));
  // What OpenSSL's security level checks of a peer key, and stricter: only the kinds of key the
  // federation issues.
  StatusOr<PublicKey> key = cert->GetPublicKey();
  if (!key.ok()) {
    return absl::PermissionDeniedError(absl::StrCat("certificate of '", cert->Subject().common_name,
                                                    "' holds a key of a kind this federation "
                                                    "does not issue: ",
                                                    key.status().message()));
  }
  return absl::OkStatus();
}

StatusOr<TlsFiles> LoadTlsFiles(const std::string& certificate, const std::string& private_key,
                                const std::string& ca_certificate) {
  TlsFiles files;
  ASSIGN_OR_RETURN(files.certificate_pem,
                   ReadPem(certificate, "certificate", "-----BEGIN CERTIFICATE-----"));
  ASSIGN_OR_RETURN(files.private_key_pem, ReadPem(private_key, "private key", "PRIVATE KEY-----"));
  ASSIGN_OR_RETURN(files.ca_certificate_pem,
                   ReadPem(ca_certificate, "CA certificate", "-----BEGIN CERTIFICATE-----"));
  // Catch the usual startup-kit mistakes here, with file names, rather than as an opaque
  // handshake failure later.
  ASSIGN_OR_RETURN(Certificate cert, Certificate::FromPem(files.certificate_pem));
  ASSIGN_OR_RETURN(Certificate ca, Certificate::FromPem(files.ca_certificate_pem));
  ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::FromPem(files.private_key_pem));
  RETURN_IF_ERROR(Annotate(cert.CheckPrivateKeyMatches(key),
                           absl::StrCat(private_key, " is not the key of ", certificate)));
  RETURN_IF_ERROR(Annotate(VerifyCertificate(cert, ca, absl::Now()), certificate));
  return files;
}

ClientCertificatePolicy::ClientCertificatePolicy(Certificate ca) : ca_(std::move(ca)) {}

ClientCertificatePolicy::FileState ClientCertificatePolicy::Stat(const std::string& path) {
  struct stat st {};
  FileState state;
  if (stat(path.c_str(), &st) != 0) return state;
  state.size = static_cast<int64_t>(st.st_size);
  state.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  state.inode = static_cast<uint64_t>(st.st_ino);
  return state;
}

Status ClientCertificatePolicy::WatchRevocationList(const std::string& path) {
  const FileState state = Stat(path);
  ASSIGN_OR_RETURN(RevocationList list, RevocationList::FromFile(path, ca_));
  absl::MutexLock lock(&mu_);
  list_ = std::make_shared<const RevocationList>(std::move(list));
  watched_path_ = path;
  watched_state_ = state;
  last_look_ = absl::Now();
  return absl::OkStatus();
}

void ClientCertificatePolicy::SetRevocationList(std::shared_ptr<const RevocationList> list) {
  absl::MutexLock lock(&mu_);
  list_ = std::move(list);
}

std::shared_ptr<const RevocationList> ClientCertificatePolicy::revocation_list() const {
  absl::MutexLock lock(&mu_);
  return list_;
}

void ClientCertificatePolicy::SetRefusalSink(RefusalSink sink) {
  absl::MutexLock lock(&mu_);
  sink_ = std::move(sink);
}

void ClientCertificatePolicy::Refresh(absl::Time now) {
  std::string path;
  {
    absl::MutexLock lock(&mu_);
    if (watched_path_.empty() || now - last_look_ < absl::Seconds(1)) return;
    last_look_ = now;
    path = watched_path_;
  }
  const FileState state = Stat(path);
  {
    absl::MutexLock lock(&mu_);
    if (state == watched_state_) return;
    watched_state_ = state;  // a bad file is reported once, not at every look
  }
  StatusOr<RevocationList> fresh = RevocationList::FromFile(path, ca_);
  absl::MutexLock lock(&mu_);
  if (!fresh.ok()) {
    spdlog::error("keeping the revocation list read before (number {}): {}",
                  list_ ? list_->number() : 0, std::string(fresh.status().message()));
    return;
  }
  if (list_ && fresh->number() < list_->number()) {
    spdlog::error(
        "keeping the revocation list read before: {} holds list number {}, older than the {} "
        "in use",
        path, fresh->number(), list_->number());
    return;
  }
  spdlog::info("revocation list {} reloaded: number {}, {} revoked certificate(s)", path,
               fresh->number(), fresh->entries().size());
  list_ = std::make_shared<const RevocationList>(*std::move(fresh));
}

Status ClientCertificatePolicy::Check(std::string_view certificate_pem, absl::Time at) {
  RETURN_IF_ERROR(CheckClientCertificate(certificate_pem, ca_, at));
  StatusOr<Certificate> cert = Certificate::FromPem(certificate_pem);  // read by the check above
  if (!cert.ok()) return absl::PermissionDeniedError(cert.status().message());
  return CheckRevoked(*cert, at);
}

Status ClientCertificatePolicy::CheckRevoked(const Certificate& cert, absl::Time at) {
  Refresh(at);
  std::shared_ptr<const RevocationList> list = revocation_list();
  if (!list) return absl::OkStatus();
  const std::string serial = cert.SerialHex();
  const RevokedEntry* revoked = list->Find(serial);
  if (revoked == nullptr) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("certificate of '", cert.Subject().common_name, "' (serial ", serial,
                   ") was revoked by the federation CA on ",
                   FormatCertificateTime(revoked->revoked_at), " (", revoked->reason, ")"));
}

void ClientCertificatePolicy::Refused(std::string_view certificate_pem, const Status& why,
                                      absl::Time now, std::string_view stage) {
  StatusOr<Certificate> cert = Certificate::FromPem(certificate_pem);
  CertificateRefusal refusal;
  refusal.fingerprint = cert.ok() ? cert->Sha256Fingerprint() : "unreadable";
  if (cert.ok()) {
    refusal.subject = cert->Subject();
    refusal.serial_hex = cert->SerialHex();
  }
  refusal.kind = CertificateRefusalKind(why);
  refusal.message = std::string(why.message());
  refusal.stage = std::string(stage);
  int64_t suppressed = -1;  // -1: not logged now
  RefusalSink sink;
  {
    absl::MutexLock lock(&mu_);
    if (logged_.size() > kMaxRememberedCertificates) logged_.clear();
    auto [it, fresh] = logged_.try_emplace(refusal.fingerprint, Reported{now, 0});
    if (!fresh && now - it->second.at < absl::Minutes(1)) {
      ++it->second.suppressed;
    } else {
      suppressed = fresh ? 0 : it->second.suppressed;
      it->second = Reported{now, 0};
    }
    if (sink_) {
      if (told_.size() > kMaxRememberedCertificates) told_.clear();
      if (told_.emplace(absl::StrCat(refusal.fingerprint, "/", refusal.kind), true).second) {
        sink = sink_;
      }
    }
  }
  if (suppressed >= 0) {
    spdlog::warn("refused a {}: the client's {} (sha256 {}){}",
                 refusal.stage == "call" ? "call of a connected client" : "TLS client",
                 refusal.message, refusal.fingerprint,
                 suppressed > 0 ? absl::StrCat("; ", suppressed, " more refused in the last minute")
                                : std::string());
  }
  if (sink) sink(refusal);
}

std::string CertificateRefusalKind(const Status& why) {
  const std::string_view m(why.message().data(), why.message().size());
  if (m.find(") was revoked by the federation CA on ") != std::string_view::npos) return "revoked";
  if (m.find("' expired on ") != std::string_view::npos ||
      m.find("the federation CA certificate expired") != std::string_view::npos) {
    return "expired";
  }
  if (m.find(" is not yet valid") != std::string_view::npos) return "not_yet_valid";
  if (m.find("was not signed by the federation CA") != std::string_view::npos) return "wrong_ca";
  return "invalid";
}

Status EnforceTls13Only() {
  static std::once_flag once;
  static Status result;
  std::call_once(once, [] {
    OPENSSL_init_ssl(0, nullptr);
    struct ConfFree {
      void operator()(CONF* c) const { NCONF_free(c); }
    };
    struct BioFree {
      void operator()(BIO* b) const { BIO_free(b); }
    };
    std::unique_ptr<CONF, ConfFree> conf(NCONF_new(nullptr));
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(kTls13Config, -1));
    long error_line = 0;
    if (!conf || !bio || NCONF_load_bio(conf.get(), bio.get(), &error_line) <= 0 ||
        CONF_modules_load(conf.get(), "hansa_openssl_init", 0) <= 0) {
      result =
          absl::InternalError(absl::StrCat("could not restrict OpenSSL to TLS 1.3 (config line ",
                                           error_line, ", OpenSSL error ", ERR_get_error(), ")"));
    }
  });
  return result;
}

CertificatePin::CertificatePin(std::string fingerprint) : fingerprint_(std::move(fingerprint)) {}

Status CertificatePin::Check(std::string_view certificate_pem) {
  StatusOr<Certificate> cert = Certificate::FromPem(certificate_pem);
  std::string seen = cert.ok() ? cert->Sha256Fingerprint() : std::string("(unreadable)");
  absl::MutexLock lock(&mu_);
  if (cert.ok() && seen == fingerprint_) {
    last_refused_.clear();
    pinned_not_after_ = cert->NotAfter();
    return absl::OkStatus();
  }
  ++refusals_;
  last_refused_ = seen;
  return absl::UnauthenticatedError(
      absl::StrCat("peer certificate fingerprint ", seen, " is not the pinned ", fingerprint_));
}

std::string CertificatePin::last_refused() const {
  absl::MutexLock lock(&mu_);
  return last_refused_;
}

absl::Time CertificatePin::pinned_not_after() const {
  absl::MutexLock lock(&mu_);
  return pinned_not_after_;
}

uint64_t CertificatePin::refusals() const {
  absl::MutexLock lock(&mu_);
  return refusals_;
}

StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(
    const TlsFiles& files, std::shared_ptr<CertificatePin> pin) {
  RETURN_IF_ERROR(EnforceTls13Only());
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      files.ca_certificate_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{
                                    {files.private_key_pem, files.certificate_pem}});
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_check_call_host(true);
  if (pin) {
    options.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<PinningVerifier>(std::move(pin)));
  }
  auto creds = grpc::experimental::TlsCredentials(options);
  if (!creds) return absl::InternalError("gRPC refused the TLS client credentials");
  return creds;
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, std::shared_ptr<ClientCertificatePolicy> policy) {
  RETURN_IF_ERROR(EnforceTls13Only());
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      files.ca_certificate_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{
                                    {files.private_key_pem, files.certificate_pem}});
  ASSIGN_OR_RETURN(Certificate ca, Certificate::FromPem(files.ca_certificate_pem));
  if (!ca.IsCa()) return absl::InvalidArgumentError("the federation CA certificate is not a CA");
  if (!policy) policy = std::make_shared<ClientCertificatePolicy>(std::move(ca));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  // A client certificate is required (a handshake without one fails in OpenSSL, as before) and
  // checked by ClientCertificateVerifier, which refuses whatever OpenSSL's chain check refused
  // and says why.
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<ClientCertificateVerifier>(
          std::move(policy)));
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace hansa
