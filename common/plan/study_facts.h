// The study's GDPR facts (v1::StudyFacts: the study's identifier, the purpose of the
// processing, its legal basis, the controllers, how long records are kept, the DPIA's
// reference), as both sides read them: their bounds, their digest, the JSON the records keep
// (the coordinator's federation_started `study`, a site's study_facts, common/audit/events.h)
// and whether they state a legal basis. The coordinator takes them from coordinator.toml
// [federation] and puts them in every plan (plan_writer.h), so a site's consent (PlanSha256)
// covers them.
//
// Plain functions: safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"
#include "nlohmann/json.hpp"

namespace hansa {

// Bounds in bytes of UTF-8 (coordinator.toml refuses more; a site records no more).
inline constexpr size_t kMaxPurposeBytes = 4096;
inline constexpr size_t kMaxLegalBasisBytes = 512;
inline constexpr size_t kMaxControllers = 32;
inline constexpr size_t kMaxControllerBytes = 256;
inline constexpr size_t kMaxDpiaReferenceBytes = 256;
inline constexpr int64_t kMaxRetentionDays = 36500;
inline constexpr size_t kMaxStudyIdBytes = 64;

// OK when `id` names a study as coordinator.toml federation.study and site.toml policy.study
// must: 1 to kMaxStudyIdBytes ASCII letters, digits, '.', '_' or '-' (e.g. "fmnist-2027-01");
// else InvalidArgument naming `key` and what is wrong.
Status CheckStudyId(const std::string& key, const std::string& id);

// What of a purpose and a legal basis the facts leave unstated (blank text is unstated):
// "" when both are stated, else "purpose", "legal_basis" or "purpose and legal_basis".
std::string MissingStudyFacts(const v1::StudyFacts& facts);

// Lowercase hex SHA-256 of the facts' serialization: the name of one study's facts.
std::string StudyFactsSha256(const v1::StudyFacts& facts);
// Lowercase hex SHA-256 of the purpose's text (UTF-8, as stated): what a site's policy pins
// (policy.purpose_sha256) to take part only in a study of that purpose.
std::string PurposeSha256(const v1::StudyFacts& facts);

// {id, purpose, purpose_sha256, legal_basis, controllers[], retention_days, dpia_reference}
// (purpose_sha256 of the whole purpose as sent, PurposeSha256): every text made fit
// for a record (valid UTF-8, RecordText) within the bounds above, and at most kMaxControllers
// controllers, so that a peer's oversized facts are recorded cut, never refused by the log.
nlohmann::json StudyFactsJson(const v1::StudyFacts& facts);

}  // namespace hansa
