// A small federation for audit and report tests: a CA, a coordinator certificate (TLS server),
// site certificates (TLS client) and a CA nobody trusts. Built once per test binary.
#pragma once

#include <stdlib.h>

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "gtest/gtest.h"

namespace hansa::testing {

struct Identity {
  std::string key_pem;
  Certificate cert;
  // A fresh copy of the key (AuditLog::Open takes ownership of one).
  PrivateKey Key() const { return *PrivateKey::FromPem(key_pem); }
};

class TestFederation {
 public:
  static const TestFederation& Get() {
    static const TestFederation* federation = new TestFederation();
    return *federation;
  }

  const Certificate& ca() const { return ca_->certificate(); }
  const Certificate& foreign_ca() const { return foreign_ca_->certificate(); }
  const Identity& coordinator() const { return identities_.at("coordinator"); }
  // "berlin" (DE), "paris" (FR), "milan" (IT), "mallory" (DE), and "stranger" from foreign_ca.
  const Identity& site(const std::string& name) const { return identities_.at(name); }

  // `who` with a new certificate for the same key and subject, valid from a minute after its
  // current one, as `hansa ca renew` issues one; from the foreign CA when `foreign`.
  Identity Renewed(const Identity& who, bool foreign = false) const {
    return Reissue(foreign ? *foreign_ca_ : *ca_, who, who.Key(),
                   who.cert.NotBefore() + absl::Minutes(1));
  }
  // `who`'s subject and role with a new key.
  Identity Rekeyed(const Identity& who) const {
    return Reissue(*ca_, who, *PrivateKey::Generate(), who.cert.NotBefore() + absl::Minutes(1));
  }

 private:
  TestFederation() {
    ca_ = std::make_unique<CertificateAuthority>(MakeCa("test"));
    foreign_ca_ = std::make_unique<CertificateAuthority>(MakeCa("foreign"));
    identities_.emplace("coordinator",
                        MakeIdentity(*ca_, "coordinator", "Hansa Operators", "DE", true));
    identities_.emplace("berlin", MakeIdentity(*ca_, "berlin", "Charité Berlin", "DE", false));
    identities_.emplace("paris", MakeIdentity(*ca_, "paris", "AP-HP", "FR", false));
    identities_.emplace("milan", MakeIdentity(*ca_, "milan", "Policlinico", "IT", false));
    identities_.emplace("mallory", MakeIdentity(*ca_, "mallory", "Mallory GmbH", "DE", false));
    identities_.emplace("stranger", MakeIdentity(*foreign_ca_, "stranger", "", "DE", false));
  }

  static CertificateAuthority MakeCa(const std::string& federation) {
    CaOptions options;
    options.federation = federation;
    options.organization = "Hansa Operators";
    options.country = "DE";
    auto ca = CertificateAuthority::Create(options);
    if (!ca.ok()) {
      ADD_FAILURE() << ca.status();
      abort();
    }
    return *std::move(ca);
  }

  static Identity MakeIdentity(const CertificateAuthority& ca, const std::string& name,
                               const std::string& organization, const std::string& country,
                               bool server) {
    CertificateRequest request;
    request.subject = {name, organization, country};
    return Issue(ca, request, server, *PrivateKey::Generate());
  }

  static Identity Reissue(const CertificateAuthority& ca, const Identity& who, PrivateKey key,
                          absl::Time not_before) {
    CertificateRequest request;
    request.subject = who.cert.Subject();
    request.not_before = not_before;
    return Issue(ca, request, who.cert.Subject().common_name == "coordinator", std::move(key));
  }

  static Identity Issue(const CertificateAuthority& ca, CertificateRequest request, bool server,
                        PrivateKey key) {
    request.server_auth = server;
    request.client_auth = !server;
    if (server) request.dns_names = {"localhost"};
    auto cert = ca.Issue(request, key.GetPublicKey());
    if (!cert.ok()) {
      ADD_FAILURE() << cert.status();
      abort();
    }
    return Identity{*key.ToPem(), *cert};
  }

  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<CertificateAuthority> foreign_ca_;
  std::map<std::string, Identity> identities_;
};

inline std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = ::testing::TempDir() + "/" + prefix + "_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

}  // namespace hansa::testing
