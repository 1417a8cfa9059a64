#include "common/audit/verify.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

// Runs the checker over every line; fills `records` when given.
StatusOr<AuditSummary> Check(std::string_view contents, const Certificate& ca,
                             const std::string& name, const VerifyOptions& options,
                             std::vector<AuditRecord>* records) {
  if (!ca.IsCa()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the certificate given as CA ('", ca.Subject().common_name, "') is not a CA certificate"));
  }
  if (contents.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(name, " holds no records"));
  }
  ChainChecker::Options check;
  check.ca = &ca;
  check.usage = options.usage;
  ChainChecker checker(check);
  AuditSummary summary;
  summary.path = name;
  size_t start = 0;
  while (start < contents.size()) {
    size_t end = contents.find('\n', start);
    if (end == std::string_view::npos) {
      return absl::DataLossError(absl::StrCat(name, ": line ", checker.lines() + 1, " (seq ",
                                              checker.next_seq(),
                                              "): the last line is incomplete (no newline); the "
                                              "writer stopped mid-record or the file was cut"));
    }
    auto record = checker.Next(contents.substr(start, end - start));
    if (!record.ok()) return Annotate(record.status(), name);
    if (summary.records == 0) summary.first_time = record->time;
    summary.last_time = record->time;
    ++summary.records;
    ++summary.events[record->event];
    if (records != nullptr) records->push_back(*std::move(record));
    start = end + 1;
  }
  summary.signer = checker.signer()->Subject();
  summary.signer_fingerprint = checker.signer()->Sha256Fingerprint();
  summary.head = checker.head();
  if (!options.expected_signer.empty() && summary.signer.common_name != options.expected_signer) {
    return absl::DataLossError(absl::StrCat(name, " is signed by '", summary.signer.common_name,
                                            "', expected '", options.expected_signer, "'"));
  }
  if (!options.expected_head.empty() && summary.head != options.expected_head) {
    return absl::DataLossError(absl::StrCat(
        name, " ends at head ", summary.head, ", not at the expected ", options.expected_head,
        " (records were cut off at the end, or the anchor belongs to another log)"));
  }
  return summary;
}

}  // namespace

std::string AuditSummary::ToText() const {
  std::string out = absl::StrFormat(
      "%s: %d records, chain and signatures verified\n"
      "  signer  %s (organisation %s, country %s)\n"
      "          certificate SHA-256 %s\n"
      "  from    %s\n  to      %s\n  head    %s\n  events:\n",
      path, records, signer.common_name, signer.organization.empty() ? "-" : signer.organization,
      signer.country, signer_fingerprint, first_time, last_time, head);
  for (const auto& [event, count] : events) {
    absl::StrAppendFormat(&out, "    %-22s %d\n", event, count);
  }
  return out;
}

StatusOr<AuditSummary> VerifyAuditLogContents(std::string_view contents, const Certificate& ca,
                                              const std::string& name,
                                              const VerifyOptions& options) {
  return Check(contents, ca, name, options, nullptr);
}

StatusOr<AuditSummary> VerifyAuditLog(const std::string& path, const Certificate& ca,
                                      const VerifyOptions& options) {
  ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  return Check(contents, ca, path, options, nullptr);
}

StatusOr<std::vector<AuditRecord>> ReadVerifiedAuditLog(const std::string& path,
                                                        const Certificate& ca,
                                                        const VerifyOptions& options) {
  ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  std::vector<AuditRecord> records;
  RETURN_IF_ERROR(Check(contents, ca, path, options, &records).status());
  return records;
}

StatusOr<std::vector<AuditRecord>> ReadAuditRecordsUnverified(const std::string& path) {
  ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  std::vector<AuditRecord> records;
  size_t start = 0;
  while (start < contents.size()) {
    size_t end = contents.find('\n', start);
    if (end == std::string::npos) end = contents.size();
    auto record = ParseRecordLine(std::string_view(contents).substr(start, end - start));
    if (record.ok()) records.push_back(*std::move(record));
    start = end + 1;
  }
  return records;
}

}  // namespace hansa
