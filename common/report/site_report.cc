#include "common/report/site_report.h"

#include <filesystem>
#include <map>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/audit/events.h"
#include "common/audit/jurisdiction.h"
#include "common/audit/record.h"
#include "common/audit/verify.h"
#include "common/fileio/fileio.h"
#include "common/pki/certificate.h"
#include "common/report/internal/report_files.h"

namespace hansa {
namespace {

namespace ev = audit_events;
namespace fs = std::filesystem;
using nlohmann::json;
using report_internal::Check;

json Identity(const SubjectName& subject, const std::string& fingerprint) {
  return {{"name", subject.common_name},
          {"organisation", subject.organization},
          {"country", subject.country},
          {"country_name", CountryName(subject.country)},
          {"fingerprint", fingerprint}};
}

json Field(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() ? json() : *it;
}

std::string Str(const json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t Int(const json& object, const char* name, int64_t fallback = -1) {
  auto it = object.find(name);
  return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

// The ledger read once: verified against the CA when one is given (every check from the same
// bytes), or only parsed when it cannot be.
struct Ledger {
  json section;
  json checks = json::array();
  std::vector<AuditRecord> records;
};

std::vector<AuditRecord> ParseUnverified(std::string_view contents) {
  std::vector<AuditRecord> records;
  size_t start = 0;
  while (start < contents.size()) {
    size_t end = contents.find('\n', start);
    if (end == std::string_view::npos) end = contents.size();
    auto record = ParseRecordLine(contents.substr(start, end - start));
    if (record.ok()) records.push_back(*std::move(record));
    start = end + 1;
  }
  return records;
}

Ledger ReadLedger(const std::string& path, const std::optional<Certificate>& ca,
                  const std::string& ca_path, const std::string& fingerprint, bool live) {
  Ledger l;
  l.section = {{"path", path},          {"present", fs::exists(path)},
               {"verified", false},     {"error", nullptr},
               {"records", 0},          {"events", json::object()},
               {"first_time", nullptr}, {"last_time", nullptr},
               {"signer", nullptr},     {"head", nullptr}};
  std::string missing;
  StatusOr<std::string> contents = absl::NotFoundError("no ledger");
  if (!l.section["present"].get<bool>()) {
    missing = absl::StrCat("no egress ledger at ", path);
  } else if (contents = ReadFile(path); !contents.ok()) {
    missing = std::string(contents.status().message());
  } else if (live && !contents->empty() && contents->back() != '\n') {
    contents->resize(contents->rfind('\n') + 1);  // npos + 1: nothing complete yet
  } else if (!ca) {
    missing = absl::StrCat("no federation CA certificate (give --ca; looked for ", ca_path, ")");
  }
  StatusOr<AuditSummary> chain = absl::UnknownError("not checked");
  if (missing.empty()) {
    VerifyOptions any;
    any.usage = CertificateUsage::kAny;
    chain = VerifyAuditLogContents(*contents, *ca, path, any, &l.records);
  }
  l.checks.push_back(report_internal::ChainCheck(missing, chain));
  const std::string unchecked = missing.empty() ? "the chain did not verify" : missing;
  Status role = absl::UnknownError(unchecked);
  // The chain verified under any role; each certificate that signed it must be a site's.
  if (chain.ok()) role = CheckSignerUsage(l.records, *ca, CertificateUsage::kTlsClient);
  l.checks.push_back(Check("signer_role", "Signer is a site", chain.ok(), role.ok(),
                           !chain.ok() ? unchecked
                           : role.ok() ? "signed with a site's certificate (TLS client "
                                         "authentication), not a coordinator's"
                                       : std::string(role.message())));
  const bool pin = chain.ok() && !fingerprint.empty();
  Status pinned = pin ? CheckSignerFingerprint(*chain, fingerprint) : absl::OkStatus();
  l.checks.push_back(Check("signer_fingerprint", "Signer is this site", pin, pinned.ok(),
                           !chain.ok() ? unchecked
                           : !pin      ? "no site certificate given (--certificate)"
                           : pinned.ok()
                               ? absl::StrCat("certificate SHA-256 ", chain->signer_fingerprint)
                               : std::string(pinned.message())));

  if (!chain.ok()) {
    if (contents.ok()) l.records = ParseUnverified(*contents);
    l.section["records"] = l.records.size();
    l.section["error"] = !missing.empty() ? missing : std::string(chain.status().message());
    return l;
  }
  l.section["records"] = chain->records;
  l.section["events"] = chain->events;
  l.section["first_time"] = chain->first_time;
  l.section["last_time"] = chain->last_time;
  l.section["signer"] = Identity(chain->signer, chain->signer_fingerprint);
  l.section["head"] = chain->head;
  if (!role.ok() || !pinned.ok()) {
    l.section["error"] = std::string(!role.ok() ? role.message() : pinned.message());
    return l;
  }
  l.section["verified"] = true;
  return l;
}

json EmptyRound(int64_t study, int64_t round) {
  return {{"study", study},       {"round", round},         {"answer", nullptr},
          {"reason", nullptr},    {"plan_sha256", nullptr}, {"messages", 0},
          {"bytes", 0},           {"failed_sends", 0},      {"update", nullptr},
          {"metrics", nullptr},   {"epsilon", nullptr},     {"record_epsilon", nullptr},
          {"sent", json::array()}};
}

json EmptyGuarantee() {
  return {{"enabled", false},
          {"epsilon_over_rounds", json::array()},
          {"final_epsilon", nullptr},
          {"delta", nullptr}};
}

// The ledger's records folded into the report's sections, in one pass.
class Folder {
 public:
  void Add(const AuditRecord& r) {
    const json& x = r.fields;
    const int64_t round = Int(x, "round");
    if (r.event == ev::kFederationJoined) {
      Joined(r);
    } else if (r.event == ev::kStudyFacts) {
      const std::string sha = Str(x, "sha256");
      if (!study_sha_.empty() && sha != study_sha_) NewStudy();
      study_sha_ = sha;
      studies_.push_back({{"study", Study()},
                          {"time", r.time},
                          {"round", round},
                          {"sha256", sha},
                          {"facts", Field(x, "study")}});
    } else if (r.event == ev::kPolicyApplied) {
      policies_.push_back({{"time", r.time},
                           {"reason", Str(x, "reason")},
                           {"sha256", Str(x, "sha256")},
                           {"policy", Field(x, "policy")}});
    } else if (r.event == ev::kPlanAccepted || r.event == ev::kPlanRefused) {
      Plan(r, round);
    } else if (r.event == ev::kMessageSent) {
      Sent(r, round);
    } else if (r.event == ev::kSendFailed) {
      Failed(r, round);
    } else if (r.event == ev::kPrivacySpent && round >= 0) {
      Spent(r, round);
    }
  }

  void Finish(json& report) {
    json federations = json::array();
    for (auto& [key, f] : federations_) federations.push_back(std::move(f));
    std::sort(federations.begin(), federations.end(), [](const json& a, const json& b) {
      return a["first_joined"].get<std::string>() < b["first_joined"].get<std::string>();
    });
    report["federation"] = last_joined_;
    report["federations"] = std::move(federations);
    report["studies"] = std::move(studies_);
    report["policies"] = std::move(policies_);
    report["plans"] = std::move(plans_);
    json rounds = json::array();
    for (auto& [key, o] : rounds_) rounds.push_back(std::move(o));
    report["rounds"] = std::move(rounds);
    privacy_["enabled"] = privacy_["enabled"].get<bool>() || record_["enabled"].get<bool>();
    privacy_["record_level"] = std::move(record_);
    report["privacy"] = std::move(privacy_);
    report["totals"] = std::move(totals_);
  }

 private:
  int64_t Study() const { return study_ == 0 ? 1 : study_; }
  void NewStudy() {
    ++study_;
    highest_round_ = -1;
  }
  // A round number lower than one already seen in this study starts the next study (a
  // long-lived site's next one starts again at round 0 or 1).
  void See(int64_t round) {
    if (study_ == 0) study_ = 1;
    if (round < highest_round_) NewStudy();
    highest_round_ = std::max(highest_round_, round);
  }

  json& Round(int64_t round) {
    auto key = std::make_pair(Study(), round);
    auto it = rounds_.find(key);
    if (it == rounds_.end()) it = rounds_.emplace(key, EmptyRound(Study(), round)).first;
    return it->second;
  }

  void Joined(const AuditRecord& r) {
    const json& x = r.fields;
    const std::string federation = Str(x, "federation"), site = Str(x, "site");
    json& f = federations_[{federation, site}];
    if (f.is_null()) {
      f = {{"federation", federation},
           {"site", site},
           {"coordinator_country", Str(x, "coordinator_country")},
           {"first_joined", r.time},
           {"last_joined", r.time},
           {"joins", 0}};
    }
    f["last_joined"] = r.time;
    f["joins"] = f["joins"].get<int64_t>() + 1;
    last_joined_ = {{"name", federation},
                    {"site", site},
                    {"coordinator_country", Str(x, "coordinator_country")},
                    {"coordinator_country_name", CountryName(Str(x, "coordinator_country"))}};
  }

  void Plan(const AuditRecord& r, int64_t round) {
    const json& x = r.fields;
    See(round);
    const bool accepted = r.event == ev::kPlanAccepted;
    plans_.push_back({{"study", Study()},
                      {"round", round},
                      {"time", r.time},
                      {"plan_sha256", Str(x, "plan_sha256")},
                      {"accepted", accepted},
                      {"reason", accepted ? json() : Field(x, "reason")},
                      {"coordinator_audit_head", Field(x, ev::kCoordinatorAuditHead)}});
    accepted ? ++totals_["plans_accepted"].get_ref<json::number_integer_t&>()
             : ++totals_["plans_refused"].get_ref<json::number_integer_t&>();
    json& o = Round(round);
    o["answer"] = accepted ? "accepted" : "refused";
    o["reason"] = plans_.back()["reason"];
    o["plan_sha256"] = plans_.back()["plan_sha256"];
  }

  void Sent(const AuditRecord& r, int64_t round) {
    const json& x = r.fields;
    const std::string type = Str(x, "type");
    const int64_t bytes = Int(x, "bytes", 0);
    json& by_type = totals_["by_type"][type];
    if (by_type.is_null()) by_type = {{"messages", 0}, {"bytes", 0}};
    by_type["messages"] = by_type["messages"].get<int64_t>() + 1;
    by_type["bytes"] = by_type["bytes"].get<int64_t>() + bytes;
    totals_["messages"] = totals_["messages"].get<int64_t>() + 1;
    totals_["bytes"] = totals_["bytes"].get<int64_t>() + bytes;
    if (type == ev::kMessageJoin) {
      totals_["joins"] = totals_["joins"].get<int64_t>() + 1;
      return;
    }
    See(round);
    json& o = Round(round);
    json values = Field(x, "values");
    o["sent"].push_back({{"time", r.time},
                         {"type", type},
                         {"bytes", bytes},
                         {"sha256", Str(x, "sha256")},
                         {"values", values},
                         {"failed", nullptr}});
    o["messages"] = o["messages"].get<int64_t>() + 1;
    o["bytes"] = o["bytes"].get<int64_t>() + bytes;
    if (type == ev::kMessageUpload) {
      o["update"] = {
          {"bytes", bytes}, {"sha256", Str(x, "sha256")}, {"values", values}, {"failed", nullptr}};
    } else if (type == ev::kMessageMetrics && values.is_object()) {
      o["metrics"] = std::move(values);
    }
    last_sent_[{type, round, Str(x, "sha256")}] = {Study(), o["sent"].size() - 1};
  }

  void Failed(const AuditRecord& r, int64_t round) {
    const json& x = r.fields;
    totals_["failed_sends"] = totals_["failed_sends"].get<int64_t>() + 1;
    auto it = last_sent_.find({Str(x, "type"), round, Str(x, "sha256")});
    if (it == last_sent_.end()) return;  // a join, or a send the ledger does not hold
    json& o = rounds_[{it->second.first, round}];
    o["sent"][it->second.second]["failed"] = Field(x, "error");
    o["failed_sends"] = o["failed_sends"].get<int64_t>() + 1;
    if (Str(x, "type") == ev::kMessageUpload && o["update"].is_object() &&
        o["update"]["sha256"] == Str(x, "sha256")) {
      o["update"]["failed"] = Field(x, "error");
    }
  }

  void Spent(const AuditRecord& r, int64_t round) {
    const json& x = r.fields;
    See(round);
    // Record-level DP-SGD says so; client-level records (and older ones) do not.
    const bool record = Str(x, "guarantee") == "record-level";
    json& g = record ? record_ : privacy_;
    g["enabled"] = true;
    g["epsilon_over_rounds"].push_back({{"study", Study()},
                                        {"round", round},
                                        {"epsilon", Field(x, "epsilon")},
                                        {"delta", Field(x, "delta")}});
    g["final_epsilon"] = Field(x, "epsilon");
    g["delta"] = Field(x, "delta");
    Round(round)[record ? "record_epsilon" : "epsilon"] = Field(x, "epsilon");
  }

  int64_t study_ = 0;
  int64_t highest_round_ = -1;
  std::string study_sha_;
  std::map<std::pair<std::string, std::string>, json> federations_;
  json last_joined_;
  json studies_ = json::array();
  json policies_ = json::array();
  json plans_ = json::array();
  std::map<std::pair<int64_t, int64_t>, json> rounds_;  // (study, round), in ledger order
  // The last message_sent of each (type, round, sha256): where its send_failed belongs.
  std::map<std::tuple<std::string, int64_t, std::string>, std::pair<int64_t, size_t>> last_sent_;
  json privacy_ = EmptyGuarantee();
  json record_ = EmptyGuarantee();
  json totals_ = {{"messages", 0},
                  {"bytes", 0},
                  {"joins", 0},
                  {"plans_accepted", 0},
                  {"plans_refused", 0},
                  {"failed_sends", 0},
                  {"by_type", json::object()}};
};

}  // namespace

StatusOr<json> BuildSiteReport(const SiteReportOptions& options) {
  ASSIGN_OR_RETURN(const report_internal::StateDir state,
                   report_internal::OpenStateDir(options.state_dir, options.ca_path,
                                                 "give the site's state_dir from site.toml"));
  json report = report_internal::ReportHead("hansa.site_report/1", options.generated_at, state.dir);
  Ledger ledger = ReadLedger((fs::path(state.dir) / "egress.jsonl").string(), state.ca,
                             state.ca_path, options.site_fingerprint, options.live);
  report["site"] = nullptr;
  if (!CurrentSignerCertificate(ledger.records).empty()) {
    auto cert = Certificate::FromPem(CurrentSignerCertificate(ledger.records));
    if (cert.ok()) report["site"] = Identity(cert->Subject(), cert->Sha256Fingerprint());
  }
  report["ca"] = state.ca ? Identity(state.ca->Subject(), state.ca->Sha256Fingerprint()) : json();
  Folder folder;
  for (const AuditRecord& r : ledger.records) folder.Add(r);
  folder.Finish(report);
  report["ledger"] = std::move(ledger.section);
  report["checks"] = std::move(ledger.checks);
  return report;
}

StatusOr<WrittenReport> WriteSiteReport(const SiteReportOptions& options,
                                        const std::string& out_dir) {
  ASSIGN_OR_RETURN(json report, BuildSiteReport(options));
  return report_internal::WriteReportFiles(report, RenderSiteReportHtml(report), out_dir, "ledger");
}

}  // namespace hansa
