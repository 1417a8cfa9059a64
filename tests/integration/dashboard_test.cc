// The operator's dashboard in a real headless Chromium (Debian's chromium) during a running
// federation: a real coordinator with [monitoring] on loopback and three real sites. The page
// loads with no console message (a blocked fetch, a policy violation or a script error would log
// one), lists the three sites, and its accuracy chart has more points at a later round than at
// an earlier one. A screenshot taken during the run is kept as this test's artifact:
// build/artifacts/dashboard.png (the path is printed).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/integration/harness.h"
#include "tests/support/http_get.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kChromium[] = "/usr/bin/chromium";

// /status.json as the page reads it; null while the server does not answer.
nlohmann::json Status(int port) {
  const std::string reply = LoopbackHttp(port, "/status.json");
  const size_t body = reply.find("\r\n\r\n");
  if (reply.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) return nullptr;
  return nlohmann::json::parse(reply.substr(body + 4), nullptr, false);
}

// Rounds whose accuracy is known: the points the page's accuracy chart draws.
int EvaluatedRounds(const nlohmann::json& status) {
  int n = 0;
  if (!status.is_object()) return n;
  for (const auto& round : status["history"]) n += round["accuracy"].is_number() ? 1 : 0;
  return n;
}

// Runs headless Chromium on `url` with `action` (--dump-dom, --screenshot=...) after 5 s of the
// page's own (virtual) time, so that its fetches of /status.json have run; a fresh profile per
// run, every host name unresolvable (only 127.0.0.1 is reachable), console lines in `log`.
// Returns what Chromium printed (the DOM for --dump-dom).
std::string Chromium(const std::string& url, const std::string& action, const std::string& dir,
                     const std::string& log) {
  static int run = 0;
  const std::string command = absl::StrCat(
      "timeout 120 ", kChromium,
      " --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions"
      " --disable-background-networking --disable-sync --hide-scrollbars --user-data-dir=",
      dir, "/chromium-profile-", ++run,
      " --host-resolver-rules='MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'"
      " --enable-logging=stderr --v=0 --virtual-time-budget=5000 --window-size=1200,1650 ",
      action, " '", url, "' 2>", log);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  EXPECT_EQ(::pclose(pipe), 0) << command;
  return out;
}

// The data-points attribute of the <svg id="`id`"> in `dom`; -1 when absent.
int DataPoints(const std::string& dom, const std::string& id) {
  const size_t tag = dom.find("<svg id=\"" + id + "\"");
  if (tag == std::string::npos) return -1;
  const size_t end = dom.find('>', tag);
  const size_t at = dom.find("data-points=\"", tag);
  if (at == std::string::npos || at > end) return -1;
  return std::stoi(dom.substr(at + 13));
}

void ExpectNoConsoleMessage(const std::string& log_path) {
  for (absl::string_view line : absl::StrSplit(ReadText(log_path), '\n')) {
    EXPECT_THAT(std::string(line), Not(HasSubstr(":CONSOLE")))
        << "the page logged a console message (blocked fetch, policy violation or script error)";
  }
}

