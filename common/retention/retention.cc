#include "common/retention/retention.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/audit/events.h"
#include "common/audit/record_text.h"
#include "common/audit/verify.h"
#include "common/config/config.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/plan/study_facts.h"

namespace hansa {
namespace {

namespace ev = audit_events;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kAuditLog[] = "audit.jsonl";
constexpr char kEgressLedger[] = "egress.jsonl";
constexpr size_t kMaxRecordedPathBytes = 4096;

Status Errno(const char* what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Why a file is never deleted; empty when it may be.
std::string NeverDeleted(const std::string& rel, RetentionSide side) {
  const std::string name = fs::path(rel).filename().string();
  if (rel == kAuditLog && side == RetentionSide::kCoordinator) {
    return "the audit log: the signed record of the study, and of this retention";
  }
  if (rel == kEgressLedger && side == RetentionSide::kSite) {
    return "the egress ledger: the signed record of every byte that left this site, and of this "
           "retention";
  }
  if (rel == "privacy.json" || rel == "record_privacy.json") {
    return "a privacy accountant: without it a restart would spend the privacy budget again";
  }
  if (side == RetentionSide::kCoordinator && absl::StartsWith(rel, "state.db")) {
    return "the resume point: the rounds completed, their model digests and metrics; a "
           "coordinator restarted without it would start the study over under the same audit log";
  }
  if (absl::EndsWith(name, ".pem") || absl::EndsWith(name, ".toml")) {
    return "a key, certificate or configuration, not a record of the study";
  }
  return "";
}

// checkpoints/round-NNNN.safetensors or checkpoints/strategy-NNNN.safetensors: NNNN, else -1.
int64_t CheckpointRound(const std::string& rel) {
  for (const char* prefix : {"checkpoints/round-", "checkpoints/strategy-"}) {
    if (!absl::StartsWith(rel, prefix) || !absl::EndsWith(rel, ".safetensors")) continue;
    const std::string digits =
        rel.substr(strlen(prefix), rel.size() - strlen(prefix) - strlen(".safetensors"));
    if (digits.empty() || digits.size() > 9) return -1;
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return -1;
    }
    return std::stoll(digits);
  }
  return -1;
}

struct RecordTime {
  absl::Time time;
  int64_t seq = 0;
};

int64_t StudyRetentionDays(const json& fields) {
  auto study = fields.find("study");
  if (study == fields.end() || !study->is_object()) return 0;
  auto days = study->find("retention_days");
  return days != study->end() && days->is_number_integer() ? days->get<int64_t>() : 0;
}

// What the log's records say: retention_days and the times checkpoints were written.
struct FromRecords {
  int64_t retention_days = 0;
  std::string days_from;
  std::map<int64_t, RecordTime> checkpoints;  // round -> checkpoint_written
};

FromRecords ReadRecords(const std::vector<AuditRecord>& records, RetentionSide side) {
  FromRecords out;
  const char* log = side == RetentionSide::kSite ? kEgressLedger : kAuditLog;
  for (const AuditRecord& r : records) {
    if (side == RetentionSide::kCoordinator && r.event == ev::kFederationStarted &&
        out.days_from.empty()) {
      out.retention_days = StudyRetentionDays(r.fields);
      if (out.retention_days > 0) {
        out.days_from =
            absl::StrCat("the federation_started record's study facts (", log, " seq ", r.seq, ")");
      }
    } else if (side == RetentionSide::kSite && r.event == ev::kStudyFacts) {
      // The longest any study this site took part in asked for.
      const int64_t days = StudyRetentionDays(r.fields);
      if (days > out.retention_days) {
        out.retention_days = days;
        out.days_from = absl::StrCat("the study_facts record (", log, " seq ", r.seq,
                                     "), the longest of the studies this site recorded");
      }
    } else if (r.event == ev::kCheckpointWritten) {
      auto round = r.fields.find("round");
      auto time = ParseRecordTime(r.time);
      if (round != r.fields.end() && round->is_number_integer() && time.ok()) {
        out.checkpoints[round->get<int64_t>()] = {*time, r.seq};
      }
    }
  }
  return out;
}

StatusOr<int64_t> ConfiguredDays(const std::string& config_path, std::string* from) {
  if (config_path.empty()) return 0;
  ASSIGN_OR_RETURN(ConfigReader cfg, ConfigReader::Load(config_path));
  if (!cfg.Has("federation.retention_days")) return 0;
  const int64_t days = cfg.Int("federation.retention_days", 0, 1, kMaxRetentionDays);
  if (days < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path,
                     ": [federation] retention_days must be a whole number of days "
                     "from 1 to ",
                     kMaxRetentionDays));
  }
  *from = absl::StrCat(config_path, " [federation] retention_days");
  return days;
}

