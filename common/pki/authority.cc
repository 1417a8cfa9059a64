#include "common/pki/authority.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>

#include "common/crypto/random.h"
#include "common/pki/internal/openssl_util.h"
#include "common/pki/internal/x509_names.h"

namespace hansa {
namespace {

using pki_internal::Asn1IntegerPtr;
using pki_internal::BignumPtr;
using pki_internal::GeneralNamesPtr;
using pki_internal::OpenSslError;
using pki_internal::X509ExtensionPtr;
using pki_internal::X509Ptr;

constexpr size_t kMaxNameFieldBytes = 64;  // ub-common-name, ub-organization-name (RFC 5280)

Status ValidateSubject(const SubjectName& subject) {
  if (subject.common_name.empty() || subject.common_name.size() > kMaxNameFieldBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("common name '", subject.common_name, "' must have 1 to 64 characters"));
  }
  if (subject.organization.size() > kMaxNameFieldBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("organisation '", subject.organization, "' is longer than 64 characters"));
  }
  for (char c : subject.common_name + subject.organization) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          "names in certificates must not contain control characters");
    }
  }
  return ValidateCountryCode(subject.country);
}

Status SetSubject(X509* x509, const SubjectName& subject,
                  const std::string& organizational_unit = std::string()) {
  return pki_internal::AddSubjectName(X509_get_subject_name(x509), subject, organizational_unit);
}

Status SetRandomSerial(X509* x509) {
  unsigned char bytes[16];
  RETURN_IF_ERROR(RandBytes(bytes, sizeof(bytes)));
  bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x01);  // positive, 16 bytes long
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  Asn1IntegerPtr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
  if (!serial || X509_set_serialNumber(x509, serial.get()) != 1) {
    return OpenSslError("setting the serial number");
  }
  return absl::OkStatus();
}

Status SetValidity(X509* x509, absl::Time not_before, absl::Time not_after) {
  if (not_before >= not_after) {
    return absl::InvalidArgumentError(
        absl::StrCat("validity starts (", FormatCertificateTime(not_before), ") after it ends (",
                     FormatCertificateTime(not_after), ")"));
  }
  if (ASN1_TIME_set(X509_getm_notBefore(x509), absl::ToTimeT(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x509), absl::ToTimeT(not_after)) == nullptr) {
    return OpenSslError("setting the validity period");
  }
  return absl::OkStatus();
}

// Adds one extension written in OpenSSL's configuration syntax, e.g. "critical,CA:TRUE".
// Only fixed strings from this file reach here; names from users go through AddAltNames.
Status AddExtension(X509* x509, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(x509, ext.get(), -1) != 1) {
    return OpenSslError(absl::StrCat("adding extension ", OBJ_nid2sn(nid), " = ", value));
  }
  return absl::OkStatus();
}

Status AddAltNames(X509* x509, const CertificateRequest& request) {
  if (request.dns_names.empty() && request.ip_addresses.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(GeneralNamesPtr names,
                   pki_internal::MakeAltNames(request.dns_names, request.ip_addresses));
  if (X509_add1_ext_i2d(x509, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return OpenSslError("adding subjectAltName");
  }
  return absl::OkStatus();
}

Status SignWith(X509* x509, const PrivateKey& key) {
  const EVP_MD* md = key.type() == KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (X509_sign(x509, key.get(), md) <= 0) return OpenSslError("signing the certificate");
  return absl::OkStatus();
}

}  // namespace

Status ValidateSubjectName(const SubjectName& subject) { return ValidateSubject(subject); }

Status ValidateDnsName(std::string_view name) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(name), "' is not a valid host name: ", why));
  };
  if (name.empty() || name.size() > 253) return bad("it must have 1 to 253 characters");
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63) return bad("each label must have 1 to 63 characters");
    if (label.front() == '-' || label.back() == '-') return bad("a label starts or ends with '-'");
    for (char c : label) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return bad("only letters, digits, '-' and '.' are allowed");
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

