// The writer of a hash-chained, signed JSON Lines log: the coordinator's audit.jsonl and each
// site's egress.jsonl (record format in record.h, events and their fields in events.h).
//
// Append() returns only after the line is written and fsynced, so a caller acknowledges the
// action it records only once the record is durable. Opening an existing log checks its whole
// chain and every signature, that the writer's own key signs it, then continues its seq and
// prev: a restarted coordinator extends the same chain. Opened with a renewed certificate for
// the same key and subject (`hansa ca renew`), Open() first appends a signer_renewed record
// that hands the log over to it (record.h), so a renewal never needs a new log. A log whose chain
// is broken is never appended to. An unterminated last line (a crash in the middle of a write,
// before its fsync returned, so before anyone acted on it) is cut off and counted in
// torn_tail_bytes().
//
// A federation_finished record closes the log: Append() writes into it the number of records
// before it and the SHA-256 of the line before it (events.h), under the same lock as the
// append, so the two always name the record it follows. A log that does not end in one may
// have lost its tail; verify says so.
//
// One AuditLog per file: Open() takes an exclusive flock, so a second writer (another process
// or another AuditLog) fails instead of forking the chain. All methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit/events.h"
#include "common/audit/record.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/status/status.h"
#include "nlohmann/json.hpp"

namespace hansa {

struct AuditLogOptions {
  // The clock for record times; tests inject a fake one. Times never go backwards in a log:
  // a clock that steps back yields the previous record's time.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class AuditLog {
 public:
  // Opens (creating it and its folder when absent) the log at `path`, signed with `key`, whose
  // certificate is `certificate`. Errors:
  //   InvalidArgument     the key does not belong to the certificate
  //   FailedPrecondition  the certificate is not valid now; the log is signed by another key
  //                       or subject, or by a certificate newer than this one; another
  //                       writer holds the file
  //   DataLoss            the existing chain is broken (names the first bad record)
  static StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path, PrivateKey key,
                                                  Certificate certificate,
                                                  AuditLogOptions options = {});
  // Open() with the key and certificate read from PEM files (a startup kit's key.pem/cert.pem).
  static StatusOr<std::unique_ptr<AuditLog>> OpenWithFiles(const std::string& path,
                                                           const std::string& key_path,
                                                           const std::string& certificate_path,
                                                           AuditLogOptions options = {});
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record and fsyncs it. Returns the record's seq. For federation_finished, the
  // fields "records" and "head" are set to the log's state before the record (replacing any
  // given). PermissionDenied once the certificate expired (a record dated past it would not
  // verify). InvalidArgument for signer_renewed (only Open() writes it), a bad event name,
  // fields that are not a JSON object, or strings that are not UTF-8; an I/O error leaves the
  // file as it was (or, if even that fails, makes every later Append fail).
  StatusOr<int64_t> Append(std::string_view event, nlohmann::json fields) ABSL_LOCKS_EXCLUDED(mu_);
  StatusOr<int64_t> Append(const AuditEvent& event) ABSL_LOCKS_EXCLUDED(mu_) {
    return Append(event.name, event.fields);
  }

  const std::string& path() const { return path_; }
  const Certificate& certificate() const { return certificate_; }
  // Records in the file (the seq the next Append gets).
  int64_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // SHA-256 of the last line: an anchor to publish elsewhere (truncation at the end of a log
  // can only be detected against one).
  std::string head() const ABSL_LOCKS_EXCLUDED(mu_);
  // size() and head() read together: the log's current head, as the coordinator shows it to
  // sites with each task (Task.audit_head).
  AuditAnchor anchor() const ABSL_LOCKS_EXCLUDED(mu_);
  // anchor() with its signature by the log's key (AuditAnchorStatement), for showing to
  // others: reconcile checks a site's kept head against the coordinator's certificate.
  StatusOr<AuditAnchor> SignedAnchor() const ABSL_LOCKS_EXCLUDED(mu_);
  // Bytes of an unterminated last line that Open() removed (0 normally).
  int64_t torn_tail_bytes() const { return torn_tail_bytes_; }

 private:
  AuditLog(std::string path, int fd, PrivateKey key, Certificate certificate,
           AuditLogOptions options);
  // Append() without the checks of its arguments; `embed_certificate` puts this writer's
  // certificate into the record (signer_renewed).
  StatusOr<int64_t> AppendLocked(AuditEvent event, bool embed_certificate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status WriteLine(const std::string& line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const int fd_;
  const PrivateKey key_;
  const Certificate certificate_;
  const std::string fingerprint_;
  const AuditLogOptions options_;
  int64_t torn_tail_bytes_ = 0;

  mutable absl::Mutex mu_;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::string head_ ABSL_GUARDED_BY(mu_) = kGenesisPrev;
  absl::Time last_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t file_size_ ABSL_GUARDED_BY(mu_) = 0;
  Status broken_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hansa