std::string Files(size_t n) { return absl::StrCat(n, n == 1 ? " file" : " files"); }

std::string Bytes(uint64_t bytes) {
  if (bytes < 10 * 1024) return absl::StrCat(bytes, " B");
  if (bytes < 10 * 1024 * 1024) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  if (bytes < uint64_t{10} * 1024 * 1024 * 1024)
    return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  return absl::StrFormat("%.1f GiB", bytes / 1073741824.0);
}

StatusOr<std::string> FileSha256(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("opening", path);
  Sha256Hasher hasher;
  std::string buffer(1 << 20, '\0');
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = Errno("reading", path);
      ::close(fd);
      return st;
    }
    if (n == 0) break;
    hasher.Update(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return ToHex(hasher.Finish());
}

}  // namespace

std::string RetentionLogPath(const std::string& state_dir, RetentionSide side) {
  return absl::StrCat(state_dir, "/", side == RetentionSide::kSite ? kEgressLedger : kAuditLog);
}

Status CheckLogNotHeld(const std::string& log_path) {
  const int fd = ::open(log_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no log at ", log_path));
    return Errno("opening", log_path);
  }
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);  // also releases the probe's lock
  if (held) {
    return absl::FailedPreconditionError(
        absl::StrCat(log_path,
                     " is open for writing by a running coordinator or client (it "
                     "holds the log's lock); stop it before applying retention"));
  }
  return absl::OkStatus();
}

uint64_t RetentionPlan::ExpiredBytes() const {
  uint64_t total = 0;
  for (const RetentionFile& f : expired) total += f.bytes;
  return total;
}

StatusOr<RetentionPlan> PlanRetention(const RetentionOptions& options) {
  const std::string log_path = RetentionLogPath(options.state_dir, options.side);
  if (!fs::exists(log_path)) {
    return absl::NotFoundError(absl::StrCat(
        "no ", options.side == RetentionSide::kSite ? "egress ledger" : "audit log", " at ",
        log_path, "; give the ", options.side == RetentionSide::kSite ? "site's" : "coordinator's",
        " state directory"));
  }
  ASSIGN_OR_RETURN(std::vector<AuditRecord> records, ReadAuditRecordsUnverified(log_path));
  FromRecords from = ReadRecords(records, options.side);

  RetentionPlan plan;
  plan.state_dir = options.state_dir;
  plan.side = options.side;
  plan.retention_days = from.retention_days;
  plan.days_from = from.days_from;
  std::string config_from;
  ASSIGN_OR_RETURN(int64_t configured, ConfiguredDays(options.config_path, &config_from));
  if (plan.retention_days == 0 && configured > 0) {
    plan.retention_days = configured;
    plan.days_from = config_from;
  } else if (plan.retention_days > 0 && configured > 0 && configured != plan.retention_days) {
    absl::StrAppend(&plan.days_from, "; ", config_from, " now says ", configured,
                    ", but the record is what the sites consented to");
  }
  if (plan.retention_days == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no retention_days: ",
        options.side == RetentionSide::kSite
            ? absl::StrCat("no study_facts record in ", log_path, " states one")
            : absl::StrCat("the federation_started record in ", log_path, " states none, and ",
                           options.config_path.empty()
                               ? std::string("no coordinator.toml was given (--config)")
                               : absl::StrCat(options.config_path,
                                              " has no [federation] "
                                              "retention_days"))));
  }
  plan.cutoff = options.now - absl::Hours(24) * plan.retention_days;

  // Every regular file under the state dir, by its path relative to it.
  std::map<std::string, struct stat> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(options.state_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string rel = it->path().lexically_relative(options.state_dir).string();
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) return Errno("reading", it->path().string());
    if (S_ISLNK(st.st_mode)) {
      plan.kept.push_back({rel, "a symbolic link: what it points to is not the state's own"});
    } else if (S_ISREG(st.st_mode)) {
      files.emplace(rel, st);
    }
  }
  if (ec)
    return absl::InternalError(absl::StrCat("listing ", options.state_dir, ": ", ec.message()));

  int64_t newest_round = -1;
  for (const auto& [rel, st] : files) {
    if (absl::StartsWith(rel, "checkpoints/round-")) {
      newest_round = std::max(newest_round, CheckpointRound(rel));
    }
  }
  for (const auto& [rel, st] : files) {
    std::string why = NeverDeleted(rel, options.side);
    const int64_t round = CheckpointRound(rel);
    if (why.empty() && options.side == RetentionSide::kCoordinator && round >= 0 &&
        round == newest_round) {
      why = "the newest checkpoint: the coordinator resumes from it (with state.db)";
    }
    if (!why.empty()) {
      plan.kept.push_back({rel, std::move(why)});
      continue;
    }
    RetentionFile file;
    file.path = rel;
    file.bytes = static_cast<uint64_t>(st.st_size);
    auto record = round >= 0 ? from.checkpoints.find(round) : from.checkpoints.end();
    if (record != from.checkpoints.end()) {
      file.made = record->second.time;
      file.age_from = absl::StrCat("checkpoint_written record, seq ", record->second.seq);
    } else {
      file.made = absl::FromUnixSeconds(st.st_mtim.tv_sec) + absl::Nanoseconds(st.st_mtim.tv_nsec);
      file.age_from = "file mtime";
    }
    (file.made < plan.cutoff ? plan.expired : plan.retained).push_back(std::move(file));
  }
  std::sort(plan.expired.begin(), plan.expired.end(),
            [](const RetentionFile& a, const RetentionFile& b) {
              return a.made != b.made ? a.made < b.made : a.path < b.path;
            });
  return plan;
}

