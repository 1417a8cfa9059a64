#include "common/pki/certificate.h"

#include <openssl/pem.h>

#include <ctime>

#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/pki/internal/openssl_util.h"
#include "common/pki/internal/x509_names.h"
#include "common/status/check.h"

namespace hansa {
namespace {

using pki_internal::BioContents;
using pki_internal::BioPtr;
using pki_internal::MemoryBio;
using pki_internal::X509StoreCtxPtr;
using pki_internal::X509StorePtr;

constexpr size_t kMaxCertificateFileBytes = 1 << 20;

absl::Time ToAbslTime(const ASN1_TIME* t) {
  struct tm tm {};
  HANSA_CHECK(ASN1_TIME_to_tm(t, &tm) == 1);  // Certificate::FromPem checked it
  return absl::FromTimeT(timegm(&tm));
}

Status NotSignedError(const std::string& who, int err) {
  return absl::PermissionDeniedError(absl::StrCat(
      "certificate of '", who, "' was not signed by the federation CA (",
      X509_verify_cert_error_string(err),
      "); it may belong to another federation: ask the federation operator for a certificate "
      "issued by this federation's CA"));
}

std::string UsageName(CertificateUsage usage) {
  switch (usage) {
    case CertificateUsage::kTlsServer:
      return "TLS server authentication";
    case CertificateUsage::kTlsClient:
      return "TLS client authentication";
    case CertificateUsage::kAny:
      break;
  }
  return "any use";
}

}  // namespace

Status ValidateCountryCode(std::string_view country) {
  bool ok = country.size() == 2 && country[0] >= 'A' && country[0] <= 'Z' && country[1] >= 'A' &&
            country[1] <= 'Z';
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("country '", std::string(country),
                   "' is not an ISO 3166-1 alpha-2 code; use two uppercase letters such as DE, "
                   "FR or IT"));
}

StatusOr<Certificate> Certificate::FromPem(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  X509* raw = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (raw == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "no PEM certificate found (expected '-----BEGIN CERTIFICATE-----')");
  }
  std::shared_ptr<X509> x509(raw, X509_free);
  // OpenSSL reads the subject's public key and the validity times only when they are first
  // asked for: a certificate where either does not decode would load, then fail (and abort)
  // wherever it is used.
  if (X509_get0_pubkey(x509.get()) == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the certificate's public key cannot be read (a damaged certificate, or a key of an "
        "unknown algorithm)");
  }
  struct tm tm {};
  if (ASN1_TIME_to_tm(X509_get0_notBefore(x509.get()), &tm) != 1 ||
      ASN1_TIME_to_tm(X509_get0_notAfter(x509.get()), &tm) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the certificate's validity times cannot be read (a damaged certificate)");
  }
  return Certificate(std::move(x509));
}

StatusOr<Certificate> Certificate::FromFile(const std::string& path) {
  StatusOr<std::string> pem = ReadFile(path, kMaxCertificateFileBytes);
  if (!pem.ok()) return Annotate(pem.status(), "reading certificate");
  StatusOr<Certificate> cert = FromPem(*pem);
  if (!cert.ok()) return Annotate(cert.status(), absl::StrCat("certificate file ", path));
  return cert;
}

std::string Certificate::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  HANSA_CHECK(bio && PEM_write_bio_X509(bio.get(), x509_.get()) == 1);
  return BioContents(bio.get());
}

std::string Certificate::ToDer() const {
  unsigned char* der = nullptr;
  int len = i2d_X509(x509_.get(), &der);
  HANSA_CHECK(len > 0);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string Certificate::Sha256Fingerprint() const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HANSA_CHECK(X509_digest(x509_.get(), EVP_sha256(), md, &len) == 1 && len == 32);
  return ToHex(md, len);
}

SubjectName Certificate::Subject() const {
  return pki_internal::ReadSubjectName(X509_get_subject_name(x509_.get()));
}
SubjectName Certificate::Issuer() const {
  return pki_internal::ReadSubjectName(X509_get_issuer_name(x509_.get()));
}
std::string Certificate::OrganizationalUnit() const {
  return pki_internal::ReadOrganizationalUnit(X509_get_subject_name(x509_.get()));
}
absl::Time Certificate::NotBefore() const { return ToAbslTime(X509_get0_notBefore(x509_.get())); }
absl::Time Certificate::NotAfter() const { return ToAbslTime(X509_get0_notAfter(x509_.get())); }

std::string Certificate::SerialHex() const {
  return pki_internal::SerialToHex(X509_get0_serialNumber(x509_.get()));
}

