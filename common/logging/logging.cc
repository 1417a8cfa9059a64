#include "common/logging/logging.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

constexpr char kTextPattern[] = "%Y-%m-%dT%H:%M:%S.%e [%n] %^%l%$ %v";

// syslog(3) priorities, as journald reads them from a "<N>" prefix.
char Priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return '2';
    case spdlog::level::err:
      return '3';
    case spdlog::level::warn:
      return '4';
    case spdlog::level::info:
      return '6';
    default:
      return '7';
  }
}

void Append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

// "<6>[site] info message": journald adds the time and keeps the priority.
class JournalFormatter final : public spdlog::formatter {
 public:
  explicit JournalFormatter(std::string name) : name_(std::move(name)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const char prefix[] = {'<', Priority(msg.level), '>', '['};
    Append(dest, std::string_view(prefix, sizeof prefix));
    Append(dest, name_);
    Append(dest, "] ");
    const auto level = spdlog::level::to_string_view(msg.level);
    Append(dest, std::string_view(level.data(), level.size()));
    dest.push_back(' ');
    // One event, one line: a message's own line breaks would start records without a level.
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      dest.push_back(c == '\n' || c == '\r' ? ' ' : c);
    }
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JournalFormatter>(name_);
  }

 private:
  const std::string name_;
};

// {"time":"2026-12-05T14:22:05.123Z","level":"info","program":"site","message":"..."}
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string name) : name_(std::move(name)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch = msg.time.time_since_epoch();
    const time_t seconds =
        static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count());
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
    struct tm utc;
    gmtime_r(&seconds, &utc);
    char time[40];
    const int n = std::snprintf(time, sizeof time, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                utc.tm_min, utc.tm_sec, static_cast<int>(millis));
    Append(dest, "{\"time\":\"");
    Append(dest, std::string_view(time, static_cast<size_t>(n)));
    Append(dest, "\",\"level\":\"");
    const auto level = spdlog::level::to_string_view(msg.level);
    Append(dest, std::string_view(level.data(), level.size()));
    Append(dest, "\",\"program\":");
    Append(dest, program_);
    Append(dest, ",\"message\":");
    // nlohmann escapes quotes, backslashes and control characters; `replace` turns bytes that
    // are not UTF-8 into U+FFFD instead of throwing, so every line stays valid JSON.
    Append(dest, nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    Append(dest, "}\n");
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(name_);
  }

 private:
  const std::string name_;
  const std::string program_ =
      nlohmann::json(name_).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
};

}  // namespace

bool IsJournalStream(const char* journal_stream, int fd) {
  if (journal_stream == nullptr) return false;
  unsigned long long device = 0, inode = 0;  // NOLINT(runtime/int): strtoull's type
  char tail = 0;
  if (std::sscanf(journal_stream, "%llu:%llu%c", &device, &inode, &tail) != 2) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == device &&  // NOLINT(runtime/int)
         static_cast<unsigned long long>(st.st_ino) == inode;     // NOLINT(runtime/int)
}

StatusOr<LogFormat> ParseLogFormat(const std::string& name) {
  if (name == "json") return LogFormat::kJson;
  if (name == "text") {
    return IsJournalStream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO) ? LogFormat::kJournal
                                                                         : LogFormat::kText;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--log-format '", name, "' is not a log format: use text or json"));
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format, const std::string& name) {
  switch (format) {
    case LogFormat::kJournal:
      return std::make_unique<JournalFormatter>(name);
    case LogFormat::kJson:
      return std::make_unique<JsonFormatter>(name);
    case LogFormat::kText:
      break;
  }
  return std::make_unique<spdlog::pattern_formatter>(kTextPattern);
}

void InitLogging(const std::string& name, const std::string& level, LogFormat format) {
  // Colours only for a terminal: journald and collectors get the bytes as formatted.
  std::shared_ptr<spdlog::logger> logger =
      format == LogFormat::kText ? spdlog::stderr_color_mt(name) : spdlog::stderr_logger_mt(name);
  logger->set_formatter(MakeLogFormatter(format, name));
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace hansa
