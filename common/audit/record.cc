#include "common/audit/record.h"

#include <cctype>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/audit/events.h"
#include "common/crypto/sha256.h"

namespace hansa {
namespace {

constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E3SZ";

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

nlohmann::json ToJson(const AuditRecord& record, bool with_sig) {
  nlohmann::json j = nlohmann::json::object();
  j["seq"] = record.seq;
  j["time"] = record.time;
  j["event"] = record.event;
  j["fields"] = record.fields;
  j["prev"] = record.prev;
  j["signer"] = record.signer;
  if (!record.certificate_pem.empty()) j["certificate"] = record.certificate_pem;
  if (with_sig) j["sig"] = record.sig;
  return j;
}

StatusOr<std::string> Dump(const nlohmann::json& j) {
  try {
    return j.dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("record cannot be serialized (strings must be UTF-8): ", e.what()));
  }
}

StatusOr<std::string> StringMember(const nlohmann::json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (!required) return std::string();
    return absl::InvalidArgumentError(absl::StrCat("member \"", name, "\" is missing"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("member \"", name, "\" is not a string"));
  }
  return it->get<std::string>();
}

}  // namespace

std::string FormatRecordTime(absl::Time t) {
  return absl::FormatTime(kTimeFormat, t, absl::UTCTimeZone());
}

StatusOr<absl::Time> ParseRecordTime(std::string_view text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(kTimeFormat, std::string(text), absl::UTCTimeZone(), &t, &err) ||
      FormatRecordTime(t) != text) {
    return absl::InvalidArgumentError(absl::StrCat("time \"", std::string(text),
                                                   "\" is not UTC RFC 3339 with milliseconds (",
                                                   "2025-01-31T12:00:00.000Z)"));
  }
  return t;
}

Status ValidateEventName(std::string_view event) {
  bool ok = !event.empty() && event.size() <= 64 && event[0] >= 'a' && event[0] <= 'z';
  for (char c : event) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("event name \"", std::string(event),
                                                   "\" must match [a-z][a-z0-9_]* (64 at most)"));
  }
  return absl::OkStatus();
}

StatusOr<std::string> CanonicalRecordBytes(const AuditRecord& record) {
  return Dump(ToJson(record, /*with_sig=*/false));
}

StatusOr<std::string> FormatRecordLine(const AuditRecord& record) {
  return Dump(ToJson(record, /*with_sig=*/true));
}

StatusOr<AuditRecord> ParseRecordLine(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  AuditRecord r;
  auto seq = j.find("seq");
  if (seq == j.end() || !seq->is_number_integer()) {
    return absl::InvalidArgumentError("member \"seq\" is missing or not an integer");
  }
  r.seq = seq->get<int64_t>();
  ASSIGN_OR_RETURN(r.time, StringMember(j, "time", true));
  ASSIGN_OR_RETURN(r.event, StringMember(j, "event", true));
  ASSIGN_OR_RETURN(r.prev, StringMember(j, "prev", true));
  ASSIGN_OR_RETURN(r.signer, StringMember(j, "signer", true));
  ASSIGN_OR_RETURN(r.sig, StringMember(j, "sig", true));
  ASSIGN_OR_RETURN(r.certificate_pem, StringMember(j, "certificate", false));
  auto fields = j.find("fields");
  if (fields == j.end() || !fields->is_object()) {
    return absl::InvalidArgumentError("member \"fields\" is missing or not an object");
  }
  r.fields = *fields;
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* kKnown[] = {"seq",  "time",   "event", "fields",
                                   "prev", "signer", "sig",   "certificate"};
    bool known = false;
    for (const char* k : kKnown) known = known || it.key() == k;
    if (!known)
      return absl::InvalidArgumentError(absl::StrCat("unknown member \"", it.key(), "\""));
  }
  return r;
}

std::string LineDigest(std::string_view line) { return ToHex(Sha256(line)); }

Status ChainChecker::Fail(absl::string_view what) const {
  return absl::DataLossError(absl::StrCat("line ", lines_, " (seq ", next_seq_, "): ", what));
}

const std::string& CurrentSignerCertificate(const std::vector<AuditRecord>& records) {
  static const std::string kNone;
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    if (!it->certificate_pem.empty()) return it->certificate_pem;
  }
  return kNone;
}

Status CheckSameSigner(const Certificate& current, const Certificate& renewed) {
  if (!(renewed.Subject() == current.Subject())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the certificate for '", renewed.Subject().common_name, "' (organisation '",
        renewed.Subject().organization, "', country ", renewed.Subject().country,
        ") names another subject than the one that signs the log ('", current.Subject().common_name,
        "', organisation '", current.Subject().organization, "', country ",
        current.Subject().country, ")"));
  }
  auto current_key = current.GetPublicKey();
  auto renewed_key = renewed.GetPublicKey();
  if (!current_key.ok()) return current_key.status();
  if (!renewed_key.ok()) return renewed_key.status();
  if (current_key->ToPem() != renewed_key->ToPem()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the certificate ", renewed.Sha256Fingerprint(), " for '",
                     renewed.Subject().common_name, "' holds another key than certificate ",
                     current.Sha256Fingerprint(), " that signs the log"));
  }
  return absl::OkStatus();
}

