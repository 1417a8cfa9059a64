#include "common/report/data_flow.h"

#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace hansa {
namespace {

using nlohmann::json;

// j[key], or null when j is no object or lacks the key. nlohmann::json's const operator[] is
// undefined behaviour for a missing key (it read freed memory when a report lacked "records"),
// and a report comes from files a reviewer may hand in incomplete.
const json& Get(const json& j, const char* key) {
  static const json* const kNull = new json();
  if (!j.is_object()) return *kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : *kNull;
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string Number(const json& v) {
  if (v.is_number_integer()) return absl::StrCat(v.get<int64_t>());
  if (v.is_number()) return absl::StrFormat("%.4g", v.get<double>());
  return "?";
}

// The facts the statement is worded from.
struct Facts {
  std::set<std::string> modes;  // "secure", "plaintext"
  std::vector<int64_t> plaintext_rounds;
  json secure;  // the last recorded secure-aggregation parameters
  int64_t min_threshold = 0;
  bool any_malicious_mode = false;
  json privacy_params;  // the last recorded privacy parameters
};

Facts Collect(const json& report) {
  Facts f;
  for (const json& r : report.value("rounds", json::array())) {
    std::string mode = Str(r, "aggregation");
    if (mode.empty()) continue;
    f.modes.insert(mode);
    if (mode == "plaintext") f.plaintext_rounds.push_back(r.value("round", int64_t{-1}));
    const json& s = Get(r, "secure_aggregation");
    if (s.is_object()) {
      f.secure = s;
      int64_t t = s.value("threshold", int64_t{0});
      if (t > 0 && (f.min_threshold == 0 || t < f.min_threshold)) f.min_threshold = t;
      f.any_malicious_mode = f.any_malicious_mode || s.value("malicious", false);
    }
    if (Get(r, "privacy").is_object()) f.privacy_params = Get(r, "privacy");
  }
  return f;
}

std::string StaysAtSite() {
  return "The training data (the records themselves, their features and labels) never leave "
         "the site that holds them. Each site trains the model on its own machines with Hansa's "
         "built-in training loop; the coordinator sends only the model and the training "
         "settings, and no code from the coordinator or from researchers runs at a site. No "
         "records, per-record values or per-record gradients are sent.";
}

// Central mechanisms add noise to the sum at the coordinator; the others at each site.
bool CentralNoise(const Facts& f) {
  return Str(f.privacy_params, "mechanism").find("central") != std::string::npos;
}

std::string LeavesSite(const Facts& f, bool privacy) {
  std::string update;
  if (f.modes.empty()) {
    return "The audit log records no round plans, so the form in which updates left the sites "
           "cannot be stated from the records. Sites send their model updates, evaluation "
           "metrics and their answers to round plans.";
  }
  std::string noise = privacy && !CentralNoise(f)
                          ? ", with noise for differential privacy added before masking"
                          : "";
  if (f.modes.count("secure")) {
    std::string clip = f.secure.is_object() ? Number(f.secure.value("clip", json())) : "C";
    std::string bits =
        f.secure.is_object() ? Number(f.secure.value("quantization_bits", json())) : "B";
    update = absl::StrCat(
        "its model update (the difference between its locally trained model and the global "
        "model it received), clipped to [-",
        clip, ", ", clip, "] per value, quantized to ", bits, "-bit integers", noise,
        ", and masked under secure aggregation (SecAgg+), so that on its own the update is "
        "indistinguishable from random numbers; the key material secure aggregation needs "
        "(public keys, key shares encrypted for other sites, and after the upload the shares "
        "that remove the masks from the sum",
        f.any_malicious_mode ? ", plus signatures over its view of the round" : "", ")");
  }
  if (f.modes.count("plaintext")) {
    if (!update.empty()) {
      absl::StrAppend(&update, "; in rounds ", absl::StrJoin(f.plaintext_rounds, ", "),
                      ", which ran without secure aggregation, ");
    }
    absl::StrAppend(&update,
                    "its model update without masking (protected in transit by TLS but readable "
                    "by the coordinator)");
  }
  return absl::StrCat(
      "For each round it takes part in, a site sends ", update,
      "; evaluation metrics of the global model on its local test data (accuracy, loss, number "
      "of examples, time taken); and its acceptance or refusal of each round's plan, with the "
      "reason. Each upload also states its size, its SHA-256 digest and training statistics "
      "(number of examples, training loss and time).");
}

std::string CoordinatorSees(const Facts& f) {
  std::string common =
      "The coordinator learns each site's name, organisation and country (from its "
      "certificate), when it took part, the size and digest of each upload, and the metrics "
      "each site reports";
  if (f.modes.count("secure") && !f.modes.count("plaintext")) {
    std::string t = f.min_threshold > 0 ? absl::StrCat(f.min_threshold) : "t";
    return absl::StrCat(
        common,
        ". It can unmask only the sum of the updates of the sites that completed a round, "
        "never an individual update: recovering one site's update would take the coordinator "
        "together with at least ",
        t, " colluding sites of that round. ",
        f.any_malicious_mode
            ? "Sites signed their view of each round, so a coordinator that deviates from the "
              "protocol cannot single out one site by showing sites different dropout sets."
            : "This assumes a coordinator that follows the protocol while trying to learn "
              "(honest-but-curious); the malicious-coordinator check was not enabled.");
  }
  if (f.modes.count("plaintext")) {
    return absl::StrCat(common,
                        ". In rounds without secure aggregation it also sees each site's "
                        "individual model update.");
  }
  return absl::StrCat(common, ".");
}

std::string Released(const json& report, const Facts& f) {
  const json& privacy = Get(report, "privacy");
  std::string out =
      "After each round the new global model is sent to the sites; the coordinator keeps "
      "checkpoints of it, the metrics and these records in its state directory. ";
  if (privacy.value("enabled", false) && Get(privacy, "final_epsilon").is_number()) {
    std::string mechanism = Str(f.privacy_params, "mechanism");
    std::string level = Str(f.privacy_params, "level");
    absl::StrAppend(
        &out, "Differential privacy was applied",
        mechanism.empty() ? "" : absl::StrCat(" (", mechanism, ")"),
        CentralNoise(f) ? ", with the noise added by the coordinator to the sum" : "",
        ". After the last recorded round the cumulative privacy cost is epsilon = ",
        Number(Get(privacy, "final_epsilon")), " at delta = ", Number(Get(privacy, "delta")),
        ", which bounds how much the released model can reveal about any single ",
        level.empty() ? "protected unit (a training record or a whole site, as configured)" : level,
        ".");
  } else if (privacy.value("enabled", false)) {
    absl::StrAppend(&out, "Differential privacy was configured but no privacy cost is recorded.");
  }
  const json record = privacy.value("record_level", json::object());
  const bool record_spent = record.value("enabled", false) && record.contains("final_epsilon") &&
                            Get(record, "final_epsilon").is_number();
  if (record_spent) {
    absl::StrAppend(&out,
                    " Every site trained with record-level differential privacy (DP-SGD: "
                    "each record's gradient clipped, Gaussian noise added at the site); after "
                    "the last recorded round its cumulative cost is epsilon = ",
                    Number(Get(record, "final_epsilon")),
                    " at delta = ", Number(Get(record, "delta")),
                    " for any single training record of a site.");
  }
  if (!privacy.value("enabled", false) && !record_spent) {
    absl::StrAppend(
        &out,
        "No differential privacy was applied. The released model can still carry information "
        "about individual training records (membership inference, reconstruction attacks); "
        "treat it as potentially personal data unless a separate assessment concludes "
        "otherwise.");
  }
  return out;
}

std::string Jurisdiction(const json& report) {
  const json& fed = Get(report, "federation");
  std::string out =
      "All messages travel over mutual TLS 1.3, authenticated by certificates issued by the "
      "federation's own certificate authority; there is no unencrypted channel.";
  if (Get(fed, "allowed_countries_text").is_string()) {
    absl::StrAppend(&out, " Sites may join only from: ",
                    Get(fed, "allowed_countries_text").get<std::string>(), ".");
  }
  size_t refused = Get(report, "refusals").size();
  if (refused > 0) {
    absl::StrAppend(&out, " ", refused, refused == 1 ? " join attempt was" : " join attempts were",
                    " refused (listed in this report).");
  }
  if (Get(fed, "coordinator").is_object()) {
    absl::StrAppend(&out, " The coordinator is in ", Str(Get(fed, "coordinator"), "country_name"),
                    " (", Str(Get(fed, "coordinator"), "country"), ").");
  }
  std::map<std::string, int> countries;
  for (const json& p : Get(report, "participants")) ++countries[Str(p, "country_name")];
  if (!countries.empty()) {
    std::vector<std::string> parts;
    for (const auto& [name, n] : countries) parts.push_back(absl::StrCat(name, " (", n, ")"));
    absl::StrAppend(&out, " Participating sites by country: ", absl::StrJoin(parts, ", "), ".");
  }
  return out;
}

std::string Records(const json& report) {
  const json& audit = Get(report, "audit");
  std::string out =
      "The coordinator signs every step in its audit log (audit.jsonl: hash-chained records, "
      "Ed25519 signatures). Each site keeps its own signed egress ledger (egress.jsonl) with "
      "the type, size and SHA-256 of every message that left it, written before the message "
      "is sent; `hansa audit reconcile` compares a ledger with the coordinator's records. ";
  if (audit.value("verified", false)) {
    absl::StrAppend(&out, "The audit log behind this report (", Number(Get(audit, "records")),
                    " records) verified against the federation CA.");
  } else {
    absl::StrAppend(&out, "The audit log behind this report did NOT verify: ", Str(audit, "error"),
                    ". The statements above rest on unverified records.");
  }
  return out;
}

}  // namespace

json DataFlowStatement(const json& report) {
  Facts facts = Collect(report);
  bool privacy = Get(report, "privacy").value("enabled", false);
  json paragraphs = json::array();
  auto add = [&paragraphs](const char* heading, std::string text) {
    paragraphs.push_back({{"heading", heading}, {"text", std::move(text)}});
  };
  add("What stays at each site", StaysAtSite());
  add("What leaves a site", LeavesSite(facts, privacy));
  add("What the coordinator can see", CoordinatorSees(facts));
  add("What is released", Released(report, facts));
  add("Transport and jurisdiction", Jurisdiction(report));
  add("Records", Records(report));
  return {{"title", "Data flow (appendix to the data-protection impact assessment)"},
          {"paragraphs", paragraphs}};
}

}  // namespace hansa
