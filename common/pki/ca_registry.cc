#include "common/pki/ca_registry.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fileio/fileio.h"
#include "common/pki/revocation.h"
#include "common/pki/startup_kit.h"

namespace hansa {
namespace {

constexpr char kIndexHeader[] =
    "# serial\tname\trole\tnot_after\tstatus\trevoked_at\treason\tsha256\n";
constexpr int kDefaultCoordinatorPort = 50051;

std::string CaPath(const std::string& dir) { return dir + "/ca.pem"; }
std::string CaKeyPath(const std::string& dir) { return dir + "/ca-key.pem"; }
std::string CrlPath(const std::string& dir) { return dir + "/crl.pem"; }
std::string IndexPath(const std::string& dir) { return dir + "/index.tsv"; }
std::string AddressPath(const std::string& dir) { return dir + "/coordinator.address"; }

// An exclusive lock on dir/lock, held until the descriptor is closed. Never waits: an operator
// runs one command at a time, so a held lock means another command is still at work.
StatusOr<int> LockFolder(const std::string& dir) {
  const std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("another hansa ca command is working on ", dir,
                                                 " (it holds ", path,
                                                 "); run this one when it has finished"));
    }
    return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", strerror(error)));
  }
  return fd;
}

std::string FormatUnix(absl::Time t) { return std::to_string(absl::ToUnixSeconds(t)); }

StatusOr<absl::Time> ParseUnix(std::string_view s, const std::string& where) {
  int64_t seconds = 0;
  if (!absl::SimpleAtoi(absl::string_view(s.data(), s.size()), &seconds)) {
    return absl::DataLossError(absl::StrCat(where, ": '", std::string(s), "' is not a time"));
  }
  return absl::FromUnixSeconds(seconds);
}

StatusOr<std::vector<IssuedRecord>> ReadIndex(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<IssuedRecord> records;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    const std::string where = absl::StrCat(path, " line ", line_number);
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() != 8) {
      return absl::DataLossError(absl::StrCat(where, " has ", f.size(), " fields, not 8"));
    }
    IssuedRecord r;
    // The serial names a file under issued/: hex digits only, never a path.
    if (f[0].empty() || f[0].size() > 64 ||
        f[0].find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
      return absl::DataLossError(absl::StrCat(where, ": serial '",
                                              absl::CHexEscape(f[0].substr(0, 64)),
                                              "' is not a hexadecimal serial number"));
    }
    r.serial_hex = f[0];
    r.name = f[1];
    StatusOr<ParticipantRole> role = ParseRole(f[2]);
    if (!role.ok()) return Annotate(role.status(), where);
    r.role = *role;
    ASSIGN_OR_RETURN(r.not_after, ParseUnix(f[3], where));
    if (f[4] != "issued" && f[4] != "revoked") {
      return absl::DataLossError(absl::StrCat(where, ": unknown status '", f[4], "'"));
    }
    r.revoked = f[4] == "revoked";
    if (r.revoked) {
      ASSIGN_OR_RETURN(r.revoked_at, ParseUnix(f[5], where));
      r.reason = f[6];
    }
    r.fingerprint = f[7];
    records.push_back(std::move(r));
  }
  return records;
}

// The certificate's names as a request would list them.
void SplitAltNames(const Certificate& cert, CertificateRequest* cr) {
  for (const std::string& san : cert.SubjectAltNames()) {
    if (absl::StartsWith(san, "DNS:")) cr->dns_names.push_back(san.substr(4));
    if (absl::StartsWith(san, "IP:")) cr->ip_addresses.push_back(san.substr(3));
  }
}