StatusOr<Certificate> ChainChecker::EmbeddedCertificate(const AuditRecord& record,
                                                        absl::Time at) const {
  auto cert = Certificate::FromPem(record.certificate_pem);
  if (!cert.ok()) return Fail(absl::StrCat("embedded certificate: ", cert.status().message()));
  if (cert->Sha256Fingerprint() != record.signer) {
    return Fail("\"signer\" is not the fingerprint of the embedded certificate");
  }
  if (options_.ca != nullptr) {
    Status st = VerifyCertificate(*cert, *options_.ca, at, options_.usage);
    if (!st.ok()) return Fail(absl::StrCat("signer certificate: ", st.message()));
  }
  return cert;
}

Status ChainChecker::AcceptSigner(const AuditRecord& record, absl::Time at) {
  if (record.certificate_pem.empty()) {
    return Fail(
        "the first record does not carry the signer's certificate; the log's beginning "
        "is missing");
  }
  if (record.event == audit_events::kSignerRenewed) {
    return Fail("the first record is a signer_renewed; the log's beginning is missing");
  }
  ASSIGN_OR_RETURN(Certificate cert, EmbeddedCertificate(record, at));
  auto key = cert.GetPublicKey();
  if (!key.ok()) return Fail(absl::StrCat("signer certificate: ", key.status().message()));
  signer_ = std::move(cert);
  key_ = *std::move(key);
  return absl::OkStatus();
}

// The record is then checked, like every other, against the renewed certificate, and its
// signature with the key that both certificates hold.
Status ChainChecker::AcceptRenewal(const AuditRecord& record, absl::Time at) {
  if (record.event != audit_events::kSignerRenewed) {
    return Fail(
        "only the first record and signer_renewed records may carry a certificate; another "
        "signer took over here");
  }
  ASSIGN_OR_RETURN(Certificate cert, EmbeddedCertificate(record, at));
  const std::string current = signer_->Sha256Fingerprint();
  if (cert.Sha256Fingerprint() == current) {
    return Fail("signer_renewed embeds the certificate that already signs the log");
  }
  auto previous = record.fields.find(audit_events::kPreviousSigner);
  if (previous == record.fields.end() || !previous->is_string() || *previous != current) {
    return Fail(absl::StrCat("signer_renewed does not name the certificate it follows (", current,
                             ") as ", audit_events::kPreviousSigner));
  }
  Status same = CheckSameSigner(*signer_, cert);
  if (!same.ok()) return Fail(absl::StrCat("signer_renewed: ", same.message()));
  earlier_signers_.push_back(current);
  signer_ = std::move(cert);
  return absl::OkStatus();
}

StatusOr<AuditRecord> ChainChecker::Next(std::string_view line) {
  ++lines_;
  if (line.empty()) return Fail("empty line");
  auto parsed = ParseRecordLine(line);
  if (!parsed.ok()) return Fail(parsed.status().message());
  AuditRecord r = *std::move(parsed);
  auto canonical_line = FormatRecordLine(r);
  if (!canonical_line.ok()) return Fail(canonical_line.status().message());
  if (*canonical_line != line) {
    return Fail(
        "the line is not in canonical form (members sorted, no whitespace, minimal "
        "escapes); it was edited");
  }
  if (r.seq != next_seq_) {
    return Fail(absl::StrCat("seq is ", r.seq, "; a record was removed, inserted or moved"));
  }
  if (r.prev != head_) {
    return Fail(next_seq_ == 0
                    ? std::string("\"prev\" of the first record is not 64 zeros")
                    : std::string("\"prev\" is not the SHA-256 of the previous line; a record was "
                                  "removed, changed or moved"));
  }
  Status name = ValidateEventName(r.event);
  if (!name.ok()) return Fail(name.message());
  auto time = ParseRecordTime(r.time);
  if (!time.ok()) return Fail(time.status().message());
  if (*time < last_time_) return Fail("time goes backwards");
  if (r.sig.size() % 2 != 0 || !IsLowerHex(r.sig) || r.sig.empty()) {
    return Fail("\"sig\" is not lowercase hex");
  }
  if (next_seq_ == 0) {
    RETURN_IF_ERROR(AcceptSigner(r, *time));
  } else if (!r.certificate_pem.empty()) {
    RETURN_IF_ERROR(AcceptRenewal(r, *time));
  } else {
    if (r.signer != signer_->Sha256Fingerprint()) {
      return Fail(absl::StrCat(
          "signed by certificate ", r.signer, ", but the log's records here must be signed by ",
          signer_->Sha256Fingerprint(), " ('", signer_->Subject().common_name, "')"));
    }
  }
  if (*time < signer_->NotBefore() || *time > signer_->NotAfter()) {
    return Fail("the record's time is outside the signer certificate's validity");
  }
  auto canonical = CanonicalRecordBytes(r);
  if (!canonical.ok()) return Fail(canonical.status().message());
  Status sig = key_->Verify(*canonical, absl::HexStringToBytes(r.sig));
  if (!sig.ok()) return Fail("the signature does not verify; the record was changed or forged");
  ++next_seq_;
  head_ = LineDigest(line);
  last_time_ = *time;
  return r;
}

}  // namespace hansa
