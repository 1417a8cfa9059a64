#include "common/plan/study_facts.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/audit/record_text.h"
#include "common/crypto/sha256.h"

namespace hansa {
namespace {

bool Blank(const std::string& text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; });
}

bool StudyIdCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

Status CheckStudyId(const std::string& key, const std::string& id) {
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", key, "' ", what,
                     "; a study's identifier is 1 to 64 letters, digits, '.', '_' or '-' (e.g. "
                     "\"fmnist-2027-01\")"));
  };
  if (id.empty()) return bad("is empty: name the study, or leave the key out");
  const auto wrong = std::find_if_not(id.begin(), id.end(), StudyIdCharacter);
  if (wrong != id.end()) {
    const bool cut = id.size() > kMaxStudyIdBytes;
    return bad(absl::StrCat("is '", absl::CHexEscape(id.substr(0, kMaxStudyIdBytes)),
                            cut ? "...'" : "'", ", which holds '",
                            absl::CHexEscape(std::string(1, *wrong)), "'"));
  }
  if (id.size() > kMaxStudyIdBytes) {
    return bad(absl::StrCat("has ", id.size(), " characters, more than ", kMaxStudyIdBytes));
  }
  return absl::OkStatus();
}

std::string MissingStudyFacts(const v1::StudyFacts& facts) {
  const bool purpose = !Blank(facts.purpose()), basis = !Blank(facts.legal_basis());
  if (purpose && basis) return "";
  if (purpose) return "legal_basis";
  return basis ? "purpose" : "purpose and legal_basis";
}

std::string StudyFactsSha256(const v1::StudyFacts& facts) {
  std::string bytes;
  facts.SerializeToString(&bytes);  // no map fields: the same facts, the same bytes
  return ToHex(Sha256(bytes));
}

std::string PurposeSha256(const v1::StudyFacts& facts) { return ToHex(Sha256(facts.purpose())); }

nlohmann::json StudyFactsJson(const v1::StudyFacts& facts) {
  nlohmann::json controllers = nlohmann::json::array();
  const int shown = std::min<int>(facts.controllers_size(), static_cast<int>(kMaxControllers));
  for (int i = 0; i < shown; ++i) {
    controllers.push_back(RecordText(facts.controllers(i), kMaxControllerBytes));
  }
  return {{"id", RecordText(facts.id(), kMaxStudyIdBytes)},
          {"purpose", RecordText(facts.purpose(), kMaxPurposeBytes)},
          {"purpose_sha256", PurposeSha256(facts)},
          {"legal_basis", RecordText(facts.legal_basis(), kMaxLegalBasisBytes)},
          {"controllers", std::move(controllers)},
          {"retention_days", facts.retention_days()},
          {"dpia_reference", RecordText(facts.dpia_reference(), kMaxDpiaReferenceBytes)}};
}

}  // namespace hansa