Status ValidateDays(int days, const CertificateAuthority& ca, absl::Time now) {
  if (days < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a certificate must be valid for at least one day, not ", days));
  }
  if (now + absl::Hours(24 * days) > ca.certificate().NotAfter()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a certificate valid for ", days, " days would outlive the federation CA (valid until ",
        FormatCertificateTime(ca.certificate().NotAfter()), "); ask for fewer --days"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string RoleName(ParticipantRole role) {
  switch (role) {
    case ParticipantRole::kCoordinator:
      return "coordinator";
    case ParticipantRole::kOperator:
      return "operator";
    case ParticipantRole::kSite:
      break;
  }
  return "site";
}

StatusOr<ParticipantRole> ParseRole(std::string_view name) {
  if (name == "site") return ParticipantRole::kSite;
  if (name == "coordinator") return ParticipantRole::kCoordinator;
  if (name == "operator") return ParticipantRole::kOperator;
  return absl::InvalidArgumentError(
      absl::StrCat("role '", std::string(name), "' is none of site, coordinator and operator"));
}

std::string IssuedRecord::Status(absl::Time now) const {
  if (revoked) return "revoked";
  return now > not_after ? "expired" : "valid";
}

CaRegistry::CaRegistry(CaRegistry&& o) noexcept
    : dir_(std::move(o.dir_)),
      ca_(std::move(o.ca_)),
      lock_fd_(std::exchange(o.lock_fd_, -1)),
      records_(std::move(o.records_)) {}

CaRegistry& CaRegistry::operator=(CaRegistry&& o) noexcept {
  if (this != &o) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    dir_ = std::move(o.dir_);
    ca_ = std::move(o.ca_);
    lock_fd_ = std::exchange(o.lock_fd_, -1);
    records_ = std::move(o.records_);
  }
  return *this;
}

CaRegistry::~CaRegistry() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

StatusOr<CaRegistry> CaRegistry::Init(const std::string& dir, const CaOptions& options) {
  if (dir.empty()) return absl::InvalidArgumentError("no CA folder given (--dir)");
  RETURN_IF_ERROR(MakeDirs(dir));
  ASSIGN_OR_RETURN(int lock_fd, LockFolder(dir));
  std::error_code ec;
  for (const std::string& path : {CaPath(dir), CaKeyPath(dir), IndexPath(dir)}) {
    if (std::filesystem::exists(path, ec)) {
      ::close(lock_fd);
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " already holds a federation CA (", path,
          "); the CA is created once: a new one would invalidate every certificate it issued. "
          "Use hansa ca sign/renew/revoke with it, or choose another --dir"));
    }
  }
  StatusOr<CertificateAuthority> ca = CertificateAuthority::Create(options);
  if (!ca.ok()) {
    ::close(lock_fd);
    return ca.status();
  }
  CaRegistry registry(dir, *std::move(ca), lock_fd);
  RETURN_IF_ERROR(MakeDirs(dir + "/issued"));
  // The key first and the index last: a folder with an index is a complete CA.
  RETURN_IF_ERROR(WritePrivateKeyFile(CaKeyPath(dir), registry.ca_.private_key()));
  RETURN_IF_ERROR(WriteFileAtomically(CaPath(dir), registry.ca_.certificate().ToPem(), 0644));
  RETURN_IF_ERROR(registry.WriteRevocationList(absl::Now()));
  RETURN_IF_ERROR(registry.WriteIndex());
  return registry;
}

StatusOr<CaRegistry> CaRegistry::Open(const std::string& dir) {
  std::error_code ec;
  if (dir.empty() || !std::filesystem::exists(IndexPath(dir), ec)) {
    return absl::NotFoundError(absl::StrCat(
        "'", dir, "' holds no federation CA (no index.tsv); create one with hansa ca init"));
  }
  ASSIGN_OR_RETURN(int lock_fd, LockFolder(dir));
  StatusOr<CertificateAuthority> ca = CertificateAuthority::Load(CaPath(dir), CaKeyPath(dir));
  if (!ca.ok()) {
    ::close(lock_fd);
    return ca.status();
  }
  CaRegistry registry(dir, *std::move(ca), lock_fd);
  ASSIGN_OR_RETURN(registry.records_, ReadIndex(IndexPath(dir)));
  return registry;
}

std::string CaRegistry::IssuedPath(const std::string& serial_hex) const {
  return absl::StrCat(dir_, "/issued/", serial_hex, ".pem");
}

std::string CaRegistry::CoordinatorAddress() const {
  StatusOr<std::string> text = ReadFile(AddressPath(dir_), 1024);
  if (!text.ok()) return std::string();
  std::string address = *text;
  while (!address.empty() && (address.back() == '\n' || address.back() == ' ')) {
    address.pop_back();
  }
  return address;
}

std::optional<Certificate> CaRegistry::CurrentCoordinator(absl::Time now) const {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    if (it->role != ParticipantRole::kCoordinator || !it->ValidAt(now)) continue;
    StatusOr<Certificate> cert = Certificate::FromFile(IssuedPath(it->serial_hex));
    if (cert.ok()) return *std::move(cert);
  }
  return std::nullopt;
}

Status CaRegistry::Record(const Certificate& cert, ParticipantRole role) {
  IssuedRecord r;
  r.serial_hex = cert.SerialHex();
  r.name = cert.Subject().common_name;
  r.role = role;
  r.not_after = cert.NotAfter();
  r.fingerprint = cert.Sha256Fingerprint();
  RETURN_IF_ERROR(WriteFileAtomically(IssuedPath(r.serial_hex), cert.ToPem(), 0644));
  records_.push_back(std::move(r));
  return WriteIndex();
}

