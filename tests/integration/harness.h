// Real processes on loopback for integration tests: provisioned federations, hansa-coordinator
// and hansa-client children with their logs, and a few file helpers.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace hansa::testing {

// Path of a binary in the build tree (from HANSA_BUILD_DIR, set by ctest).
std::string BuildPath(const std::string& relative);

// A fresh, empty directory under the test temp dir, named after the running test.
std::string FreshDir(const std::string& suffix = "");

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// A child process with stdout+stderr in `log`. Killed (SIGKILL) on destruction if running.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int sig);
  // Exit code (or 128 + signal) once it ended within `seconds`; nullopt on timeout.
  std::optional<int> Wait(double seconds);
  bool Running();
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
  std::optional<int> exit_;
};

// Runs a command to completion (timeout 60 s); returns its exit code and fills `output`.
int RunCommand(const std::vector<std::string>& argv, std::string* output);

std::string ReadText(const std::string& path);
void AppendText(const std::string& path, const std::string& text);
// Replaces the first `from` in the file with `to`; a test failure when `from` is not there.
void ReplaceInFile(const std::string& path, const std::string& from, const std::string& to);
std::vector<nlohmann::json> ReadJsonLines(const std::string& path);

// Polls `done` every 100 ms for up to `seconds`.
bool WaitFor(double seconds, const std::function<bool()>& done);

// `hansa provision` into dir/federation with the given sites and port. A site is a name, in
// Germany, or "name@CC" for another country. Returns the federation folder.
// "boston@US" -> "boston".
std::string SiteName(const std::string& site);

std::string Provision(const std::string& dir, const std::vector<std::string>& sites, int port,
                      const std::string& federation = "test");

// Debian's tinyproxy (scripts/install-deps.sh installs it).
inline constexpr char kTinyproxy[] = "/usr/bin/tinyproxy";
// tinyproxy in the foreground on 127.0.0.1:port, allowing CONNECT to `connect_port` only and
// logging each connection to dir/tinyproxy.log; returns once it accepts a TCP connection (a test
// failure, with its output, when it does not within 10 s).
std::unique_ptr<Process> StartTinyproxy(const std::string& dir, int port, int connect_port);

}  // namespace hansa::testing
