#include "common/net/tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

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
// certificate over unchecked: GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY).
// Says why it refused, once a minute per certificate, so a site retrying every few seconds with
// an expired certificate, or a stranger's scanner, does not flood the log.
class ClientCertificateVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit ClientCertificateVerifier(Certificate ca) : ca_(std::move(ca)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback, grpc::Status* sync_status) override {
    grpc::string_ref pem = request->peer_cert();
    const std::string_view text(pem.data(), pem.size());
    Status st = CheckClientCertificate(text, ca_, absl::Now());
    if (st.ok()) {
      *sync_status = grpc::Status::OK;
      return true;
    }
    Report(text, st);
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(st.message()));
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  void Report(std::string_view pem, const Status& why) {
    StatusOr<Certificate> cert = Certificate::FromPem(pem);
    const std::string fingerprint = cert.ok() ? cert->Sha256Fingerprint() : "unreadable";
    const absl::Time now = absl::Now();
    int64_t since_last = 0;
    {
      absl::MutexLock lock(&mu_);
      if (last_.size() > 4096) last_.clear();  // bounded, whoever connects
      auto [it, fresh] = last_.try_emplace(fingerprint, Reported{now, 0});
      if (!fresh && now - it->second.at < absl::Minutes(1)) {
        ++it->second.suppressed;
        return;
      }
      since_last = it->second.suppressed;
      it->second = Reported{now, 0};
    }
    spdlog::warn("refused a TLS client: the client's {} (sha256 {}){}", std::string(why.message()),
                 fingerprint,
                 since_last > 0 ? absl::StrCat("; ", since_last, " more refused in the last minute")
                                : std::string());
  }

  struct Reported {
    absl::Time at;
    int64_t suppressed;
  };
  const Certificate ca_;
  absl::Mutex mu_;
  std::map<std::string, Reported> last_ ABSL_GUARDED_BY(mu_);
};

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

StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& files) {
  RETURN_IF_ERROR(EnforceTls13Only());
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      files.ca_certificate_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{
                                    {files.private_key_pem, files.certificate_pem}});
  ASSIGN_OR_RETURN(Certificate ca, Certificate::FromPem(files.ca_certificate_pem));
  if (!ca.IsCa()) return absl::InvalidArgumentError("the federation CA certificate is not a CA");
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  // A client certificate is required (a handshake without one fails in OpenSSL, as before) and
  // checked by ClientCertificateVerifier, which refuses whatever OpenSSL's chain check refused
  // and says why.
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<ClientCertificateVerifier>(
          std::move(ca)));
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace hansa
