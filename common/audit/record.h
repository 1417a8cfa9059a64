// One record of a hash-chained, signed JSON Lines log (the coordinator's audit.jsonl, a site's
// egress.jsonl), its canonical bytes, and the chain rules shared by the writer and the verifier.
//
// A log is UTF-8 text: one record per line, each line ending in '\n', no blank lines. A line is
// one JSON object with these members:
//   seq          0, 1, 2, ...: the record's position in the log
//   time         UTC, RFC 3339 with milliseconds: "2025-11-28T15:19:00.123Z"; never decreasing
//   event        the event type, [a-z][a-z0-9_]* (events.h lists them and their fields)
//   fields       a JSON object: the event's fields
//   prev         lowercase hex SHA-256 of the previous line's bytes (without its '\n'); 64 zeros
//                for the first record
//   signer       lowercase hex SHA-256 fingerprint of the signer's X.509 certificate (DER)
//   certificate  the signer's certificate as PEM: in the first record, and in a signer_renewed
//                record (below) only
//   sig          lowercase hex Ed25519 signature (or DER ECDSA-SHA256 for a P-256 key) over the
//                record's canonical bytes
//
// Canonical bytes: the record without "sig", serialized as nlohmann::json::dump() does: no
// whitespace, object members sorted by key (bytewise), strings as UTF-8 with only '"', '\\' and
// control characters escaped (\b \f \n \r \t, others as \u00xx), integers in decimal, floating
// point numbers in their shortest round-trip form. The whole line is the same serialization of
// the record with "sig"; a verifier rejects any line that is not byte-identical to it, so one
// record has exactly one valid encoding. (In Python: json.dumps(obj, sort_keys=True,
// separators=(",", ":"), ensure_ascii=False) gives the same bytes for integer and string fields.)
//
// Every record of a log is signed by one key. Its certificate is the one embedded in the first
// record until a signer_renewed record (events.h) embeds a renewed certificate for the same key
// and the same subject (as `hansa ca renew` issues: the key stays): that record and every
// record after it name and are checked against the renewed certificate, so a log outlives its
// signer's certificates. A certificate for another key (or another subject) starts a new log
// file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/status/status.h"
#include "nlohmann/json.hpp"

namespace hansa {

inline constexpr char kGenesisPrev[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditRecord {
  int64_t seq = 0;
  std::string time;  // as written, "2025-11-28T15:19:00.123Z"
  std::string event;
  nlohmann::json fields = nlohmann::json::object();
  std::string prev;
  std::string signer;
  std::string certificate_pem;  // first record only
  std::string sig;              // lowercase hex
};

// "2025-11-28T15:19:00.123Z" (milliseconds, truncated).
std::string FormatRecordTime(absl::Time t);
// Parses FormatRecordTime's output exactly; InvalidArgument for anything else.
StatusOr<absl::Time> ParseRecordTime(std::string_view text);

// InvalidArgument unless `event` matches [a-z][a-z0-9_]{0,63}.
Status ValidateEventName(std::string_view event);

// The bytes the signature covers (the record without "sig").
// InvalidArgument when a string is not valid UTF-8.
StatusOr<std::string> CanonicalRecordBytes(const AuditRecord& record);
// The whole line, without its '\n'.
StatusOr<std::string> FormatRecordLine(const AuditRecord& record);
// Parses one line into a record, checking the members' presence and types but nothing about
// the chain. InvalidArgument names what is wrong.
StatusOr<AuditRecord> ParseRecordLine(std::string_view line);

// Hex SHA-256 of a line (without its '\n'): the next record's `prev`.
std::string LineDigest(std::string_view line);

// The PEM certificate of the log's current signer: the last of `records` that embeds one (the
// first record or the last signer_renewed); empty when none does.
const std::string& CurrentSignerCertificate(const std::vector<AuditRecord>& records);

// OK when `renewed` can take over signing a log from `current`: the same public key and the
// same subject. FailedPrecondition naming the difference otherwise.
Status CheckSameSigner(const Certificate& current, const Certificate& renewed);

// Checks a log one line at a time, in order: canonical encoding, seq, prev, time order, one
// signing key, its certificates and every signature. Errors are DataLoss
// "line N (seq S): what is wrong" naming the first bad record (S is the expected seq).
// Not thread-safe; one owner.
class ChainChecker {
 public:
  struct Options {
    // When set, the first record's certificate and every renewed one must chain to this CA,
    // each valid at the times of the records it signs.
    const Certificate* ca = nullptr;
    // Checked against each signer certificate's extendedKeyUsage when `ca` is set.
    CertificateUsage usage = CertificateUsage::kAny;
  };

  explicit ChainChecker(Options options) : options_(options) {}

  // `line` without its '\n'.
  StatusOr<AuditRecord> Next(std::string_view line);

  int64_t lines() const { return lines_; }
  int64_t next_seq() const { return next_seq_; }
  // LineDigest of the last accepted line (kGenesisPrev before the first).
  const std::string& head() const { return head_; }
  absl::Time last_time() const { return last_time_; }
  // The current signer's certificate once the first record was accepted (the renewed one
  // after a signer_renewed record).
  const std::optional<Certificate>& signer() const { return signer_; }
  // Fingerprints of the certificates that signed before the current one, oldest first (empty
  // for a log that was never renewed).
  const std::vector<std::string>& earlier_signers() const { return earlier_signers_; }

 private:
  Status Fail(absl::string_view what) const;
  // The certificate `record` embeds, checked against its `signer` and, when set, the CA.
  StatusOr<Certificate> EmbeddedCertificate(const AuditRecord& record, absl::Time at) const;
  Status AcceptSigner(const AuditRecord& record, absl::Time at);
  Status AcceptRenewal(const AuditRecord& record, absl::Time at);

  Options options_;
  int64_t lines_ = 0;
  int64_t next_seq_ = 0;
  std::string head_ = kGenesisPrev;
  absl::Time last_time_ = absl::InfinitePast();
  std::optional<Certificate> signer_;
  std::optional<PublicKey> key_;
  std::vector<std::string> earlier_signers_;
};

}  // namespace hansa
