// The operator's reply as `hansa enroll accept` installs it (AcceptReply, common/pki/enrollment):
// the files of a reply folder, fuzzed, against a fixed pending enrollment (a key and its
// request made for a CA fixed below, made with `hansa ca init` and `hansa enroll`), so that the
// real replies in the corpus pass every check and mutations of them reach each one.
//
// Input: byte 0 picks the pending enrollment and the case, byte 1 which reply files exist, and
// the rest is the files' contents in the order of kReplyFiles, then an existing config, each
// ended by kSeparator (a missing last separator ends the last file at the input's end).
//   byte 0, bit 0      the pending enrollment: site-a (Ed25519) or the coordinator (P-256);
//   bits 1-2           0, 3: the files as they come; 1: cert.pem (PEM, or else DER) re-signed by
//                      the fixed CA for the pending key, so that mutated names, dates and
//                      extensions get past the signature and key checks; 2: ca.pem re-signed as
//                      a self-signed CA with the fixed CA's key too, and cert.pem then signed by
//                      it;
//   bits 3-4           the enrollment folder holds already: 0, 3: no ca.pem; 1: the fixed CA's;
//                      2: another federation's (kFederationCa: a reply must then be refused);
//   bits 5-6           it holds a config already: 0: none; 1: the one an earlier accept wrote;
//                      2, 3: the input's sixth part as site.toml / coordinator.toml;
//   bit 7              --coordinator-address given.
// What must hold: a refused reply leaves the enrollment folder as it was, byte for byte; an
// accepted one installed a certificate that holds the pending key and chains to the installed
// CA (the one installed before, when there was one) for the usage of its role, a coordinator's
// revocation list verified by that CA when the reply had one, and a config (its own, or the
// earlier accept's updated) that the reader loads, with the pin (64 lowercase hex digits) and the
// coordinator address in it.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/config/config.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/pki/enrollment.h"
#include "common/pki/key.h"
#include "common/pki/revocation.h"
#include "common/pki/signing_request.h"
#include "fuzz/federation_ca.h"
#include "fuzz/scratch_folder.h"

namespace {

using hansa::fuzz::ReadBytes;
using hansa::fuzz::WriteBytes;

namespace fs = std::filesystem;

// The CA of `hansa ca init --federation reply-fuzz --country DE --org "Reply Fuzz"` (Ed25519,
// valid 2026-12-05 to 2036-12-04) and the keys `hansa enroll` made for the pending enrollments:
// test material of this target only, which the seed replies were signed for.
constexpr char kCaCertificate[] = R"(-----BEGIN CERTIFICATE-----
MIIBdDCCASagAwIBAgIQdRJ3aP+a01/F92eD9LpcmzAFBgMrZXAwOjELMAkGA1UE
BhMCREUxEzARBgNVBAoMClJlcGx5IEZ1enoxFjAUBgNVBAMMDXJlcGx5LWZ1enog
Q0EwHhcNMjYxMjA1MTg1MDE1WhcNMzYxMjA0MTk1MDE1WjA6MQswCQYDVQQGEwJE
RTETMBEGA1UECgwKUmVwbHkgRnV6ejEWMBQGA1UEAwwNcmVwbHktZnV6eiBDQTAq
MAUGAytlcAMhAPCThm3pf0Aso9lE9Fwd+LIIhlDzjh1rhO46VgWwqbl4o0IwQDAP
BgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQU4HbIqBp3
91NsopBlo7CF0ibK3JgwBQYDK2VwA0EAP2xp/oqCplpxpVVfCY8Nv81IoGv6nP4F
0qWTX7sNGLesfVXUWFY7li5sq49II1EmkevOJR+LL+wghdl7MJI5AQ==
-----END CERTIFICATE-----
)";
constexpr char kCaKey[] = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIxVXQi2p1M6ELKuZQL8X2RS6K3Z1gchbQ719wVYeMr8
-----END PRIVATE KEY-----
)";
constexpr char kSiteKey[] = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMwm/e9R7/p9XwbvHguBg4bqH6JKqSrLTeH0QCHAxAna
-----END PRIVATE KEY-----
)";
constexpr char kCoordinatorKey[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgh4nQWnpVQemTcDpn
qloYGxXtyLw6jVsSAtzyY/B3TnWhRANCAAQucfPWAsSrrqVaA7EC8OCDPbCZHMfa
iXbqzDcYZwcP71SnBWvZj2QNoZ5wJwsr9HmMurvhR8AutV5/lpLEQZs+
-----END PRIVATE KEY-----
)";

constexpr std::string_view kSeparator = "\n%%\n";
constexpr const char* kReplyFiles[] = {"cert.pem", "ca.pem", "coordinator.sha256",
                                       "coordinator.address", "crl.pem"};
constexpr char kAddressOverride[] = "override.example:443";

struct Pending {
  hansa::PrivateKey key;
  std::string request_pem;
  const char* config_name;  // site.toml or coordinator.toml
};