std::string RetentionPlan::ToText() const {
  std::string out = absl::StrCat(
      "state directory ", state_dir, " (", side == RetentionSide::kSite ? "site" : "coordinator",
      ")\nretention: ", retention_days, " days, from ", days_from,
      "\npast retention: files made before ", FormatRecordTime(cutoff), "\n");
  if (expired.empty()) {
    absl::StrAppend(&out, "  none\n");
  } else {
    absl::StrAppend(&out, "  ", Files(expired.size()), ", ", Bytes(ExpiredBytes()), ":\n");
  }
  for (const RetentionFile& f : expired) {
    absl::StrAppendFormat(&out, "  %-40s %10s  made %s (%s)\n", f.path, Bytes(f.bytes),
                          FormatRecordTime(f.made), f.age_from);
  }
  absl::StrAppend(&out, "within retention: ", Files(retained.size()), "\n");
  absl::StrAppend(&out, "never deleted:\n");
  for (const KeptFile& k : kept) absl::StrAppendFormat(&out, "  %-40s %s\n", k.path, k.why);
  return out;
}

StatusOr<RetentionResult> ApplyRetention(const RetentionPlan& plan, AuditLog& log) {
  if (log.path() != RetentionLogPath(plan.state_dir, plan.side)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the retention of ", plan.state_dir, " is recorded in its own log, not in ", log.path()));
  }
  RetentionResult result;
  if (plan.expired.empty()) return result;
  std::vector<RetentionDeletedFile> recorded;
  std::set<std::string> dirs;
  Status failed;
  for (const RetentionFile& f : plan.expired) {
    const std::string path = absl::StrCat(plan.state_dir, "/", f.path);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      failed = absl::FailedPreconditionError(
          absl::StrCat(path, " is gone or no longer a regular file since it was listed"));
      break;
    }
    auto sha256 = FileSha256(path);
    if (!sha256.ok()) {
      failed = sha256.status();
      break;
    }
    if (::unlink(path.c_str()) != 0) {
      failed = Errno("deleting", path);
      break;
    }
    dirs.insert(fs::path(path).parent_path().string());
    result.deleted.push_back({f.path, static_cast<uint64_t>(st.st_size), *sha256});
    recorded.push_back(
        {RecordText(f.path, kMaxRecordedPathBytes), static_cast<uint64_t>(st.st_size), *sha256});
  }
  for (const std::string& dir : dirs) {
    Status synced = SyncDir(dir);
    if (failed.ok() && !synced.ok()) failed = synced;
  }
  if (recorded.empty()) {
    if (!failed.ok()) return failed;
    return result;
  }
  auto seq = log.Append(RetentionApplied(plan.retention_days,
                                         RecordText(plan.days_from, kMaxRecordedPathBytes),
                                         FormatRecordTime(plan.cutoff), recorded));
  if (!seq.ok()) {
    return Annotate(seq.status(), absl::StrCat(recorded.size(),
                                               " files were deleted but their record could not "
                                               "be written"));
  }
  result.record_seq = *seq;
  if (!failed.ok()) {
    return Annotate(failed, absl::StrCat("retention stopped; the ", recorded.size(),
                                         " files deleted before are recorded at seq ", *seq));
  }
  return result;
}

}  // namespace hansa