std::vector<std::string> Certificate::SubjectAltNames() const {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x509_.get(), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = name->d.dNSName;
      out.push_back(absl::StrCat(
          "DNS:", std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                              ASN1_STRING_length(dns))));
    } else if (name->type == GEN_IPADD) {
      out.push_back(absl::StrCat("IP:", pki_internal::IpToString(name->d.iPAddress)));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

bool Certificate::IsCa() const { return (X509_get_extension_flags(x509_.get()) & EXFLAG_CA) != 0; }

StatusOr<PublicKey> Certificate::GetPublicKey() const {
  EVP_PKEY* key = X509_get_pubkey(x509_.get());  // a new reference
  HANSA_CHECK(key != nullptr);
  return PublicKey::Wrap(std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free));
}

std::string Certificate::PublicKeyPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  HANSA_CHECK(bio && PEM_write_bio_PUBKEY(bio.get(), X509_get0_pubkey(x509_.get())) == 1);
  return BioContents(bio.get());
}

Status Certificate::CheckPrivateKeyMatches(const PrivateKey& key) const {
  if (X509_check_private_key(x509_.get(), key.get()) == 1) return absl::OkStatus();
  ERR_clear_error();
  return absl::InvalidArgumentError(
      absl::StrCat("the private key does not belong to the certificate of '", Subject().common_name,
                   "'; use the key.pem from the same startup kit"));
}

std::string FormatCertificateTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

Status CheckCertificateTime(const Certificate& cert, absl::Time at) {
  if (at > cert.NotAfter()) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate of '", cert.Subject().common_name, "' expired at ",
                     FormatCertificateTime(cert.NotAfter()), " (now ", FormatCertificateTime(at),
                     "); ask the federation operator for a new certificate"));
  }
  if (at < cert.NotBefore()) {
    return absl::FailedPreconditionError(
        absl::StrCat("certificate of '", cert.Subject().common_name, "' is not valid until ",
                     FormatCertificateTime(cert.NotBefore()), " (now ", FormatCertificateTime(at),
                     " by this machine's clock, which may be behind: check it)"));
  }
  return absl::OkStatus();
}

Status VerifyCertificate(const Certificate& cert, const Certificate& ca, absl::Time at,
                         CertificateUsage usage) {
  const std::string who = cert.Subject().common_name;
  if (!ca.IsCa()) {
    return absl::InvalidArgumentError(absl::StrCat("the certificate given as federation CA ('",
                                                   ca.Subject().common_name,
                                                   "') is not a CA certificate; use ca.pem"));
  }
  if (cert.IsCa()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "certificate of '", who, "' is a CA certificate, not a participant certificate"));
  }
  X509StorePtr store(X509_STORE_new());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return pki_internal::OpenSslError("setting up certificate verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(at));
  X509_VERIFY_PARAM_set_depth(param, 0);  // participant certificates come straight from the CA
  if (usage != CertificateUsage::kAny) {
    int purpose =
        usage == CertificateUsage::kTlsServer ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT;
    X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  }
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  ERR_clear_error();
  if (ok == 1) return absl::OkStatus();

  const bool at_ca = depth > 0;
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      if (at_ca) {
        return absl::PermissionDeniedError(absl::StrCat("the federation CA certificate expired on ",
                                                        FormatCertificateTime(ca.NotAfter()),
                                                        "; the federation must be re-provisioned"));
      }
      return absl::PermissionDeniedError(absl::StrCat(
          "certificate of '", who, "' expired on ", FormatCertificateTime(cert.NotAfter()),
          "; ask the federation operator for a new certificate"));
    case X509_V_ERR_CERT_NOT_YET_VALID: {
      const Certificate& early = at_ca ? ca : cert;
      return absl::PermissionDeniedError(absl::StrCat(
          at_ca ? "the federation CA certificate" : absl::StrCat("certificate of '", who, "'"),
          " is not yet valid: valid from ", FormatCertificateTime(early.NotBefore()),
          " (check this machine's clock)"));
    }
    case X509_V_ERR_INVALID_PURPOSE:
      return absl::PermissionDeniedError(
          absl::StrCat("certificate of '", who, "' is not allowed for ", UsageName(usage)));
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_AKID_SKID_MISMATCH:
    case X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
      return NotSignedError(who, err);
    default:
      return absl::PermissionDeniedError(absl::StrCat(
          "certificate of '", who,
          "' failed verification against the federation CA: ", X509_verify_cert_error_string(err)));
  }
}

}  // namespace hansa
