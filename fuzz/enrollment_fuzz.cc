// Enrollment's parsers (common/pki): what a participant sends the operator, what the coordinator
// loads, and the operator's own record. The first byte picks what the rest is read as (its
// value / 5 picks the options):
//   0  a signing request as it comes (SigningRequest::FromPem): the self-signature check;
//   1  a request (PEM, or else DER) re-signed with a key of this process (Ed25519 or P-256)
//      before parsing, so that mutated subjects and requested names get past the signature check;
//   2  a revocation list against the seed federation's CA (RevocationList::FromPem): the issuer
//      and signature checks;
//   3  a list (PEM, or else DER) re-signed by a CA of this process (Ed25519 or P-256), issuer set
//      to it, so that mutated entries get past the signature check;
//   4  a CA folder's index.tsv (CaRegistry::Open), then after the first NUL its
//      coordinator.address.
// After a successful parse: every accessor, a PEM round trip that must give the same content,
// and what the operator or coordinator does next: `hansa ca sign` (CaRegistry::Sign into a
// scratch CA folder), the coordinator's revocation lookups (Find), `hansa ca list` and
// `hansa ca revoke`, whose index and list must read back as written.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/pki/authority.h"
#include "common/pki/ca_registry.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/pki/revocation.h"
#include "common/pki/signing_request.h"
#include "common/pki/startup_kit.h"
#include "fuzz/federation_ca.h"
#include "fuzz/scratch_folder.h"

