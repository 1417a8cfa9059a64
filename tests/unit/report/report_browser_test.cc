// Renders report.html in headless Chromium (Debian packages chromium, chromium-driver) with
// name resolution disabled, and checks the page as the browser built it: charts, participant
// table, and no console messages (a blocked fetch or a script error would log one).
#include <stdio.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fileio/fileio.h"
#include "common/report/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"
#include "tests/unit/report/synthetic_state.h"

namespace hansa {
namespace {

using ::hansa::testing::MakeTempDir;
using ::testing::HasSubstr;

constexpr char kChromium[] = "/usr/bin/chromium";

int Count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// The DOM Chromium built from `html_path`; console lines go to `log_path`.
std::string DumpDom(const std::string& html_path, const std::string& profile,
                    const std::string& log_path) {
  std::string command = absl::StrCat(
      "timeout 90 ", kChromium,
      " --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions"
      " --disable-background-networking --disable-sync --user-data-dir=",
      profile, " --host-resolver-rules='MAP * ~NOTFOUND' --enable-logging=stderr --v=0",
      " --dump-dom 'file://", html_path, "' 2>", log_path);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  int rc = ::pclose(pipe);
  EXPECT_EQ(rc, 0) << command;
  return out;
}

TEST(ReportBrowserTest, ChromiumShowsTheChartsAndTheParticipantTable) {
  if (::access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << "chromium is not installed (apt-get install chromium chromium-driver); "
                    "the browser check of report.html did not run";
  }
  std::string root = MakeTempDir("report_browser");
  std::string state = WriteSyntheticState(root, "Policlinico & <Co>");
  auto written = WriteReport({state, "", ""}, root + "/out");
  ASSERT_TRUE(written.ok()) << written.status();

  std::string dom = DumpDom(written->html_path, root + "/profile", root + "/chromium.log");
  ASSERT_FALSE(dom.empty()) << "chromium printed no DOM; see " << root << "/chromium.log";

  EXPECT_THAT(dom, HasSubstr("<title>Compliance report: demo</title>"));
  // Three charts, each drawn: axis lines, the accuracy polyline, one bar per site and round.
  EXPECT_EQ(Count(dom, "<svg "), 3);
  EXPECT_THAT(dom, HasSubstr("id=\"chart-accuracy\""));
  EXPECT_THAT(dom, HasSubstr("id=\"chart-epsilon\""));
  EXPECT_THAT(dom, HasSubstr("id=\"chart-bytes\""));
  EXPECT_EQ(Count(dom, "<polyline"), 2);
  EXPECT_EQ(Count(dom, "<rect class=\"bar\""), 6);  // 3 sites x 2 rounds

  size_t table = dom.find("<table id=\"participants\">");
  ASSERT_NE(table, std::string::npos);
  std::string participants = dom.substr(table, dom.find("</table>", table) - table);
  EXPECT_EQ(Count(participants, "<tr>"), 4);  // header + berlin, milan, paris
  EXPECT_THAT(participants, HasSubstr("<td>berlin</td><td>Charité Berlin</td>"));
  EXPECT_THAT(participants, HasSubstr("<td>Policlinico &amp; &lt;Co&gt;</td>"));
  EXPECT_THAT(participants, HasSubstr("Italy (IT)"));
  EXPECT_THAT(dom, HasSubstr("class=\"verdict ok\""));
  EXPECT_THAT(dom, HasSubstr("What leaves a site"));

  auto log = ReadFile(root + "/chromium.log");
  ASSERT_TRUE(log.ok());
  for (absl::string_view line : absl::StrSplit(*log, '\n')) {
    EXPECT_THAT(std::string(line), ::testing::Not(HasSubstr(":CONSOLE")))
        << "the page logged a console message (blocked fetch or script error)";
  }
}

}  // namespace
}  // namespace hansa