TEST(DashboardTest, ChromiumShowsTheSitesAndTheChartGainsAPointBetweenRounds) {
  if (::access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << "chromium is not installed (apt-get install chromium); the browser check of "
                    "the dashboard did not run";
  }
  const std::string dir = FreshDir();
  const int port = FreePort();
  const int web_port = FreePort();
  const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
  const std::string kit = Provision(dir, sites, port);
  const std::string coordinator_toml = kit + "/coordinator/coordinator.toml";
  // More rounds than the test needs: it ends the coordinator itself once it has seen two loads.
  AppendText(coordinator_toml,
             "\n[model]\nname = \"mlp\"\nseed = 3\n"
             "[rounds]\ntotal = 200\nmin_sites = 3\nupload_timeout_seconds = 60\n"
             "evaluate_timeout_seconds = 30\nwait_for_sites_seconds = 120\n"
             "site_idle_seconds = 60\n[training]\nepochs = 1\nbatch_size = 32\n"
             "[aggregation]\nmode = \"plaintext\"\n[monitoring]\nlisten = \"127.0.0.1:" +
                 std::to_string(web_port) + "\"\n");
  for (const std::string& site : sites) {
    const std::string path = kit + "/sites/" + site + "/site.toml";
    ReplaceInFile(path, "[policy]\n", "[policy]\nrequire_secure_aggregation = false\n");
    AppendText(path, "train_limit = 300\ntest_limit = 100\n[compute]\nthreads = 1\n");
  }
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                      dir + "/coordinator.log");
  std::vector<std::unique_ptr<Process>> running;
  for (const std::string& site : sites) {
    running.push_back(std::make_unique<Process>(
        std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                                 kit + "/sites/" + site + "/site.toml"},
        dir + "/" + site + ".log"));
  }
  const std::string url = absl::StrCat("http://127.0.0.1:", web_port, "/");

  nlohmann::json status;
  ASSERT_TRUE(WaitFor(240,
                      [&] {
                        status = Status(web_port);
                        return status.is_object() && status["sites"].size() == 3 &&
                               EvaluatedRounds(status) >= 1;
                      }))
      << status.dump() << "\n"
      << coordinator.Log();

  const std::string first = Chromium(url, "--dump-dom", dir, dir + "/chromium-1.log");
  ASSERT_THAT(first, HasSubstr("data-state=\"live\""))
      << "the page never drew /status.json; see " << dir << "/chromium-1.log\n"
      << first;
  ExpectNoConsoleMessage(dir + "/chromium-1.log");
  EXPECT_THAT(first, HasSubstr("<title>Hansa: test</title>"));
  for (const std::string& site : sites) {
    EXPECT_THAT(first, HasSubstr("<tr data-site=\"" + site + "\"><td>" + site + "</td><td>DE</td>"))
        << first;
  }
  EXPECT_THAT(first, HasSubstr("Site alpha"));  // the organisation column
  const int points = DataPoints(first, "chart-accuracy");
  ASSERT_GE(points, 1) << first;
  EXPECT_EQ(DataPoints(first, "chart-loss"), points) << first;
  EXPECT_THAT(first, HasSubstr("<polyline class=\"line\""));
  // The audit log's head: a SHA-256 in hex, not the dash of an unknown one.
  const size_t head = first.find("<code id=\"audit-head\">");
  ASSERT_NE(head, std::string::npos) << first;
  EXPECT_THAT(first.substr(head + 22, 65), ::testing::MatchesRegex("[0-9a-f]{64}<")) << first;

  // A later round: the page, loaded again, draws more points.
  ASSERT_TRUE(WaitFor(240,
                      [&] {
                        status = Status(web_port);
                        return EvaluatedRounds(status) > points;
                      }))
      << status.dump() << "\n"
      << coordinator.Log();
  const std::string second = Chromium(url, "--dump-dom", dir, dir + "/chromium-2.log");
  ASSERT_THAT(second, HasSubstr("data-state=\"live\"")) << second;
  ExpectNoConsoleMessage(dir + "/chromium-2.log");
  EXPECT_GT(DataPoints(second, "chart-accuracy"), points) << second;
  EXPECT_GT(DataPoints(second, "chart-loss"), points) << second;

  // The screenshot, kept beside the build as this test's artifact.
  const std::string artifacts = BuildPath("artifacts");
  std::filesystem::create_directories(artifacts);
  const std::string png = artifacts + "/dashboard.png";
  std::filesystem::remove(png);
  Chromium(url, "--screenshot=" + png, dir, dir + "/chromium-3.log");
  ExpectNoConsoleMessage(dir + "/chromium-3.log");
  ASSERT_TRUE(std::filesystem::exists(png)) << ReadText(dir + "/chromium-3.log");
  EXPECT_GT(std::filesystem::file_size(png), 10000u);
  EXPECT_EQ(ReadText(png).substr(1, 3), "PNG");
  std::cout << "[ artifact ] the dashboard during the run: " << png << std::endl;
  RecordProperty("dashboard_screenshot", png);

  coordinator.Signal(SIGTERM);
  EXPECT_EQ(coordinator.Wait(120).value_or(-1), 0) << coordinator.Log();
}

}  // namespace
}  // namespace hansa::testing
