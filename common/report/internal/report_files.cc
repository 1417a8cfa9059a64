#include "common/report/internal/report_files.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/audit/record.h"
#include "common/fileio/fileio.h"

namespace hansa::report_internal {

namespace fs = std::filesystem;
using nlohmann::json;

StatusOr<StateDir> OpenStateDir(const std::string& state_dir, const std::string& ca_path,
                                std::string_view hint) {
  StateDir out;
  out.dir = fs::path(state_dir).lexically_normal().string();
  if (!fs::is_directory(out.dir)) {
    return absl::NotFoundError(
        absl::StrCat("state directory ", out.dir, " does not exist (", std::string(hint), ")"));
  }
  out.ca_path = ca_path;
  if (out.ca_path.empty()) {
    fs::path p = fs::absolute(out.dir).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    out.ca_path = (p.parent_path() / "ca.pem").string();
  }
  if (!ca_path.empty() || fs::exists(out.ca_path)) {
    ASSIGN_OR_RETURN(Certificate loaded, Certificate::FromFile(out.ca_path));
    out.ca = std::move(loaded);
  }
  return out;
}

json ReportHead(std::string_view schema, const std::string& generated_at, const std::string& dir) {
  json report = json::object();
  report["schema"] = std::string(schema);
  report["generated_at"] = generated_at.empty() ? FormatRecordTime(absl::Now()) : generated_at;
  report["state_dir"] = dir;
  return report;
}

json Check(const char* check, const char* title, bool made, bool passed, std::string detail) {
  return {{"check", check},
          {"title", title},
          {"made", made},
          {"passed", made ? json(passed) : json()},
          {"detail", std::move(detail)}};
}

json ChainCheck(const std::string& missing, const StatusOr<AuditSummary>& chain) {
  return Check("chain_and_signatures", "Hash chain and signatures", missing.empty(), chain.ok(),
               !missing.empty() ? missing
               : chain.ok()
                   ? absl::StrCat(chain->records,
                                  " records: the chain is intact and every record is signed by "
                                  "the certificate in the first one, issued by the federation CA")
                   : std::string(chain.status().message()));
}

StatusOr<WrittenReport> WriteReportFiles(const json& report, const std::string& html,
                                         const std::string& out_dir, const std::string& log_key,
                                         std::string_view not_a_failure) {
  RETURN_IF_ERROR(MakeDirs(out_dir, 0755));
  WrittenReport written;
  written.json_path = (fs::path(out_dir) / "report.json").string();
  written.html_path = (fs::path(out_dir) / "report.html").string();
  RETURN_IF_ERROR(WriteFileAtomically(
      written.json_path, report.dump(2, ' ', false, json::error_handler_t::replace) + "\n"));
  RETURN_IF_ERROR(WriteFileAtomically(written.html_path, html));
  const json& log = report[log_key];
  written.audit_verified = log["verified"].get<bool>();
  if (!written.audit_verified) written.audit_error = log["error"].get<std::string>();
  for (const json& check : report["checks"]) {
    if (check["made"].get<bool>() && !check["passed"].get<bool>() &&
        check["check"].get<std::string>() != not_a_failure) {
      written.failed_checks.push_back(absl::StrCat(check["check"].get<std::string>(), ": ",
                                                   check["detail"].get<std::string>()));
    }
  }
  return written;
}

}  // namespace hansa::report_internal
