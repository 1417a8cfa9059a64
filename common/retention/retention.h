// Retention of a study's files (`hansa retention`): which files of a coordinator's or a site's
// state directory are past the study's retention_days (coordinator.toml [federation], as the
// federation_started record states it, or as a site's study_facts records state it), and their
// removal, recorded as a signed retention_applied record (common/audit/events.h) in the
// directory's own log.
//
// Never listed, so never deleted: the log itself (audit.jsonl, a site's egress.jsonl), the
// coordinator's state.db with its SQLite companions and the newest checkpoint (the resume
// point), the privacy accountants (privacy.json, record_privacy.json: without them a restart
// would spend the budget again), keys, certificates and configuration (*.pem, *.toml). Each is
// named in RetentionPlan::kept with why.
//
// PlanRetention only reads. ApplyRetention deletes; its caller holds the log open (AuditLog's
// flock), which keeps a running coordinator or client, and a second `hansa retention`, out.
// Plain functions; one caller per state directory at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/audit/audit_log.h"
#include "common/status/status.h"

namespace hansa {

enum class RetentionSide { kCoordinator, kSite };

struct RetentionOptions {
  std::string state_dir;
  RetentionSide side = RetentionSide::kCoordinator;
  // coordinator.toml, read for [federation] retention_days when no record states it; optional.
  std::string config_path;
  absl::Time now = absl::Now();
};

// A file that may be deleted once past retention.
struct RetentionFile {
  std::string path;  // relative to the state directory
  uint64_t bytes = 0;
  absl::Time made;
  std::string age_from;  // "checkpoint_written record (seq 12)" or "file mtime"
};

// A file that is never deleted, and why.
struct KeptFile {
  std::string path;
  std::string why;
};

struct RetentionPlan {
  std::string state_dir;
  RetentionSide side = RetentionSide::kCoordinator;
  int64_t retention_days = 0;
  std::string days_from;                // which record or configuration stated retention_days
  absl::Time cutoff;                    // files made before it are past retention
  std::vector<RetentionFile> expired;   // past retention, oldest first
  std::vector<RetentionFile> retained;  // within retention
  std::vector<KeptFile> kept;

  uint64_t ExpiredBytes() const;
  // Lines for people: the retention and its source, every expired file with its size, age and
  // where the age came from, the count of files within retention, and what is kept and why.
  std::string ToText() const;
};

// The log of a state directory: STATE_DIR/audit.jsonl (coordinator) or egress.jsonl (site).
std::string RetentionLogPath(const std::string& state_dir, RetentionSide side);

// FailedPrecondition when another process (a running coordinator or client) holds the log open
// for writing (its flock); NotFound when there is no log. Does not create or change the file.
Status CheckLogNotHeld(const std::string& log_path);

// Errors: NotFound when the directory holds no log (not a state directory);
// FailedPrecondition when neither a record nor the configuration states retention_days
// (names both); InvalidArgument for an unreadable configuration.
StatusOr<RetentionPlan> PlanRetention(const RetentionOptions& options);

struct DeletedFile {
  std::string path;  // relative to the state directory
  uint64_t bytes = 0;
  std::string sha256;
};

struct RetentionResult {
  std::vector<DeletedFile> deleted;
  int64_t record_seq = -1;  // the retention_applied record's seq; -1 when nothing was deleted
};

// Deletes plan.expired (hashing each first) and appends one retention_applied record to `log`,
// which must be the directory's own log (RetentionLogPath), opened by the caller. Nothing
// expired: no record. A file that fails to hash or delete stops the run: the record lists what
// was deleted before it, and the error is returned (with the record's seq in its message).
StatusOr<RetentionResult> ApplyRetention(const RetentionPlan& plan, AuditLog& log);

}  // namespace hansa
