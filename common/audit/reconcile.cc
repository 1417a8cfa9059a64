#include "common/audit/reconcile.h"

#include <map>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"

namespace hansa {
namespace {

namespace ev = audit_events;

int64_t IntField(const nlohmann::json& fields, const char* name) {
  auto it = fields.find(name);
  return it != fields.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
}

std::string StringField(const nlohmann::json& fields, const char* name) {
  auto it = fields.find(name);
  return it != fields.end() && it->is_string() ? it->get<std::string>() : std::string();
}

struct Upload {
  int64_t seq;
  int64_t bytes;
  bool failed = false;
  bool used = false;
};

using Key = std::pair<int64_t, std::string>;  // round, sha256

std::string Short(const std::string& digest) { return digest.substr(0, 16); }

// SHA-256 of each record's line: the next record's prev, or the line itself for the last.
std::vector<std::string> LineDigests(const std::vector<AuditRecord>& records) {
  std::vector<std::string> digests(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (i + 1 < records.size()) {
      digests[i] = records[i + 1].prev;
    } else if (auto line = FormatRecordLine(records[i]); line.ok()) {
      digests[i] = LineDigest(*line);
    }
  }
  return digests;
}

// OK when `head` carries the coordinator's signature over its records and sha256.
Status CheckHeadSignature(const nlohmann::json& head, const StatusOr<PublicKey>& coordinator) {
  RETURN_IF_ERROR(coordinator.status());
  const std::string signature = StringField(head, "signature");
  if (signature.empty() || signature.size() % 2 != 0 ||
      signature.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::InvalidArgumentError("it carries no signature of the coordinator");
  }
  return coordinator->Verify(
      AuditAnchorStatement(IntField(head, "records"), StringField(head, "sha256")),
      absl::HexStringToBytes(signature));
}

// The coordinator_audit_head entries of the ledger against the coordinator's log. Only a head
// the coordinator signed counts: a site cannot make one up to have the log look cut.
void CheckHeads(const std::vector<AuditRecord>& coordinator, const std::vector<AuditRecord>& egress,
                ReconcileResult& result) {
  const std::vector<std::string> digests = LineDigests(coordinator);
  const auto size = static_cast<int64_t>(coordinator.size());
  StatusOr<PublicKey> coordinator_key = absl::FailedPreconditionError("the log has no records");
  if (!coordinator.empty()) {
    StatusOr<Certificate> cert = Certificate::FromPem(coordinator.front().certificate_pem);
    coordinator_key = cert.ok() ? cert->GetPublicKey() : StatusOr<PublicKey>(cert.status());
  }
  const AuditRecord* beyond = nullptr;  // the highest head past the log's end
  int64_t beyond_count = 0;
  for (const AuditRecord& r : egress) {
    if (r.event != ev::kPlanAccepted && r.event != ev::kPlanRefused) continue;
    auto head = r.fields.find(ev::kCoordinatorAuditHead);
    if (head == r.fields.end() || !head->is_object()) continue;
    ++result.heads_shown;
    const int64_t records = IntField(*head, "records");
    const std::string sha = StringField(*head, "sha256");
    const int64_t round = IntField(r.fields, "round");
    if (Status signed_by = CheckHeadSignature(*head, coordinator_key); !signed_by.ok()) {
      result.differences.push_back(
          {ReconcileDifference::Kind::kUnsignedHead, round,
           absl::StrCat("round ", round, ": site ", result.site,
                        "'s ledger names a coordinator audit head (", records,
                        " records ending in ", sha, ", ledger seq ", r.seq,
                        ") that is not the coordinator's: ", signed_by.message(),
                        "; it says nothing about the coordinator's log")});
      continue;
    }
    if (records > size) {
      ++beyond_count;
      if (beyond == nullptr ||
          records > IntField(beyond->fields.at(ev::kCoordinatorAuditHead), "records")) {
        beyond = &r;
      }
      continue;
    }
    const std::string actual = records == 0  ? std::string(kGenesisPrev)
                               : records > 0 ? digests[records - 1]
                                             : std::string();
    if (records >= 0 && actual == sha) {
      ++result.heads_confirmed;
      continue;
    }
    result.differences.push_back(
        {ReconcileDifference::Kind::kHeadMismatch, round,
         absl::StrCat("round ", round, ": site ", result.site,
                      " was shown the coordinator's audit log at ", records, " records ending in ",
                      sha, " (ledger seq ", r.seq, "), but record seq ", records - 1,
                      " of the log has SHA-256 ", actual,
                      "; the log was rewritten after that point, or the site was shown another "
                      "log")});
  }
  if (beyond != nullptr) {
    const nlohmann::json& head = beyond->fields.at(ev::kCoordinatorAuditHead);
    const int64_t round = IntField(beyond->fields, "round");
    result.differences.push_back(
        {ReconcileDifference::Kind::kTruncated, round,
         absl::StrCat("the coordinator's audit log holds ", size, " records, but site ",
                      result.site, " was shown it at ", IntField(head, "records"),
                      " records ending in ", StringField(head, "sha256"), " (round ", round,
                      ", ledger seq ", beyond->seq, "; ", beyond_count,
                      " head(s) past the end in all): the log was cut after the site saw it")});
  }
}

}  // namespace

std::string ReconcileKindName(ReconcileDifference::Kind kind) {
  switch (kind) {
    case ReconcileDifference::Kind::kIdentity:
      return "identity";
    case ReconcileDifference::Kind::kNotInLedger:
      return "not_in_ledger";
    case ReconcileDifference::Kind::kNotAtCoordinator:
      return "not_at_coordinator";
    case ReconcileDifference::Kind::kSizeMismatch:
      return "size_mismatch";
    case ReconcileDifference::Kind::kTruncated:
      return "truncated";
    case ReconcileDifference::Kind::kHeadMismatch:
      return "head_mismatch";
    case ReconcileDifference::Kind::kUnsignedHead:
      return "unsigned_head";
  }
  return "unknown";
}

std::string ReconcileResult::ToText() const {
  std::string out = absl::StrFormat(
      "site %s (certificate %s): %d updates match, %d unconfirmed sends, %d of %d coordinator "
      "audit heads found, %d differences\n",
      site, site_fingerprint, matched, unconfirmed, heads_confirmed, heads_shown,
      differences.size());
  for (const ReconcileDifference& d : differences) {
    absl::StrAppend(&out, "  ", ReconcileKindName(d.kind), ": ", d.description, "\n");
  }
  return out;
}

ReconcileResult ReconcileRecords(const std::vector<AuditRecord>& coordinator,
                                 const std::vector<AuditRecord>& egress, const std::string& site,
                                 const std::string& site_fingerprint) {
  ReconcileResult result;
  result.site = site;
  result.site_fingerprint = site_fingerprint;

  std::set<std::string> signers;
  std::map<Key, std::vector<Upload>> uploads;
  for (const AuditRecord& r : egress) {
    signers.insert(r.signer);
    if (StringField(r.fields, "type") != ev::kMessageUpload) continue;
    Key key{IntField(r.fields, "round"), StringField(r.fields, "sha256")};
    if (r.event == ev::kMessageSent) {
      uploads[key].push_back({r.seq, IntField(r.fields, "bytes")});
    } else if (r.event == ev::kSendFailed) {
      auto it = uploads.find(key);
      if (it != uploads.end() && !it->second.empty()) it->second.back().failed = true;
    }
  }

  for (const AuditRecord& r : coordinator) {
    if (StringField(r.fields, "site") != site) continue;
    if (r.event == ev::kSiteAdmitted) {
      // A renewed ledger (signer_renewed) names each certificate the site held.
      std::string fp = StringField(r.fields, "fingerprint");
      if (fp != site_fingerprint && signers.count(fp) == 0) {
        result.differences.push_back(
            {ReconcileDifference::Kind::kIdentity, -1,
             absl::StrCat("coordinator record seq ", r.seq, " admitted '", site,
                          "' with certificate ", fp, ", but the ledger is signed by ",
                          site_fingerprint)});
      }
      continue;
    }
    if (r.event != ev::kUpdateReceived) continue;
    int64_t round = IntField(r.fields, "round");
    int64_t bytes = IntField(r.fields, "bytes");
    std::string sha = StringField(r.fields, "sha256");
    std::vector<Upload>& candidates = uploads[{round, sha}];
    // A send the site saw succeed is the better match: when the same update went out twice
    // (sent, failed, sent again after a coordinator restart), the failed one stays unconfirmed.
    Upload* same_size = nullptr;
    Upload* any = nullptr;
    for (Upload& u : candidates) {
      if (u.used) continue;
      if (any == nullptr) any = &u;
      if (u.bytes == bytes && (same_size == nullptr || (same_size->failed && !u.failed))) {
        same_size = &u;
      }
    }
    if (same_size != nullptr) {
      same_size->used = true;
      ++result.matched;
    } else if (any != nullptr) {
      any->used = true;
      result.differences.push_back(
          {ReconcileDifference::Kind::kSizeMismatch, round,
           absl::StrCat("round ", round, ": update ", Short(sha), "... is ", bytes,
                        " bytes at the coordinator (seq ", r.seq, ") but ", any->bytes,
                        " bytes in the site's ledger (seq ", any->seq, ")")});
    } else {
      result.differences.push_back(
          {ReconcileDifference::Kind::kNotInLedger, round,
           absl::StrCat("round ", round, ": the coordinator recorded an update from ", site, " (",
                        bytes, " bytes, sha256 ", Short(sha), "..., seq ", r.seq,
                        ") that the site's ledger does not show being sent")});
    }
  }

  for (const auto& [key, list] : uploads) {
    for (const Upload& u : list) {
      if (u.used) continue;
      if (u.failed) {
        ++result.unconfirmed;
        continue;
      }
      result.differences.push_back(
          {ReconcileDifference::Kind::kNotAtCoordinator, key.first,
           absl::StrCat("round ", key.first, ": the site sent an update (", u.bytes,
                        " bytes, sha256 ", Short(key.second), "..., ledger seq ", u.seq,
                        ") that the coordinator did not record")});
    }
  }
  CheckHeads(coordinator, egress, result);
  return result;
}

StatusOr<ReconcileResult> Reconcile(const std::string& coordinator_audit,
                                    const std::string& site_egress, const Certificate& ca) {
  VerifyOptions coordinator_options;
  coordinator_options.usage = CertificateUsage::kTlsServer;
  ASSIGN_OR_RETURN(std::vector<AuditRecord> coordinator,
                   ReadVerifiedAuditLog(coordinator_audit, ca, coordinator_options));
  VerifyOptions site_options;
  site_options.usage = CertificateUsage::kTlsClient;
  ASSIGN_OR_RETURN(std::vector<AuditRecord> egress,
                   ReadVerifiedAuditLog(site_egress, ca, site_options));
  ASSIGN_OR_RETURN(Certificate site_cert, Certificate::FromPem(CurrentSignerCertificate(egress)));
  return ReconcileRecords(coordinator, egress, site_cert.Subject().common_name,
                          site_cert.Sha256Fingerprint());
}

}  // namespace hansa
