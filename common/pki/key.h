// Asymmetric keys of federation participants: generation, PEM files, signatures.
//
// A participant has one key pair. Its certificate binds the public half to the participant's
// name and country; the private half authenticates TLS connections and signs audit and egress
// records. Ed25519 is the default; ECDSA P-256 exists for peers whose TLS stack lacks Ed25519.
// Key objects are immutable after construction and may be shared read-only between threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace hansa {

enum class KeyType { kEd25519, kEcdsaP256 };

// "ed25519" or "ecdsa-p256".
std::string KeyTypeName(KeyType type);
// Parses KeyTypeName's output; InvalidArgument otherwise.
StatusOr<KeyType> ParseKeyType(std::string_view name);

// The public half of a key pair. Copyable (shares the immutable OpenSSL object).
class PublicKey {
 public:
  // Parses a PEM "PUBLIC KEY" (SubjectPublicKeyInfo); InvalidArgument on anything else.
  static StatusOr<PublicKey> FromPem(std::string_view pem);

  KeyType type() const { return type_; }
  std::string ToPem() const;
  // OK when `signature` is this key's signature over `message` (as made by PrivateKey::Sign);
  // InvalidArgument "signature does not verify" otherwise.
  Status Verify(std::string_view message, std::string_view signature) const;

  // The OpenSSL key, owned by this object; for modules that hand keys to OpenSSL themselves.
  EVP_PKEY* get() const { return key_.get(); }

 private:
  friend class PrivateKey;
  friend class Certificate;
  PublicKey(std::shared_ptr<EVP_PKEY> key, KeyType type) : key_(std::move(key)), type_(type) {}
  // InvalidArgument for key types other than Ed25519 and ECDSA P-256.
  static StatusOr<PublicKey> Wrap(std::shared_ptr<EVP_PKEY> key);
  std::shared_ptr<EVP_PKEY> key_;
  KeyType type_;
};

// A private key. Move-only; OpenSSL frees (and wipes) the key material when it goes.
class PrivateKey {
 public:
  static StatusOr<PrivateKey> Generate(KeyType type = KeyType::kEd25519);
  // Parses an unencrypted PEM private key (PKCS#8 "PRIVATE KEY", as ToPem writes it) of one
  // of the supported types. InvalidArgument also when the public key the file carries is not
  // the private key's own (a damaged file).
  static StatusOr<PrivateKey> FromPem(std::string_view pem);

  PrivateKey(PrivateKey&&) noexcept = default;
  PrivateKey& operator=(PrivateKey&&) noexcept = default;
  ~PrivateKey();

  KeyType type() const { return type_; }
  // PKCS#8 PEM. The caller owns a secret: wipe it (OPENSSL_cleanse) when done with it.
  StatusOr<std::string> ToPem() const;
  PublicKey GetPublicKey() const;
  // Ed25519 (RFC 8032, pure) or ECDSA with SHA-256 (DER signature) over `message`.
  StatusOr<std::string> Sign(std::string_view message) const;

  EVP_PKEY* get() const { return key_.get(); }

 private:
  PrivateKey(std::shared_ptr<EVP_PKEY> key, KeyType type) : key_(std::move(key)), type_(type) {}
  std::shared_ptr<EVP_PKEY> key_;
  KeyType type_;
};

// Writes the key as PEM with file mode 0600 (atomically: temp file, fsync, rename).
Status WritePrivateKeyFile(const std::string& path, const PrivateKey& key);
// Reads a key written by WritePrivateKeyFile; errors name the file.
StatusOr<PrivateKey> ReadPrivateKeyFile(const std::string& path);

}  // namespace hansa