Status CaRegistry::WriteIndex() const {
  std::string text = kIndexHeader;
  for (const IssuedRecord& r : records_) {
    absl::StrAppend(&text, r.serial_hex, "\t", r.name, "\t", RoleName(r.role), "\t",
                    FormatUnix(r.not_after), "\t", r.revoked ? "revoked" : "issued", "\t",
                    r.revoked ? FormatUnix(r.revoked_at) : "-", "\t", r.revoked ? r.reason : "-",
                    "\t", r.fingerprint, "\n");
  }
  return WriteFileAtomically(IndexPath(dir_), text, 0644);
}

Status CaRegistry::WriteRevocationList(absl::Time now) const {
  std::vector<RevokedEntry> entries;
  for (const IssuedRecord& r : records_) {
    if (r.revoked) entries.push_back({r.serial_hex, r.revoked_at, r.reason});
  }
  uint64_t number = 1;
  std::error_code ec;
  if (std::filesystem::exists(CrlPath(dir_), ec)) {
    ASSIGN_OR_RETURN(RevocationList old,
                     RevocationList::FromFile(CrlPath(dir_), ca_.certificate()));
    if (old.number() == std::numeric_limits<uint64_t>::max()) {
      return absl::FailedPreconditionError(
          absl::StrCat(CrlPath(dir_),
                       " has the largest CRL number there is; a next list would count as "
                       "older to every coordinator: create a new CA"));
    }
    number = old.number() + 1;
  }
  const absl::Time next_update =
      std::min(now + absl::Hours(24 * kRevocationListValidityDays), ca_.certificate().NotAfter());
  ASSIGN_OR_RETURN(RevocationList list,
                   RevocationList::Issue(ca_, std::move(entries), number, now, next_update));
  return WriteRevocationListFile(CrlPath(dir_), list);
}

StatusOr<Certificate> CaRegistry::Sign(const SigningRequest& request, const SignOptions& options) {
  const SubjectName subject = request.Subject();
  RETURN_IF_ERROR(Annotate(ValidateParticipantName(subject.common_name), "the request's CN"));
  RETURN_IF_ERROR(Annotate(ValidateCountryCode(subject.country),
                           absl::StrCat("the request of '", subject.common_name, "'")));
  RETURN_IF_ERROR(ValidateDays(options.days, ca_, options.now));
  for (const IssuedRecord& r : records_) {
    if (r.name == subject.common_name && r.ValidAt(options.now)) {
      return absl::AlreadyExistsError(
          absl::StrCat("'", r.name, "' already holds a valid certificate (serial ", r.serial_hex,
                       ", valid until ", FormatCertificateTime(r.not_after),
                       "); to extend it use hansa ca renew ", r.name,
                       ", or revoke it first with hansa ca "
                       "revoke ",
                       r.name));
    }
  }
  CertificateRequest cr;
  cr.subject = subject;
  if (options.role == ParticipantRole::kOperator) cr.organizational_unit = kOperatorUnit;
  cr.not_before = options.now - kClockSkewAllowance;
  cr.not_after = options.now + absl::Hours(24 * options.days);
  if (options.role != ParticipantRole::kCoordinator) {
    cr.client_auth = true;
    cr.dns_names = {subject.common_name};
  } else {
    cr.server_auth = true;
    std::set<std::string> seen;
    std::vector<std::string> hosts = request.dns_names();
    hosts.insert(hosts.end(), request.ip_addresses().begin(), request.ip_addresses().end());
    hosts.insert(hosts.end(), options.extra_hosts.begin(), options.extra_hosts.end());
    for (const std::string& host : hosts) {
      if (!seen.insert(host).second) continue;
      (IsIpAddress(host) ? cr.ip_addresses : cr.dns_names).push_back(host);
    }
    if (seen.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the coordinator '", subject.common_name,
                       "' asks for no host name: sites check the name they connect to against its "
                       "certificate; add --host HOST (or enroll it again with --host)"));
    }
  }
  ASSIGN_OR_RETURN(Certificate cert, ca_.Issue(cr, request.public_key()));
  RETURN_IF_ERROR(Record(cert, options.role));
  if (options.role == ParticipantRole::kCoordinator) {
    std::string address = options.address;
    if (address.empty()) {
      const std::string& host =
          cr.dns_names.empty() ? cr.ip_addresses.front() : cr.dns_names.front();
      address = host.find(':') != std::string::npos
                    ? absl::StrCat("[", host, "]:", kDefaultCoordinatorPort)
                    : absl::StrCat(host, ":", kDefaultCoordinatorPort);
    }
    RETURN_IF_ERROR(WriteFileAtomically(AddressPath(dir_), address + "\n", 0644));
  }
  return cert;
}