struct Fixture {
  hansa::CertificateAuthority ca;
  Pending site;
  Pending coordinator;
  std::string enrollment_dir;
  std::string reply_dir;
};

template <typename T>
T OrAbort(absl::StatusOr<T> value) {
  if (!value.ok()) abort();
  return *std::move(value);
}

Pending MakePending(const char* key_pem, const char* name, std::vector<std::string> hosts,
                    const char* config_name) {
  hansa::PrivateKey key = OrAbort(hansa::PrivateKey::FromPem(key_pem));
  hansa::SubjectName subject;
  subject.common_name = name;
  subject.organization = name;
  subject.country = "DE";
  hansa::SigningRequest request = OrAbort(hansa::SigningRequest::Create(key, subject, hosts));
  return Pending{std::move(key), request.ToPem(), config_name};
}

const Fixture& Fix() {
  static const Fixture* fixture = [] {
    const std::string& scratch = hansa::fuzz::ScratchFolder("hansa-enrollment-reply-fuzz");
    std::ofstream(scratch + "/ca.pem") << kCaCertificate;
    std::ofstream(scratch + "/ca-key.pem") << kCaKey;
    return new Fixture{
        OrAbort(hansa::CertificateAuthority::Load(scratch + "/ca.pem", scratch + "/ca-key.pem")),
        MakePending(kSiteKey, "site-a", {}, "site.toml"),
        MakePending(kCoordinatorKey, "coord", {"coord.example", "10.0.0.1"}, "coordinator.toml"),
        scratch + "/enrollment", scratch + "/reply"};
  }();
  return *fixture;
}

// Every file of `dir` with its contents: what a refused reply must leave as it was.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    files[entry.path().string()] = entry.is_regular_file() ? ReadBytes(entry.path()) : "<dir>";
  }
  return files;
}

void Recreate(const std::string& dir) {
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  fs::create_directories(dir);
}

std::string PemOf(X509* x509) {
  std::string pem;
  BIO* out = BIO_new(BIO_s_mem());
  if (out != nullptr && PEM_write_bio_X509(out, x509) == 1) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(out, &data);
    if (size > 0) pem.assign(data, static_cast<size_t>(size));
  }
  BIO_free(out);
  return pem;
}

X509* ParseX509(std::string_view bytes) {
  if (bytes.substr(0, 5) == "-----") {
    BIO* in = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
    X509* x509 = in == nullptr ? nullptr : PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
    BIO_free(in);
    return x509;
  }
  const auto* der = reinterpret_cast<const unsigned char*>(bytes.data());
  return d2i_X509(nullptr, &der, static_cast<long>(bytes.size()));
}

// The certificate in `bytes` with `subject_key` as its key, `issuer` as its issuer name (its own
// subject when null), signed with `signer`; "" when OpenSSL cannot read or sign it.
std::string Resign(std::string_view bytes, EVP_PKEY* subject_key, X509_NAME* issuer,
                   const hansa::PrivateKey& signer) {
  X509* x509 = ParseX509(bytes);
  std::string pem;
  if (x509 != nullptr && X509_set_pubkey(x509, subject_key) == 1 &&
      X509_set_issuer_name(x509, issuer != nullptr ? issuer : X509_get_subject_name(x509)) == 1 &&
      X509_sign(x509, signer.get(), nullptr) > 0) {
    pem = PemOf(x509);
  }
  X509_free(x509);
  ERR_clear_error();
  return pem;
}

