// Logs for people (spdlog), separate from audit records and metrics. One call at process
// start; afterwards use spdlog::info/warn/error anywhere.
//
// Two formats on stderr:
//   text  "time [name] level message", for a terminal. When stderr is journald's stream
//         (JOURNAL_STREAM names stderr's device and inode, systemd.exec(5)), each line instead
//         starts with its syslog priority ("<3>" error, "<4>" warn, "<6>" info, "<7>" debug and
//         trace, "<2>" critical) and carries no time: journald keeps the level and adds the time.
//   json  one object per line: {"time": RFC 3339 UTC with milliseconds, "level", "program",
//         "message"}, every byte of the message escaped so the line is valid JSON (invalid
//         UTF-8 becomes U+FFFD), for log collectors.
//
// Threading: InitLogging once, before other threads log; the formatters are spdlog's to call
// (under its sink lock).
#pragma once

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "common/status/status.h"
#include "spdlog/fmt/fmt.h"
#include "spdlog/formatter.h"

namespace hansa {

enum class LogFormat { kText, kJournal, kJson };

// "text" or "json"; InvalidArgument naming the value otherwise. "text" is kJournal when
// stderr is journald's stream.
StatusOr<LogFormat> ParseLogFormat(const std::string& name);

// True when `journal_stream` (JOURNAL_STREAM's value, "device:inode"; null when unset) names
// the file open as `fd`.
bool IsJournalStream(const char* journal_stream, int fd);

// The formatter of `format` for the program `name` (kText: the terminal pattern).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format, const std::string& name);

// Sets the default logger on stderr in `format`. `level` is one of trace, debug, info, warn,
// error; an unknown level falls back to info.
void InitLogging(const std::string& name, const std::string& level = "info",
                 LogFormat format = LogFormat::kText);

}  // namespace hansa

// Debian's abseil has its own string_view (not std::string_view); let spdlog print it, so
// spdlog::error("{}", status.message()) works.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