namespace {

using hansa::fuzz::ReadBytes;
using hansa::fuzz::WriteBytes;

// Every time the target looks at: fixed, so that an input does the same on every replay.
absl::Time Now() { return absl::FromCivil(absl::CivilSecond(2027, 1, 1), absl::UTCTimeZone()); }

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

// A CA folder made once per process (`hansa ca init`), with the CA it holds and its files as
// made, which every input that writes into it puts back first.
struct ScratchCa {
  std::string dir;
  hansa::CertificateAuthority ca;
  std::string index;  // index.tsv as made: the header only
  std::string crl;    // crl.pem as made: number 1, nothing revoked
};

hansa::CaOptions FixedCaOptions(const std::string& federation, hansa::KeyType type) {
  hansa::CaOptions options;
  options.federation = federation;
  options.organization = "Fuzz";
  options.country = "DE";
  options.key_type = type;
  options.not_before = absl::FromCivil(absl::CivilSecond(2020, 1, 1), absl::UTCTimeZone());
  options.not_after = absl::FromCivil(absl::CivilSecond(2040, 1, 1), absl::UTCTimeZone());
  return options;
}

const ScratchCa& Registry() {
  static const ScratchCa* scratch = [] {
    const std::string dir = hansa::fuzz::ScratchFolder("hansa-enrollment-fuzz") + "/ca";
    if (!hansa::CaRegistry::Init(dir, FixedCaOptions("fuzz", hansa::KeyType::kEd25519)).ok()) {
      abort();
    }  // closed here, releasing the folder's lock
    auto ca = hansa::CertificateAuthority::Load(dir + "/ca.pem", dir + "/ca-key.pem");
    if (!ca.ok()) abort();
    return new ScratchCa{dir, *std::move(ca), ReadBytes(dir + "/index.tsv"),
                         ReadBytes(dir + "/crl.pem")};
  }();
  return *scratch;
}

// Puts the scratch CA folder back as `hansa ca init` left it, with `index` as its index.tsv.
void ResetRegistry(std::string_view index) {
  const ScratchCa& scratch = Registry();
  WriteBytes(scratch.dir + "/index.tsv", index);
  WriteBytes(scratch.dir + "/crl.pem", scratch.crl);
  std::error_code ignored;
  std::filesystem::remove(scratch.dir + "/coordinator.address", ignored);
}

// A CA of this process of either key type, for lists re-signed by it.
const hansa::CertificateAuthority& ProcessCa(bool p256) {
  static const hansa::CertificateAuthority* cas[2] = {nullptr, nullptr};
  const hansa::CertificateAuthority*& ca = cas[p256 ? 1 : 0];
  if (ca == nullptr) {
    auto made = hansa::CertificateAuthority::Create(
        FixedCaOptions(p256 ? "fuzz-p256" : "fuzz-ed25519",
                       p256 ? hansa::KeyType::kEcdsaP256 : hansa::KeyType::kEd25519));
    if (!made.ok()) abort();
    ca = new hansa::CertificateAuthority(*std::move(made));
  }
  return *ca;
}

const hansa::PrivateKey& ProcessKey(bool p256) {
  static const hansa::PrivateKey* keys[2] = {nullptr, nullptr};
  const hansa::PrivateKey*& key = keys[p256 ? 1 : 0];
  if (key == nullptr) {
    auto made =
        hansa::PrivateKey::Generate(p256 ? hansa::KeyType::kEcdsaP256 : hansa::KeyType::kEd25519);
    if (!made.ok()) abort();
    key = new hansa::PrivateKey(*std::move(made));
  }
  return *key;
}

bool SameSubject(const hansa::SubjectName& a, const hansa::SubjectName& b) {
  return a.common_name == b.common_name && a.organization == b.organization &&
         a.country == b.country;
}

// `hansa ca sign REQUEST --role ROLE` into the scratch CA folder, and what must hold of the
// certificate it issues.
void SignAsOperator(const hansa::SigningRequest& request, hansa::ParticipantRole role) {
  ResetRegistry(Registry().index);
  auto registry = hansa::CaRegistry::Open(Registry().dir);
  if (!registry.ok()) abort();
  hansa::SignOptions options;
  options.role = role;
  options.now = Now();
  auto cert = registry->Sign(request, options);
  if (!cert.ok()) return;
  if (cert->Subject().common_name != request.Subject().common_name) abort();
  auto key = cert->GetPublicKey();
  if (!key.ok() ||
      hansa::PublicKeyFingerprint(*key) != hansa::PublicKeyFingerprint(request.public_key())) {
    abort();
  }
  const auto usage = role == hansa::ParticipantRole::kCoordinator
                         ? hansa::CertificateUsage::kTlsServer
                         : hansa::CertificateUsage::kTlsClient;
  if (!hansa::VerifyCertificate(*cert, registry->ca().certificate(), Now(), usage).ok()) abort();
  if (role == hansa::ParticipantRole::kCoordinator) {
    if (registry->CoordinatorAddress().empty()) abort();
    if (!registry->CurrentCoordinator(Now()).has_value()) abort();
  }
  std::error_code ignored;
  std::filesystem::remove(registry->IssuedPath(cert->SerialHex()), ignored);
}

void DriveRequest(const hansa::SigningRequest& request, hansa::ParticipantRole role) {
  const hansa::SubjectName subject = request.Subject();
  const std::string fingerprint = request.Sha256Fingerprint();
  const std::string key_fingerprint = hansa::PublicKeyFingerprint(request.public_key());
  if (fingerprint.size() != 64 || key_fingerprint.size() != 64) abort();
  (void)hansa::GroupFingerprint(key_fingerprint);
  auto again = hansa::SigningRequest::FromPem(request.ToPem());
  if (!again.ok() || again->Sha256Fingerprint() != fingerprint ||
      !SameSubject(again->Subject(), subject) || again->dns_names() != request.dns_names() ||
      again->ip_addresses() != request.ip_addresses() ||
      hansa::PublicKeyFingerprint(again->public_key()) != key_fingerprint) {
    abort();
  }
  (void)hansa::ValidateParticipantName(subject.common_name);
  (void)hansa::ValidateCountryCode(subject.country);
  SignAsOperator(request, role);
}

// Re-signing modes read PEM, or else DER: mutations of DER reach the fields that base64 hides.
bool IsPem(std::string_view bytes) { return bytes.substr(0, 5) == "-----"; }

// Parses a request and signs it again with one of this process's keys; "" when the bytes hold
// no request OpenSSL can read or sign.
std::string Resign(std::string_view bytes, const hansa::PrivateKey& key) {
  X509_REQ* req = nullptr;
  if (IsPem(bytes)) {
    BIO* in = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
    req = in == nullptr ? nullptr : PEM_read_bio_X509_REQ(in, nullptr, nullptr, nullptr);
    BIO_free(in);
  } else {
    const auto* der = reinterpret_cast<const unsigned char*>(bytes.data());
    req = d2i_X509_REQ(nullptr, &der, static_cast<long>(bytes.size()));
  }
  std::string pem;
  const EVP_MD* md = key.type() == hansa::KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (req != nullptr && X509_REQ_set_pubkey(req, key.get()) == 1 &&
      X509_REQ_sign(req, key.get(), md) > 0) {
    BIO* out = BIO_new(BIO_s_mem());
    if (out != nullptr && PEM_write_bio_X509_REQ(out, req) == 1) pem = BioText(out);
    BIO_free(out);
  }
  X509_REQ_free(req);
  ERR_clear_error();
  return pem;
}

void Request(std::string_view bytes, bool resign, unsigned options) {
  const auto role = static_cast<hansa::ParticipantRole>(options % 3);
  std::string resigned;
  if (resign) {
    resigned = Resign(bytes, ProcessKey((options / 3) % 2 == 1));
    if (resigned.empty()) return;
    bytes = resigned;
  }
  auto request = hansa::SigningRequest::FromPem(bytes);
  if (!request.ok()) {
    // A request signed just now with the key it carries verifies.
    if (resign && request.status().code() == absl::StatusCode::kPermissionDenied) abort();
    return;
  }
  DriveRequest(*request, role);
}

std::string Normalized(std::string_view serial) {
  size_t start = 0;
  while (start + 1 < serial.size() && serial[start] == '0') ++start;
  std::string out(serial.substr(start));
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

using EntryKey = std::tuple<std::string, absl::Time, std::string>;

std::vector<EntryKey> SortedEntries(const hansa::RevocationList& list) {
  std::vector<EntryKey> out;
  for (const auto& e : list.entries()) {
    out.emplace_back(Normalized(e.serial_hex), e.revoked_at, e.reason);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool SameList(const hansa::RevocationList& a, const hansa::RevocationList& b) {
  return a.number() == b.number() && a.this_update() == b.this_update() &&
         a.next_update() == b.next_update() && SortedEntries(a) == SortedEntries(b);
}

// What the coordinator does with a list it loaded: look serials up (CheckRevoked), and what
// `hansa ca revoke` does with the list it re-signs (Issue, when `ca` holds the key).
void DriveList(const hansa::RevocationList& list, const hansa::Certificate& ca_cert,
               const hansa::CertificateAuthority* ca) {
  (void)hansa::FormatCertificateTime(list.this_update());
  (void)hansa::FormatCertificateTime(list.next_update());
  for (const hansa::RevokedEntry& entry : list.entries()) {
    (void)hansa::FormatCertificateTime(entry.revoked_at);
    const hansa::RevokedEntry* found = list.Find(entry.serial_hex);
    if (found == nullptr || Normalized(found->serial_hex) != Normalized(entry.serial_hex)) abort();
    std::string upper = "00" + entry.serial_hex;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (list.Find(upper) != found) abort();
  }
  (void)list.Find(ca_cert.SerialHex());
  (void)list.Find("");
  auto again = hansa::RevocationList::FromPem(list.ToPem(), ca_cert);
  if (!again.ok() || !SameList(*again, list)) abort();
  if (ca == nullptr) return;
  auto reissued = hansa::RevocationList::Issue(*ca, list.entries(), list.number(),
                                               list.this_update(), list.next_update());
  if (reissued.ok() && !SameList(*reissued, list)) abort();
}

// Parses a list and signs it again by `ca`, with `ca` as its issuer; "" when the bytes hold no
// list OpenSSL can read or sign.
std::string Resign(std::string_view bytes, const hansa::CertificateAuthority& ca) {
  X509_CRL* crl = nullptr;
  if (IsPem(bytes)) {
    BIO* in = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
    crl = in == nullptr ? nullptr : PEM_read_bio_X509_CRL(in, nullptr, nullptr, nullptr);
    BIO_free(in);
  } else {
    const auto* der = reinterpret_cast<const unsigned char*>(bytes.data());
    crl = d2i_X509_CRL(nullptr, &der, static_cast<long>(bytes.size()));
  }
  std::string pem;
  const hansa::PrivateKey& key = ca.private_key();
  const EVP_MD* md = key.type() == hansa::KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (crl != nullptr &&
      X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.certificate().get())) == 1 &&
      X509_CRL_sign(crl, key.get(), md) > 0) {
    BIO* out = BIO_new(BIO_s_mem());
    if (out != nullptr && PEM_write_bio_X509_CRL(out, crl) == 1) pem = BioText(out);
    BIO_free(out);
  }
  X509_CRL_free(crl);
  ERR_clear_error();
  return pem;
}

void List(std::string_view bytes, bool resign, unsigned options) {
  if (!resign) {
    auto list = hansa::RevocationList::FromPem(bytes, hansa::fuzz::FederationCa());
    if (list.ok()) DriveList(*list, hansa::fuzz::FederationCa(), nullptr);
    return;
  }
  const hansa::CertificateAuthority& ca = ProcessCa(options % 2 == 1);
  const std::string pem = Resign(bytes, ca);
  if (pem.empty()) return;
  auto list = hansa::RevocationList::FromPem(pem, ca.certificate());
  if (!list.ok()) {
    // A list the CA signed just now, naming it as issuer, is the CA's.
    if (list.status().code() == absl::StatusCode::kPermissionDenied) abort();
    return;
  }
  DriveList(*list, ca.certificate(), &ca);
}

bool SameRecords(const std::vector<hansa::IssuedRecord>& a,
                 const std::vector<hansa::IssuedRecord>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const hansa::IssuedRecord& x = a[i];
    const hansa::IssuedRecord& y = b[i];
    if (x.serial_hex != y.serial_hex || x.name != y.name || x.role != y.role ||
        x.not_after != y.not_after || x.revoked != y.revoked || x.fingerprint != y.fingerprint ||
        (x.revoked && (x.revoked_at != y.revoked_at || x.reason != y.reason))) {
      return false;
    }
  }
  return true;
}

// `hansa ca list`, then `hansa ca revoke` of the newest record's name: the index and the
// re-signed list must read back as they were written.
void Index(std::string_view bytes, unsigned options) {
  const size_t nul = bytes.find('\0');
  ResetRegistry(bytes.substr(0, nul));
  const ScratchCa& scratch = Registry();
  if (nul != std::string_view::npos) {
    WriteBytes(scratch.dir + "/coordinator.address", bytes.substr(nul + 1));
  }
  std::vector<hansa::IssuedRecord> written;
  {
    auto registry = hansa::CaRegistry::Open(scratch.dir);
    if (!registry.ok()) return;
    (void)hansa::FormatIssuedTable(registry->records(), Now());
    for (const hansa::IssuedRecord& r : registry->records()) {
      (void)r.Status(Now());
      (void)hansa::RoleName(r.role);
    }
    const std::string address = registry->CoordinatorAddress();
    if (!address.empty() && (address.back() == '\n' || address.back() == ' ')) abort();
    (void)registry->CurrentCoordinator(Now());
    if (registry->records().empty()) return;
    const auto& reasons = hansa::RevocationReasonNames();
    const std::string name = registry->records().back().name;
    auto revoked = registry->Revoke(name, reasons[options % reasons.size()], Now());
    if (!revoked.ok()) return;
    std::string serial = name;
    for (char& c : serial) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const hansa::IssuedRecord& r : *revoked) {
      if (!r.revoked || (r.name != name && r.serial_hex != serial)) abort();
    }
    written = registry->records();
  }  // closed: its lock is released
  auto reopened = hansa::CaRegistry::Open(scratch.dir);
  if (!reopened.ok() || !SameRecords(reopened->records(), written)) abort();
  auto list = hansa::RevocationList::FromFile(scratch.dir + "/crl.pem", scratch.ca.certificate());
  if (!list.ok()) abort();
  for (const hansa::IssuedRecord& r : written) {
    if (r.revoked && list->Find(r.serial_hex) == nullptr) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const unsigned options = data[0] / 5;
  switch (data[0] % 5) {
    case 0:
      Request(rest, /*resign=*/false, options);
      break;
    case 1:
      Request(rest, /*resign=*/true, options);
      break;
    case 2:
      List(rest, /*resign=*/false, options);
      break;
    case 3:
      List(rest, /*resign=*/true, options);
      break;
    default:
      Index(rest, options);
      break;
  }
  return 0;
}
