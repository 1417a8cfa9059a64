#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace hansa::testing {

std::string BuildPath(const std::string& relative) {
  const char* dir = std::getenv("HANSA_BUILD_DIR");
  return std::string(dir ? dir : "build") + "/" + relative;
}

std::string FreshDir(const std::string& suffix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir =
      ::testing::TempDir() + "hansa_it_" + info->test_suite_name() + "_" + info->name() + suffix;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

Process::Process(std::vector<std::string> argv, std::string log) : log_(std::move(log)) {
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::perror("execv");
    ::_exit(127);
  }
}

Process::~Process() {
  if (Running()) {
    ::kill(pid_, SIGKILL);
    Wait(10);
  }
}

void Process::Signal(int sig) {
  if (Running()) ::kill(pid_, sig);
}

bool Process::Running() {
  if (exit_ || pid_ <= 0) return false;
  return !Wait(0).has_value();
}

std::optional<int> Process::Wait(double seconds) {
  if (exit_) return exit_;
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_;
    }
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string Process::Log() const { return ReadText(log_); }

int RunCommand(const std::vector<std::string>& argv, std::string* output) {
  std::string log = ::testing::TempDir() + "hansa_run_" + std::to_string(::getpid()) + ".log";
  std::filesystem::remove(log);
  Process p(argv, log);
  std::optional<int> code = p.Wait(60);
  if (output) *output = ReadText(log);
  return code.value_or(-1);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void AppendText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app) << text;
}

void ReplaceInFile(const std::string& path, const std::string& from, const std::string& to) {
  std::string text = ReadText(path);
  size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << path;
  text.replace(at, from.size(), to);
  std::ofstream(path, std::ios::trunc) << text;
}

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

bool WaitFor(double seconds, const std::function<bool()>& done) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

std::string SiteName(const std::string& site) { return site.substr(0, site.find('@')); }

std::string Provision(const std::string& dir, const std::vector<std::string>& sites, int port,
                      const std::string& federation) {
  std::vector<std::string> argv = {BuildPath("tools/hansa"),
                                   "provision",
                                   "--out",
                                   dir + "/federation",
                                   "--federation",
                                   federation,
                                   "--coordinator",
                                   "coordinator:DE:Test Coordinator",
                                   "--listen",
                                   "127.0.0.1:" + std::to_string(port),
                                   "--shard-shared-data"};
  for (const auto& s : sites) {
    argv.push_back("--site");
    argv.push_back(SiteName(s) + ":" +
                   (s.find('@') == std::string::npos ? "DE" : s.substr(s.find('@') + 1)) +
                   ":Site " + SiteName(s));
  }
  std::string out;
  int code = RunCommand(argv, &out);
  EXPECT_EQ(code, 0) << out;
  return dir + "/federation";
}

std::unique_ptr<Process> StartTinyproxy(const std::string& dir, int port, int connect_port) {
  const std::string conf = dir + "/tinyproxy.conf";
  AppendText(conf, absl::StrCat("Port ", port, "\nListen 127.0.0.1\nAllow 127.0.0.1\n",
                                "ConnectPort ", connect_port, "\nTimeout 600\nMaxClients 20\n",
                                "LogFile \"", dir, "/tinyproxy.log\"\nLogLevel Connect\n"));
  auto proxy = std::make_unique<Process>(std::vector<std::string>{kTinyproxy, "-d", "-c", conf},
                                         dir + "/tinyproxy.out");
  // Listening: it accepts a TCP connection.
  EXPECT_TRUE(WaitFor(10, [&] {
    std::string out;
    return RunCommand({"/bin/bash", "-c", absl::StrCat("exec 3<>/dev/tcp/127.0.0.1/", port)},
                      &out) == 0;
  })) << proxy->Log();
  return proxy;
}

}  // namespace hansa::testing
