#include "common/audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

Status Errno(std::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(std::string(what), " ", path, ": ", std::strerror(errno)));
}

std::string ParentDir(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

// Keeps an unterminated last line as evidence beside the log, then cuts it off.
StatusOr<int64_t> RemoveTornTail(const std::string& path, int fd, std::string* contents) {
  if (contents->empty() || contents->back() == '\n') return 0;
  size_t keep = contents->rfind('\n');
  keep = keep == std::string::npos ? 0 : keep + 1;
  std::string torn = contents->substr(keep);
  RETURN_IF_ERROR(
      WriteFileAtomically(absl::StrCat(path, ".torn-", absl::ToUnixMillis(absl::Now())), torn));
  if (::ftruncate(fd, static_cast<off_t>(keep)) != 0) return Errno("truncating", path);
  RETURN_IF_ERROR(SyncFile(fd, path));
  contents->resize(keep);
  return static_cast<int64_t>(torn.size());
}

}  // namespace

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path, PrivateKey key,
                                                   Certificate certificate,
                                                   AuditLogOptions options) {
  Status match = certificate.CheckPrivateKeyMatches(key);
  if (!match.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "audit log ", path, ": the signing key does not belong to the certificate of '",
        certificate.Subject().common_name, "': ", match.message()));
  }
  absl::Time now = options.clock();
  if (now < certificate.NotBefore() || now > certificate.NotAfter()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "audit log ", path, ": the certificate of '", certificate.Subject().common_name,
        "' is valid from ", FormatCertificateTime(certificate.NotBefore()), " to ",
        FormatCertificateTime(certificate.NotAfter()), ", not now; renew it"));
  }
  RETURN_IF_ERROR(MakeDirs(ParentDir(path)));
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("opening", path);
  std::unique_ptr<AuditLog> log(
      new AuditLog(path, fd, std::move(key), std::move(certificate), std::move(options)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("audit log ", path,
                     " is already open for writing (another coordinator or "
                     "client on the same state?)"));
  }
  RETURN_IF_ERROR(SyncDir(ParentDir(path)));
  ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  ASSIGN_OR_RETURN(log->torn_tail_bytes_, RemoveTornTail(path, fd, &contents));

  ChainChecker checker(ChainChecker::Options{});
  size_t start = 0;
  while (start < contents.size()) {
    size_t end = contents.find('\n', start);
    auto record = checker.Next(std::string_view(contents.data() + start, end - start));
    if (!record.ok()) {
      return absl::DataLossError(absl::StrCat(
          "audit log ", path, " ", record.status().message(),
          "; refusing to append to a broken chain: keep the file as evidence, check it with "
          "`hansa audit verify`, and start a new log"));
    }
    start = end + 1;
  }
  std::optional<Certificate> renewing;  // the certificate that signed the log so far
  if (checker.signer().has_value() &&
      checker.signer()->Sha256Fingerprint() != log->certificate_.Sha256Fingerprint()) {
    const Certificate& current = *checker.signer();
    if (Status same = CheckSameSigner(current, log->certificate_); !same.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "audit log ", path, " is signed by certificate ", current.Sha256Fingerprint(), " ('",
          current.Subject().common_name, "'), not by this key's ",
          log->certificate_.Sha256Fingerprint(), ": ", same.message(),
          "; only a renewed certificate for the same key (hansa ca renew) continues a log, a new "
          "key starts a new one: move the old file aside and keep it"));
    }
    if (log->certificate_.NotBefore() < current.NotBefore()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "audit log ", path, " is signed by certificate ", current.Sha256Fingerprint(),
          ", issued ", FormatCertificateTime(current.NotBefore()), "; the certificate given (",
          log->certificate_.Sha256Fingerprint(), ", issued ",
          FormatCertificateTime(log->certificate_.NotBefore()),
          ") is an older one: use the renewed certificate"));
    }
    renewing = current;
  }
  absl::MutexLock lock(&log->mu_);
  log->next_seq_ = checker.next_seq();
  log->head_ = checker.head();
  log->last_time_ = checker.last_time();
  log->file_size_ = contents.size();
  if (renewing.has_value()) {
    RETURN_IF_ERROR(log->AppendLocked(SignerRenewed(*renewing, log->certificate_),
                                      /*embed_certificate=*/true)
                        .status());
  }
  return log;
}

