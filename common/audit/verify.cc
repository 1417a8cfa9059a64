#include "common/audit/verify.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/audit/events.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

namespace ev = audit_events;

std::string NormalizeFingerprint(const std::string& fingerprint) {
  return absl::AsciiStrToLower(absl::StrReplaceAll(fingerprint, {{":", ""}}));
}

// A federation_finished record that states its count and head (older ones do not, and close
// nothing). Both must be the record's own: `records` its seq, `head` its prev.
StatusOr<bool> CheckClosing(const AuditRecord& r, const std::string& name, int64_t line) {
  if (r.event != ev::kFederationFinished) return false;
  auto records = r.fields.find(ev::kClosingRecords);
  auto head = r.fields.find(ev::kClosingHead);
  if (records == r.fields.end() && head == r.fields.end()) return false;
  const bool count_ok =
      records != r.fields.end() && records->is_number_integer() && records->get<int64_t>() == r.seq;
  const bool head_ok = head != r.fields.end() && head->is_string() && *head == r.prev;
  if (count_ok && head_ok) return true;
  return absl::DataLossError(absl::StrCat(
      name, ": line ", line, " (seq ", r.seq, "): the closing record federation_finished states ",
      records == r.fields.end() ? "no" : records->dump(), " records and head ",
      head == r.fields.end() ? "none" : head->dump(), ", but it follows ", r.seq,
      " records ending in ", r.prev,
      "; records before it were removed or added, or the coordinator wrote it wrong"));
}

// Records that may follow the closing record without reopening the log: retention of the
// state dir's files, and refusals of connections (a site's certificate or admission refused).
// Neither carries anything of the federation's rounds, and a coordinator still serving after
// its last round refuses intruders on record. The closing record does not count them, so a
// cut among them is caught only against an anchor (expected_head), as for any log's tail.
bool MayFollowTheClose(const std::string& event) {
  return event == ev::kRetentionApplied || event == ev::kSiteRefused;
}

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
  summary.usage = options.usage;
  int64_t closing_seq = -1;
  int64_t last_of_run = -1;  // the last record that may not follow the close
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
    ASSIGN_OR_RETURN(bool closing, CheckClosing(*record, name, checker.lines()));
    if (closing) closing_seq = record->seq;
    if (!MayFollowTheClose(record->event)) last_of_run = record->seq;
    if (summary.records == 0) summary.first_time = record->time;
    summary.last_time = record->time;
    ++summary.records;
    ++summary.events[record->event];
    if (records != nullptr) records->push_back(*std::move(record));
    start = end + 1;
  }
  summary.signer = checker.signer()->Subject();
  summary.signer_fingerprint = checker.signer()->Sha256Fingerprint();
  summary.earlier_signers = checker.earlier_signers();
  summary.head = checker.head();
  // Retention and refusal records may follow the closing one: the federation's own records
  // end there.
  summary.closed = closing_seq >= 0 && closing_seq == last_of_run;
  if (summary.closed) summary.closing_record = closing_seq;
  if (!options.expected_fingerprint.empty()) {
    RETURN_IF_ERROR(CheckSignerFingerprint(summary, options.expected_fingerprint));
    summary.fingerprint_checked = true;
  }
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

Status CheckSignerFingerprint(const AuditSummary& summary, const std::string& fingerprint) {
  const std::string expected = NormalizeFingerprint(fingerprint);
  if (summary.signer_fingerprint == expected ||
      std::find(summary.earlier_signers.begin(), summary.earlier_signers.end(), expected) !=
          summary.earlier_signers.end()) {
    return absl::OkStatus();
  }
  return absl::DataLossError(
      absl::StrCat(summary.path, " is signed by certificate ", summary.signer_fingerprint, " ('",
                   summary.signer.common_name, "'), not by the expected ", expected,
                   "; the log was re-signed by another participant, or the fingerprint belongs to "
                   "another certificate"));
}

Status CheckSignerUsage(const std::vector<AuditRecord>& records, const Certificate& ca,
                        CertificateUsage usage) {
  for (const AuditRecord& r : records) {
    if (r.certificate_pem.empty()) continue;
    ASSIGN_OR_RETURN(Certificate cert, Certificate::FromPem(r.certificate_pem));
    ASSIGN_OR_RETURN(absl::Time at, ParseRecordTime(r.time));
    Status st = VerifyCertificate(cert, ca, at, usage);
    if (!st.ok()) {
      return absl::DataLossError(
          absl::StrCat("record seq ", r.seq, ": signer certificate: ", st.message()));
    }
  }
  return absl::OkStatus();
}

std::string AuditSummary::ToText() const {
  std::string out = absl::StrFormat(
      "%s: %d records, chain and signatures verified\n"
      "  signer  %s (organisation %s, country %s)\n"
      "          certificate SHA-256 %s\n",
      path, records, signer.common_name, signer.organization.empty() ? "-" : signer.organization,
      signer.country, signer_fingerprint);
  if (!earlier_signers.empty()) {
    absl::StrAppend(&out, "  renewed ", earlier_signers.size(),
                    earlier_signers.size() == 1 ? " time" : " times",
                    " (same key; earlier certificates ", absl::StrJoin(earlier_signers, ", "),
                    ")\n");
  }
  const char* role = usage == CertificateUsage::kTlsServer
                         ? "coordinator (certificate for TLS server authentication)"
                     : usage == CertificateUsage::kTlsClient
                         ? "site (certificate for TLS client authentication)"
                         : "any participant of the federation (not checked)";
  absl::StrAppend(&out, "  role    ", role, "\n  pinned  ",
                  fingerprint_checked ? "the signer's fingerprint is the expected one"
                                      : "no (no expected fingerprint given)",
                  "\n");
  absl::StrAppendFormat(&out, "  from    %s\n  to      %s\n  head    %s\n", first_time, last_time,
                        head);
  if (usage != CertificateUsage::kTlsClient) {
    absl::StrAppend(
        &out, "  end     ",
        closed ? absl::StrCat(
                     "complete: closed by federation_finished at record ", closing_record,
                     closing_record == records - 1
                         ? ""
                         : absl::StrCat(" (then ", records - 1 - closing_record,
                                        records - 1 - closing_record == 1 ? " record" : " records",
                                        " of retention or refused connections)"))
               : std::string("no closing record: the log may be truncated, or the "
                             "federation is still running"),
        "\n");
  }
  absl::StrAppend(&out, "  events:\n");
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

StatusOr<AuditSummary> VerifyAuditLogContents(std::string_view contents, const Certificate& ca,
                                              const std::string& name, const VerifyOptions& options,
                                              std::vector<AuditRecord>* records) {
  return Check(contents, ca, name, options, records);
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
