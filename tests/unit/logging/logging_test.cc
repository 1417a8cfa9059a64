#include "common/logging/logging.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spdlog/details/log_msg.h"

namespace hansa {
namespace {

std::string Format(LogFormat format, spdlog::level::level_enum level, const std::string& text) {
  auto formatter = MakeLogFormatter(format, "site");
  spdlog::details::log_msg msg("site", level, spdlog::string_view_t(text.data(), text.size()));
  spdlog::memory_buf_t out;
  formatter->format(msg, out);
  return std::string(out.data(), out.size());
}

TEST(LogFormatTest, JsonKeepsEveryByteOfAMessageAsValidJson) {
  std::string text = "quote \" backslash \\ newline \n tab \t cr \r nul ";
  text.push_back('\0');
  text += " bell \x07 esc \x1b del \x7f utf-8 \xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80 end";
  const std::string line = Format(LogFormat::kJson, spdlog::level::warn, text);
  ASSERT_EQ(line.back(), '\n');
  // One event, one line: no raw line break or control byte inside.
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    EXPECT_GE(static_cast<unsigned char>(line[i]), 0x20) << "control byte at " << i;
  }
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j.at("message").get<std::string>(), text);
  EXPECT_EQ(j.at("level"), "warning");
  EXPECT_EQ(j.at("program"), "site");
  EXPECT_TRUE(std::regex_match(j.at("time").get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << j.at("time");
}

TEST(LogFormatTest, JsonReplacesBytesThatAreNotUtf8) {
  const std::string line = Format(LogFormat::kJson, spdlog::level::info, "bad \xff\xfe byte");
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j.at("message").get<std::string>(), "bad \xef\xbf\xbd\xef\xbf\xbd byte");
}

TEST(LogFormatTest, JournalLinesCarryTheSyslogPriorityAndNoTime) {
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::err, "disk full"),
            "<3>[site] error disk full\n");
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::warn, "w"), "<4>[site] warning w\n");
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::info, "i"), "<6>[site] info i\n");
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::debug, "d"), "<7>[site] debug d\n");
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::trace, "t"), "<7>[site] trace t\n");
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::critical, "c"), "<2>[site] critical c\n");
  // A message's own line break would start a journal entry without a priority.
  EXPECT_EQ(Format(LogFormat::kJournal, spdlog::level::info, "a\nb"), "<6>[site] info a b\n");
}

TEST(LogFormatTest, TextStartsWithTheTime) {
  const std::string line = Format(LogFormat::kText, spdlog::level::info, "hello");
  EXPECT_TRUE(std::regex_match(
      line, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \[site\] info hello\n)")))
      << line;
}

TEST(LogFormatTest, ParseNamesAnUnknownFormat) {
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  auto bad = ParseLogFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_NE(bad.status().message().find("'xml'"), absl::string_view::npos);
}

TEST(JournalStreamTest, MatchesOnlyTheSameDeviceAndInode) {
  char path[] = "/tmp/hansa_journal_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  const std::string same = absl::StrCat(st.st_dev, ":", st.st_ino);
  const std::string other = absl::StrCat(st.st_dev, ":", st.st_ino + 1);
  EXPECT_TRUE(IsJournalStream(same.c_str(), fd));
  EXPECT_FALSE(IsJournalStream(other.c_str(), fd));
  EXPECT_FALSE(IsJournalStream(nullptr, fd));
  EXPECT_FALSE(IsJournalStream("", fd));
  EXPECT_FALSE(IsJournalStream((same + "x").c_str(), fd));
  close(fd);
  unlink(path);
}

// "text" becomes journald's form exactly when JOURNAL_STREAM names this process's stderr.
TEST(JournalStreamTest, TextIsJournaldsFormWhenStderrIsTheJournal) {
  struct stat st;
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  ASSERT_EQ(setenv("JOURNAL_STREAM", absl::StrCat(st.st_dev, ":", st.st_ino).c_str(), 1), 0);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kJournal);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  // Inherited by a child whose stderr went elsewhere: not the journal.
  ASSERT_EQ(setenv("JOURNAL_STREAM", absl::StrCat(st.st_dev, ":", st.st_ino + 1).c_str(), 1), 0);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  ASSERT_EQ(unsetenv("JOURNAL_STREAM"), 0);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
}

}  // namespace
}  // namespace hansa
