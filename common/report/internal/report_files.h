// What both compliance reports (the coordinator's, report.cc, and a site's, site_report.cc) do
// alike around their contents: open the state dir with the CA that checks its signatures, make
// the checks both make, and write report.json and report.html. Internal to common/report.
//
// Threading: no shared state; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/audit/verify.h"
#include "common/pki/certificate.h"
#include "common/report/report.h"
#include "common/status/status.h"
#include "nlohmann/json.hpp"

namespace hansa::report_internal {

struct StateDir {
  std::string dir;                // lexically normal
  std::string ca_path;            // the one given, else STATE_DIR/../ca.pem (a startup kit's)
  std::optional<Certificate> ca;  // the one given (it must load), else the kit's where present
};

// NotFound "state directory DIR does not exist (`hint`)" when `state_dir` is no directory.
StatusOr<StateDir> OpenStateDir(const std::string& state_dir, const std::string& ca_path,
                                std::string_view hint);

// The members every report starts with: schema, generated_at (`generated_at`, else now) and
// state_dir.
nlohmann::json ReportHead(std::string_view schema, const std::string& generated_at,
                          const std::string& dir);

// A check as the reports list it: {check, title, made, passed (null when not made), detail}.
nlohmann::json Check(const char* check, const char* title, bool made, bool passed,
                     std::string detail);

// The "chain_and_signatures" check of a signed log: not made where `missing` says what was
// missing to make it, else passed when `chain` (the log verified against the CA) is OK.
nlohmann::json ChainCheck(const std::string& missing, const StatusOr<AuditSummary>& chain);

// Writes out_dir/report.json and out_dir/report.html (`html`), each atomically. The verdict is
// report[`log_key`]'s; failed_checks lists each check made that failed but `not_a_failure`.
StatusOr<WrittenReport> WriteReportFiles(const nlohmann::json& report, const std::string& html,
                                         const std::string& out_dir, const std::string& log_key,
                                         std::string_view not_a_failure = {});

}  // namespace hansa::report_internal
