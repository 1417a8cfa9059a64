#include "common/pki/signing_request.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/pki/authority.h"
#include "common/pki/internal/openssl_util.h"
#include "common/pki/internal/x509_names.h"

namespace hansa {
namespace {

using pki_internal::BioContents;
using pki_internal::BioPtr;
using pki_internal::GeneralNamesPtr;
using pki_internal::MemoryBio;
using pki_internal::OpenSslError;

using X509ReqPtr = std::unique_ptr<X509_REQ, pki_internal::Deleter<X509_REQ, X509_REQ_free>>;
using ExtensionsPtr =
    std::unique_ptr<STACK_OF(X509_EXTENSION), void (*)(STACK_OF(X509_EXTENSION)*)>;

constexpr size_t kMaxRequestFileBytes = 1 << 20;

void FreeExtensions(STACK_OF(X509_EXTENSION) * exts) {
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

// subjectAltName as an extension request (PKCS#9 extensionRequest attribute).
Status AddRequestedNames(X509_REQ* req, const std::vector<std::string>& hosts) {
  if (hosts.empty()) return absl::OkStatus();
  std::vector<std::string> dns_names, ip_addresses;
  for (const std::string& host : hosts) {
    (IsIpAddress(host) ? ip_addresses : dns_names).push_back(host);
  }
  ASSIGN_OR_RETURN(GeneralNamesPtr names, pki_internal::MakeAltNames(dns_names, ip_addresses));
  ExtensionsPtr exts(sk_X509_EXTENSION_new_null(), FreeExtensions);
  X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get());
  if (!exts || ext == nullptr || sk_X509_EXTENSION_push(exts.get(), ext) == 0) {
    X509_EXTENSION_free(ext);
    return OpenSslError("encoding subjectAltName");
  }
  if (X509_REQ_add_extensions(req, exts.get()) != 1) {
    return OpenSslError("adding the extension request");
  }
  return absl::OkStatus();
}

// Reads the requested subjectAltNames; other requested extensions are ignored (the CA decides
// every other extension itself).
Status ReadRequestedNames(X509_REQ* req, std::vector<std::string>* dns,
                          std::vector<std::string>* ips) {
  ExtensionsPtr exts(X509_REQ_get_extensions(req), FreeExtensions);
  ERR_clear_error();  // no extension request at all is no error
  if (!exts) return absl::OkStatus();
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509V3_get_d2i(exts.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (!names) {
    ERR_clear_error();
    return absl::OkStatus();
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* s = name->d.dNSName;
      dns->emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (name->type == GEN_IPADD) {
      std::string ip = pki_internal::IpToString(name->d.iPAddress);
      if (ip.empty()) return absl::InvalidArgumentError("the request names a malformed IP");
      ips->push_back(std::move(ip));
    } else {
      return absl::InvalidArgumentError(
          "the request asks for a subjectAltName that is neither a DNS name nor an IP address");
    }
  }
  return absl::OkStatus();
}

std::string ToDer(X509_REQ* req) {
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req, &der);
  if (len <= 0) return std::string();
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

StatusOr<SigningRequest> SigningRequest::Create(const PrivateKey& key, const SubjectName& subject,
                                                const std::vector<std::string>& hosts) {
  RETURN_IF_ERROR(ValidateSubjectName(subject));
  X509ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1) return OpenSslError("creating a request");
  RETURN_IF_ERROR(pki_internal::AddSubjectName(X509_REQ_get_subject_name(req.get()), subject));
  if (X509_REQ_set_pubkey(req.get(), key.get()) != 1) return OpenSslError("setting the key");
  RETURN_IF_ERROR(AddRequestedNames(req.get(), hosts));
  const EVP_MD* md = key.type() == KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (X509_REQ_sign(req.get(), key.get(), md) <= 0) return OpenSslError("signing the request");
  // One parser for what is written and what is read.
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return OpenSslError("encoding the request");
  }
  return FromPem(BioContents(bio.get()));
}

StatusOr<SigningRequest> SigningRequest::FromPem(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  X509_REQ* raw = PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr);
  if (raw == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "no PEM certificate signing request found (expected '-----BEGIN CERTIFICATE "
        "REQUEST-----', as hansa enroll writes it)");
  }
  std::shared_ptr<X509_REQ> req(raw, X509_REQ_free);
  EVP_PKEY* pkey = X509_REQ_get0_pubkey(req.get());
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the request's public key cannot be read");
  }
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || PEM_write_bio_PUBKEY(key_bio.get(), pkey) != 1) {
    return OpenSslError("encoding the request's public key");
  }
  StatusOr<PublicKey> key = PublicKey::FromPem(BioContents(key_bio.get()));
  if (!key.ok()) return Annotate(key.status(), "the request's public key");
  if (X509_REQ_verify(req.get(), pkey) != 1) {
    ERR_clear_error();
    return absl::PermissionDeniedError(
        "the request's signature does not verify: it was changed after it was signed, or was "
        "not signed by the key it carries; ask the participant for a new request");
  }
  SigningRequest out(std::move(req), *std::move(key));
  out.subject_ = pki_internal::ReadSubjectName(X509_REQ_get_subject_name(out.req_.get()));
  RETURN_IF_ERROR(ReadRequestedNames(out.req_.get(), &out.dns_names_, &out.ip_addresses_));
  return out;
}

StatusOr<SigningRequest> SigningRequest::FromFile(const std::string& path) {
  StatusOr<std::string> pem = ReadFile(path, kMaxRequestFileBytes);
  if (!pem.ok()) return Annotate(pem.status(), "reading the signing request");
  StatusOr<SigningRequest> request = FromPem(*pem);
  if (!request.ok()) return Annotate(request.status(), absl::StrCat("signing request ", path));
  return request;
}

std::string SigningRequest::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req_.get()) != 1) {
    ERR_clear_error();
    return std::string();
  }
  return BioContents(bio.get());
}

std::string SigningRequest::Sha256Fingerprint() const { return ToHex(Sha256(ToDer(req_.get()))); }

std::string PublicKeyFingerprint(const PublicKey& key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key.get(), &der);
  if (len <= 0) {
    ERR_clear_error();
    return std::string();
  }
  std::string out = ToHex(Sha256(std::string_view(reinterpret_cast<char*>(der), len)));
  OPENSSL_free(der);
  return out;
}

std::string GroupFingerprint(std::string_view hex) {
  std::string out;
  out.reserve(hex.size() + hex.size() / 4);
  for (size_t i = 0; i < hex.size(); ++i) {
    if (i > 0 && i % 4 == 0) out.push_back(' ');
    out.push_back(hex[i]);
  }
  return out;
}

}  // namespace hansa