StatusOr<std::unique_ptr<AuditLog>> AuditLog::OpenWithFiles(const std::string& path,
                                                            const std::string& key_path,
                                                            const std::string& certificate_path,
                                                            AuditLogOptions options) {
  ASSIGN_OR_RETURN(PrivateKey key, ReadPrivateKeyFile(key_path));
  ASSIGN_OR_RETURN(Certificate certificate, Certificate::FromFile(certificate_path));
  return Open(path, std::move(key), std::move(certificate), std::move(options));
}

AuditLog::AuditLog(std::string path, int fd, PrivateKey key, Certificate certificate,
                   AuditLogOptions options)
    : path_(std::move(path)),
      fd_(fd),
      key_(std::move(key)),
      certificate_(std::move(certificate)),
      fingerprint_(certificate_.Sha256Fingerprint()),
      options_(std::move(options)) {}

AuditLog::~AuditLog() { ::close(fd_); }  // also releases the flock

int64_t AuditLog::size() const {
  absl::MutexLock lock(&mu_);
  return next_seq_;
}

std::string AuditLog::head() const {
  absl::MutexLock lock(&mu_);
  return head_;
}

AuditAnchor AuditLog::anchor() const {
  absl::MutexLock lock(&mu_);
  return {next_seq_, head_, {}};
}

StatusOr<AuditAnchor> AuditLog::SignedAnchor() const {
  AuditAnchor anchor = this->anchor();
  ASSIGN_OR_RETURN(std::string signature,
                   key_.Sign(AuditAnchorStatement(anchor.records, anchor.sha256)));
  anchor.signature = absl::BytesToHexString(signature);
  return anchor;
}

StatusOr<int64_t> AuditLog::Append(std::string_view event, nlohmann::json fields) {
  RETURN_IF_ERROR(ValidateEventName(event));
  if (!fields.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("fields of audit event ", std::string(event), " must be a JSON object"));
  }
  if (event == audit_events::kSignerRenewed) {
    return absl::InvalidArgumentError(
        "signer_renewed is written by AuditLog::Open when it is given a renewed certificate");
  }
  absl::MutexLock lock(&mu_);
  return AppendLocked({std::string(event), std::move(fields)}, /*embed_certificate=*/false);
}

StatusOr<int64_t> AuditLog::AppendLocked(AuditEvent event, bool embed_certificate) {
  if (!broken_.ok()) return broken_;
  absl::Time now = std::max(options_.clock(), last_time_);
  // A record dated after the certificate's end would make the whole log fail verification.
  if (now > certificate_.NotAfter()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "audit log ", path_, ": the certificate of '", certificate_.Subject().common_name,
        "' that signs it expired at ", FormatCertificateTime(certificate_.NotAfter()),
        ", so no record can be added (it would not verify); renew the certificate and keep "
        "this log, a new certificate starts a new one"));
  }
  if (event.name == audit_events::kFederationFinished) {
    event.fields[audit_events::kClosingRecords] = next_seq_;
    event.fields[audit_events::kClosingHead] = head_;
  }
  AuditRecord record;
  record.seq = next_seq_;
  record.time = FormatRecordTime(now);
  record.event = std::move(event.name);
  record.fields = std::move(event.fields);
  record.prev = head_;
  record.signer = fingerprint_;
  if (record.seq == 0 || embed_certificate) record.certificate_pem = certificate_.ToPem();
  ASSIGN_OR_RETURN(std::string canonical, CanonicalRecordBytes(record));
  ASSIGN_OR_RETURN(std::string signature, key_.Sign(canonical));
  record.sig = absl::BytesToHexString(signature);
  ASSIGN_OR_RETURN(std::string line, FormatRecordLine(record));
  RETURN_IF_ERROR(WriteLine(line));
  next_seq_ = record.seq + 1;
  head_ = LineDigest(line);
  ASSIGN_OR_RETURN(last_time_, ParseRecordTime(record.time));
  return record.seq;
}

Status AuditLog::WriteLine(const std::string& line) {
  std::string bytes = line + "\n";
  Status written = WriteAll(fd_, bytes, path_);
  if (!written.ok()) {
    Status st = Annotate(written, "appending to the log");
    if (::ftruncate(fd_, static_cast<off_t>(file_size_)) != 0) {
      broken_ = Annotate(st, "the log could not be restored after a failed write");
    }
    return st;
  }
  Status synced = SyncFile(fd_, path_);
  if (!synced.ok()) {
    // After a failed fsync the kernel may have dropped the data: nothing more is trusted.
    broken_ = Annotate(synced, "appending to the log (it takes no more records until reopened)");
    return broken_;
  }
  file_size_ += bytes.size();
  return absl::OkStatus();
}

}  // namespace hansa
