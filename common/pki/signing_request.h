// PKCS#10 certificate signing requests: how a participant asks the federation CA for a
// certificate without its private key ever leaving its machine.
//
// A participant makes its key and a request signed with it (`hansa enroll`); the operator
// reads the request, checks its self-signature (proof that the sender holds the private key),
// its subject and its key fingerprint (confirmed with the participant by phone), and issues the
// certificate from it (`hansa ca sign`).
//
// A SigningRequest is immutable and copyable (copies share the OpenSSL object); any thread may
// read it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/status/status.h"

typedef struct X509_req_st X509_REQ;

namespace hansa {

class SigningRequest {
 public:
  // A request for `subject` signed with `key`; `hosts` (DNS names or IP literals) are asked for
  // as subjectAltNames (a coordinator's addresses; empty for a site). InvalidArgument on a bad
  // subject (empty CN, bad country, control characters) or a malformed host.
  static StatusOr<SigningRequest> Create(const PrivateKey& key, const SubjectName& subject,
                                         const std::vector<std::string>& hosts = {});
  // Parses the first PEM "CERTIFICATE REQUEST" in `pem` and verifies its self-signature.
  // InvalidArgument when there is none, it does not decode, or its key is neither Ed25519 nor
  // ECDSA P-256; PermissionDenied "the request's signature does not verify ..." when it was
  // changed after signing or signed with another key.
  static StatusOr<SigningRequest> FromPem(std::string_view pem);
  // Reads and parses a PEM file; errors name the file.
  static StatusOr<SigningRequest> FromFile(const std::string& path);

  std::string ToPem() const;
  SubjectName Subject() const { return subject_; }
  const PublicKey& public_key() const { return public_key_; }
  // The requested subjectAltNames, split by kind, in request order.
  const std::vector<std::string>& dns_names() const { return dns_names_; }
  const std::vector<std::string>& ip_addresses() const { return ip_addresses_; }
  // SHA-256 over the request's DER encoding, lowercase hex (64 characters).
  std::string Sha256Fingerprint() const;

 private:
  SigningRequest(std::shared_ptr<X509_REQ> req, PublicKey key)
      : req_(std::move(req)), public_key_(std::move(key)) {}
  std::shared_ptr<X509_REQ> req_;
  PublicKey public_key_;
  SubjectName subject_;
  std::vector<std::string> dns_names_;
  std::vector<std::string> ip_addresses_;
};

// SHA-256 over the key's SubjectPublicKeyInfo DER, lowercase hex: the same value for a request
// and every certificate issued from it (`openssl pkey -pubin -outform DER | sha256sum`). This
// is what participant and operator read to each other to confirm a request.
std::string PublicKeyFingerprint(const PublicKey& key);

// "ab12 cd34 ...": a 64-character fingerprint in groups of four, for reading aloud.
std::string GroupFingerprint(std::string_view hex);

}  // namespace hansa