bool IsIpAddress(std::string_view host) {
  std::string s(host);
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

StatusOr<CertificateAuthority> CertificateAuthority::Create(const CaOptions& options) {
  if (options.federation.empty()) {
    return absl::InvalidArgumentError("the federation needs a name for its CA");
  }
  SubjectName subject{absl::StrCat(options.federation, " CA"), options.organization,
                      options.country};
  RETURN_IF_ERROR(Annotate(ValidateSubject(subject), "federation CA"));
  ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::Generate(options.key_type));

  X509Ptr x509(X509_new());
  if (!x509 || X509_set_version(x509.get(), X509_VERSION_3) != 1) {
    return OpenSslError("creating the CA certificate");
  }
  RETURN_IF_ERROR(SetRandomSerial(x509.get()));
  RETURN_IF_ERROR(SetSubject(x509.get(), subject));
  if (X509_set_issuer_name(x509.get(), X509_get_subject_name(x509.get())) != 1 ||
      X509_set_pubkey(x509.get(), key.get()) != 1) {
    return OpenSslError("setting the CA issuer and key");
  }
  RETURN_IF_ERROR(
      Annotate(SetValidity(x509.get(), options.not_before, options.not_after), "federation CA"));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x509.get(), x509.get(), nullptr, nullptr, 0);
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE"));
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(SignWith(x509.get(), key));
  return CertificateAuthority(Certificate(std::shared_ptr<X509>(x509.release(), X509_free)),
                              std::move(key));
}

StatusOr<CertificateAuthority> CertificateAuthority::Load(const std::string& certificate_path,
                                                          const std::string& private_key_path) {
  ASSIGN_OR_RETURN(Certificate cert, Certificate::FromFile(certificate_path));
  if (!cert.IsCa()) {
    return absl::InvalidArgumentError(
        absl::StrCat(certificate_path, " is not a CA certificate (basicConstraints CA:FALSE)"));
  }
  ASSIGN_OR_RETURN(PrivateKey key, ReadPrivateKeyFile(private_key_path));
  RETURN_IF_ERROR(Annotate(cert.CheckPrivateKeyMatches(key), private_key_path));
  return CertificateAuthority(std::move(cert), std::move(key));
}

StatusOr<Certificate> CertificateAuthority::Issue(const CertificateRequest& request,
                                                  const PublicKey& subject_key) const {
  const std::string& who = request.subject.common_name;
  RETURN_IF_ERROR(ValidateSubject(request.subject));
  if (request.organizational_unit.size() > kMaxNameFieldBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the OU of '", who, "' is longer than ", kMaxNameFieldBytes, " characters"));
  }
  if (!request.server_auth && !request.client_auth) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate of '", who, "' needs server_auth, client_auth or both"));
  }
  if (request.not_after > certificate_.NotAfter()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "certificate of '", who, "' would be valid until ",
        FormatCertificateTime(request.not_after), ", after the federation CA expires (",
        FormatCertificateTime(certificate_.NotAfter()), "); ask for a shorter validity"));
  }

  X509Ptr x509(X509_new());
  if (!x509 || X509_set_version(x509.get(), X509_VERSION_3) != 1) {
    return OpenSslError("creating a certificate");
  }
  RETURN_IF_ERROR(SetRandomSerial(x509.get()));
  RETURN_IF_ERROR(SetSubject(x509.get(), request.subject, request.organizational_unit));
  if (X509_set_issuer_name(x509.get(), X509_get_subject_name(certificate_.get())) != 1 ||
      X509_set_pubkey(x509.get(), subject_key.get()) != 1) {
    return OpenSslError("setting issuer and key");
  }
  RETURN_IF_ERROR(Annotate(SetValidity(x509.get(), request.not_before, request.not_after),
                           absl::StrCat("certificate of '", who, "'")));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, certificate_.get(), x509.get(), nullptr, nullptr, 0);
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_key_usage, "critical,digitalSignature"));
  const char* eku = request.server_auth && request.client_auth ? "serverAuth,clientAuth"
                    : request.server_auth                      ? "serverAuth"
                                                               : "clientAuth";
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_ext_key_usage, eku));
  RETURN_IF_ERROR(
      Annotate(AddAltNames(x509.get(), request), absl::StrCat("certificate of '", who, "'")));
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExtension(x509.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  RETURN_IF_ERROR(SignWith(x509.get(), key_));
  return Certificate(std::shared_ptr<X509>(x509.release(), X509_free));
}

}  // namespace hansa