StatusOr<Certificate> CaRegistry::Renew(std::string_view name, int days, absl::Time now) {
  const IssuedRecord* newest = nullptr;
  for (const IssuedRecord& r : records_) {
    if (r.name == name) newest = &r;
  }
  if (newest == nullptr) {
    return absl::NotFoundError(absl::StrCat("no certificate was issued to '", std::string(name),
                                            "'; sign its request with hansa ca sign"));
  }
  if (newest->revoked) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the newest certificate of '", newest->name, "' (serial ", newest->serial_hex,
        ") is revoked; renewing would bring its key back: ask the participant to enroll again "
        "with a new key and sign that request"));
  }
  RETURN_IF_ERROR(ValidateDays(days, ca_, now));
  ASSIGN_OR_RETURN(Certificate old, Certificate::FromFile(IssuedPath(newest->serial_hex)));
  ASSIGN_OR_RETURN(PublicKey key, old.GetPublicKey());
  CertificateRequest cr;
  cr.subject = old.Subject();
  cr.organizational_unit = old.OrganizationalUnit();
  cr.not_before = now - kClockSkewAllowance;
  cr.not_after = now + absl::Hours(24 * days);
  cr.server_auth = newest->role == ParticipantRole::kCoordinator;
  cr.client_auth = newest->role != ParticipantRole::kCoordinator;
  SplitAltNames(old, &cr);
  const ParticipantRole role = newest->role;
  ASSIGN_OR_RETURN(Certificate cert, ca_.Issue(cr, key));
  RETURN_IF_ERROR(Record(cert, role));
  return cert;
}

StatusOr<std::vector<IssuedRecord>> CaRegistry::Revoke(std::string_view name_or_serial,
                                                       const std::string& reason, absl::Time now) {
  const auto& reasons = RevocationReasonNames();
  if (std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown revocation reason '", reason, "'; use one of: ", absl::StrJoin(reasons, ", ")));
  }
  std::string serial(name_or_serial);
  std::transform(serial.begin(), serial.end(), serial.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  std::vector<size_t> matches;
  for (size_t i = 0; i < records_.size(); ++i) {
    if (records_[i].name == name_or_serial || records_[i].serial_hex == serial) {
      matches.push_back(i);
    }
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat("no certificate of this CA has the name or serial '",
                                            std::string(name_or_serial),
                                            "'; hansa ca list shows them"));
  }
  std::vector<IssuedRecord> revoked;
  for (size_t i : matches) {
    IssuedRecord& r = records_[i];
    if (r.revoked) continue;
    r.revoked = true;
    r.revoked_at = now;
    r.reason = reason;
    revoked.push_back(r);
  }
  if (revoked.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "every certificate of '", std::string(name_or_serial), "' is revoked already"));
  }
  // The list first: a failure leaves the index saying "issued", and a rerun revokes again.
  Status status = WriteRevocationList(now);
  if (status.ok()) status = WriteIndex();
  if (!status.ok()) {
    ASSIGN_OR_RETURN(records_, ReadIndex(IndexPath(dir_)));
    return status;
  }
  return revoked;
}

std::string FormatIssuedTable(const std::vector<IssuedRecord>& records, absl::Time now) {
  size_t name_w = 4;
  for (const IssuedRecord& r : records) name_w = std::max(name_w, r.name.size());
  auto pad = [](const std::string& s, size_t w) {
    return s.size() >= w ? s + " " : s + std::string(w - s.size() + 1, ' ');
  };
  std::string text = absl::StrCat("  ", pad("name", name_w + 1), pad("role", 12), pad("serial", 33),
                                  pad("not after", 24), "status\n");
  int expiring = 0;
  for (const IssuedRecord& r : records) {
    const bool warn = r.ValidAt(now) && r.not_after - now <= kExpiryWarning;
    if (warn) ++expiring;
    std::string status = r.Status(now);
    if (r.revoked)
      absl::StrAppend(&status, " (", r.reason, ", ", FormatCertificateTime(r.revoked_at), ")");
    if (warn) {
      absl::StrAppend(&status, " - expires in ", absl::ToInt64Hours(r.not_after - now) / 24,
                      " days: hansa ca renew ", r.name);
    }
    absl::StrAppend(&text, warn ? "! " : "  ", pad(r.name, name_w + 1), pad(RoleName(r.role), 12),
                    pad(r.serial_hex, 33), pad(FormatCertificateTime(r.not_after), 24), status,
                    "\n");
  }
  if (records.empty()) absl::StrAppend(&text, "  (no certificate issued yet)\n");
  if (expiring > 0) {
    absl::StrAppend(&text, "\n", expiring,
                    " valid certificate(s) expire within 30 days (marked !)\n");
  }
  return text;
}

}  // namespace hansa
