#include "common/pki/key.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include "common/fileio/fileio.h"
#include "common/pki/internal/openssl_util.h"
#include "common/status/check.h"

namespace hansa {
namespace {

using pki_internal::BioContents;
using pki_internal::BioPtr;
using pki_internal::EvpMdCtxPtr;
using pki_internal::EvpPkeyCtxPtr;
using pki_internal::MemoryBio;
using pki_internal::OpenSslError;

constexpr size_t kMaxKeyFileBytes = 64 * 1024;

std::shared_ptr<EVP_PKEY> Share(EVP_PKEY* key) { return {key, EVP_PKEY_free}; }

// The KeyType of an OpenSSL key, or InvalidArgument for types Hansa does not use.
StatusOr<KeyType> TypeOf(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "ED25519")) return KeyType::kEd25519;
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof(group), &len) == 1 &&
        std::string(group, len) == "prime256v1") {
      return KeyType::kEcdsaP256;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("EC key on curve '", std::string(group, len),
                     "' is not supported; use Ed25519 or ECDSA P-256"));
  }
  return absl::InvalidArgumentError(absl::StrCat("key type '", EVP_PKEY_get0_type_name(key),
                                                 "' is not supported; use Ed25519 or ECDSA P-256"));
}

// The digest passed to EVP_DigestSign/VerifyInit: none for Ed25519 (it hashes internally).
const EVP_MD* DigestFor(KeyType type) { return type == KeyType::kEd25519 ? nullptr : EVP_sha256(); }

}  // namespace

std::string KeyTypeName(KeyType type) {
  return type == KeyType::kEd25519 ? "ed25519" : "ecdsa-p256";
}

StatusOr<KeyType> ParseKeyType(std::string_view name) {
  if (name == "ed25519") return KeyType::kEd25519;
  if (name == "ecdsa-p256") return KeyType::kEcdsaP256;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown key type '", std::string(name), "'; use ed25519 or ecdsa-p256"));
}

StatusOr<PublicKey> PublicKey::FromPem(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (raw == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')");
  }
  return Wrap(Share(raw));
}

StatusOr<PublicKey> PublicKey::Wrap(std::shared_ptr<EVP_PKEY> key) {
  ASSIGN_OR_RETURN(KeyType type, TypeOf(key.get()));
  return PublicKey(std::move(key), type);
}

std::string PublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  HANSA_CHECK(bio && PEM_write_bio_PUBKEY(bio.get(), key_.get()) == 1);
  return BioContents(bio.get());
}

Status PublicKey::Verify(std::string_view message, std::string_view signature) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, DigestFor(type_), nullptr, key_.get()) != 1) {
    return OpenSslError("starting signature verification");
  }
  int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size());
  ERR_clear_error();
  if (ok != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(KeyTypeName(type_), " signature does not verify against this public key"));
  }
  return absl::OkStatus();
}

PrivateKey::~PrivateKey() = default;

StatusOr<PrivateKey> PrivateKey::Generate(KeyType type) {
  EVP_PKEY* raw = type == KeyType::kEd25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                            : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (raw == nullptr) return OpenSslError(absl::StrCat("generating a ", KeyTypeName(type), " key"));
  return PrivateKey(Share(raw), type);
}

StatusOr<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  // An empty passphrase callback: encrypted keys fail instead of prompting on the terminal.
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr);
  if (raw == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "not an unencrypted PEM private key (expected '-----BEGIN PRIVATE KEY-----')");
  }
  std::shared_ptr<EVP_PKEY> key = Share(raw);
  ASSIGN_OR_RETURN(KeyType type, TypeOf(key.get()));
  PrivateKey loaded(std::move(key), type);
  // PKCS#8 may carry the public key beside the private one, and OpenSSL takes both as written:
  // a file whose halves disagree (one flipped bit) would sign what no certificate verifies.
  constexpr std::string_view kProbe = "hansa private key self-check";
  ASSIGN_OR_RETURN(std::string signature, loaded.Sign(kProbe));
  if (!loaded.GetPublicKey().Verify(kProbe, signature).ok()) {
    return absl::InvalidArgumentError(
        "the PEM private key's public half does not belong to its private half (a damaged key "
        "file); restore the file or make a new key and certificate");
  }
  return loaded;
}

StatusOr<std::string> PrivateKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("encoding a private key as PEM");
  }
  return BioContents(bio.get());
}

PublicKey PrivateKey::GetPublicKey() const {
  // Round trip through SubjectPublicKeyInfo so the PublicKey holds no private material.
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key_.get(), &der);
  HANSA_CHECK(len > 0);
  const unsigned char* p = der;
  EVP_PKEY* pub = d2i_PUBKEY(nullptr, &p, len);
  OPENSSL_free(der);
  HANSA_CHECK(pub != nullptr);
  return PublicKey(Share(pub), type_);
}

StatusOr<std::string> PrivateKey::Sign(std::string_view message) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, DigestFor(type_), nullptr, key_.get()) != 1) {
    return OpenSslError("starting a signature");
  }
  const auto* msg = reinterpret_cast<const unsigned char*>(message.data());
  size_t size = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &size, msg, message.size()) != 1) {
    return OpenSslError("sizing a signature");
  }
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size, msg,
                     message.size()) != 1) {
    return OpenSslError("signing");
  }
  signature.resize(size);
  return signature;
}

Status WritePrivateKeyFile(const std::string& path, const PrivateKey& key) {
  ASSIGN_OR_RETURN(std::string pem, key.ToPem());
  Status st = WriteFileAtomically(path, pem, 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  return Annotate(st, "writing private key");
}

StatusOr<PrivateKey> ReadPrivateKeyFile(const std::string& path) {
  StatusOr<std::string> pem = ReadFile(path, kMaxKeyFileBytes);
  if (!pem.ok()) return Annotate(pem.status(), "reading private key");
  StatusOr<PrivateKey> key = PrivateKey::FromPem(*pem);
  OPENSSL_cleanse(pem->data(), pem->size());
  if (!key.ok()) return Annotate(key.status(), absl::StrCat("private key file ", path));
  return key;
}

}  // namespace hansa