// As Certificate::Sha256Fingerprint writes it, which is what the client compares the pin with.
bool IsFingerprint(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The first line of a reply file without surrounding blanks, as the reply means it.
std::string FirstLine(std::string_view bytes) {
  const std::string_view line = bytes.substr(0, bytes.find('\n'));
  return std::string(absl::StripAsciiWhitespace(absl::string_view(line.data(), line.size())));
}

// What must hold of the folder after `accepted` was returned for it.
void CheckAccepted(const hansa::Accepted& accepted, const Pending& pending,
                   const std::map<std::string, std::string>& before,
                   const std::vector<std::string_view>& parts, const std::vector<bool>& present,
                   int config_case, const std::string& override_address) {
  const std::string& dir = Fix().enrollment_dir;
  auto cert = hansa::Certificate::FromFile(dir + "/cert.pem");
  auto ca = hansa::Certificate::FromFile(dir + "/ca.pem");
  if (!cert.ok() || !ca.ok() || !ca->IsCa()) abort();
  if (cert->Sha256Fingerprint() != accepted.certificate.Sha256Fingerprint()) abort();
  if (!cert->CheckPrivateKeyMatches(pending.key).ok()) abort();
  const auto usage = accepted.role == hansa::ParticipantRole::kSite
                         ? hansa::CertificateUsage::kTlsClient
                         : hansa::CertificateUsage::kTlsServer;
  if (!hansa::VerifyCertificate(*cert, *ca, absl::Now(), usage).ok()) abort();
  // A CA installed before stays the one installed: no reply switches federations.
  if (auto old = before.find(dir + "/ca.pem"); old != before.end() && old->second != ca->ToPem()) {
    abort();
  }
  const bool coordinator = accepted.role == hansa::ParticipantRole::kCoordinator;
  const bool crl_installed = fs::exists(dir + "/crl.pem");
  if (crl_installed != (coordinator && present[4])) abort();
  if (crl_installed && !hansa::RevocationList::FromFile(dir + "/crl.pem", *ca).ok()) abort();

  const std::string address = !override_address.empty() ? override_address
                              : present[3]              ? FirstLine(parts[3])
                                                        : std::string();
  if (!coordinator) {
    if (!IsFingerprint(accepted.coordinator_fingerprint) || address.empty()) abort();
  }
  if (!accepted.config_created && config_case >= 2) return;  // the input's own config, updated
  auto config = hansa::ConfigReader::Load(accepted.config_path);
  if (!config.ok()) abort();
  if (coordinator) {
    if (accepted.config_created &&
        config->String("coordinator.listen", "") != (address.empty() ? "0.0.0.0:50051" : address)) {
      abort();
    }
    return;
  }
  if (config->String("site.coordinator", "") != address ||
      config->String("policy.coordinator_fingerprint", "") != accepted.coordinator_fingerprint) {
    abort();
  }
}

// A config the earlier accept of a reply wrote: another coordinator address and pin.
std::string EarlierConfig(const Pending& pending) {
  if (pending.config_name == std::string("coordinator.toml")) {
    return "[federation]\nname = \"reply-fuzz\"\n\n[coordinator]\nlisten = \"0.0.0.0:50051\"\n";
  }
  return "[site]\nname = \"site-a\"\ncoordinator = \"old.example:50051\"\n\n[policy]\n"
         "coordinator_fingerprint = \"" +
         std::string(64, '0') + "\"\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const Fixture& fix = Fix();
  const unsigned options = data[0];
  const unsigned mask = data[1];
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  const Pending& pending = (options & 1) != 0 ? fix.coordinator : fix.site;
  const unsigned mode = (options >> 1) & 3;
  const unsigned installed_ca = (options >> 3) & 3;
  const int config_case = static_cast<int>((options >> 5) & 3);
  const std::string override_address = (options & 0x80) != 0 ? kAddressOverride : "";

  // The reply's files, and the sixth part: a config the folder holds already.
  std::vector<std::string_view> parts;
  size_t at = 0;
  while (parts.size() < 6) {
    const size_t end = rest.find(kSeparator, at);
    parts.push_back(rest.substr(at, end == std::string_view::npos ? end : end - at));
    if (end == std::string_view::npos) break;
    at = end + kSeparator.size();
  }
  parts.resize(6);
  std::string cert_pem, ca_pem;
  if (mode == 2) {
    ca_pem = Resign(parts[1], fix.ca.private_key().get(), nullptr, fix.ca.private_key());
    if (ca_pem.empty()) return 0;
    parts[1] = ca_pem;
  }
  if (mode == 1 || mode == 2) {
    X509* issuer = mode == 2 ? ParseX509(ca_pem) : nullptr;
    cert_pem = Resign(parts[0], pending.key.get(),
                      issuer != nullptr ? X509_get_subject_name(issuer)
                                        : X509_get_subject_name(fix.ca.certificate().get()),
                      fix.ca.private_key());
    X509_free(issuer);
    if (cert_pem.empty()) return 0;
    parts[0] = cert_pem;
  }

  const std::string& dir = fix.enrollment_dir;
  const std::string& reply = fix.reply_dir;
  Recreate(dir);
  Recreate(reply);
  if (!hansa::WritePrivateKeyFile(dir + "/key.pem", pending.key).ok()) abort();
  WriteBytes(dir + "/request.csr", pending.request_pem);
  if (installed_ca == 1) WriteBytes(dir + "/ca.pem", kCaCertificate);
  if (installed_ca == 2) WriteBytes(dir + "/ca.pem", hansa::fuzz::FederationCa().ToPem());
  if (config_case == 1) WriteBytes(dir + "/" + pending.config_name, EarlierConfig(pending));
  if (config_case >= 2) {
    WriteBytes(dir + (config_case == 2 ? "/site.toml" : "/coordinator.toml"), parts[5]);
  }
  std::vector<bool> present(5);
  for (size_t i = 0; i < 5; ++i) {
    present[i] = (mask >> i & 1) != 0;
    if (present[i]) WriteBytes(reply + "/" + kReplyFiles[i], parts[i]);
  }
  const std::map<std::string, std::string> before = Snapshot(dir);

  hansa::AcceptOptions accept;
  accept.dir = dir;
  accept.reply_dir = reply;
  accept.coordinator_address = override_address;
  auto accepted = hansa::AcceptReply(accept);
  if (!accepted.ok()) {
    if (Snapshot(dir) != before) abort();  // refused: nothing installed, nothing rewritten
    return 0;
  }
  if (installed_ca == 2) abort();  // another federation's CA is installed
  CheckAccepted(*accepted, pending, before, parts, present, config_case, override_address);
  return 0;
}
