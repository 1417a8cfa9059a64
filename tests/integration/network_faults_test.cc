// Network faults between real processes: a site reaches the coordinator through a
// fault-injecting TCP proxy on loopback (tests/support/fault_proxy.h), mutual TLS end to end,
// and the federation finishes or stops cleanly, with nothing counted twice and nothing
// half-applied. Faults fire on byte counts and are lifted on log lines, never on sleeps.
// First, the proxy itself.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "tests/integration/harness.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/tls_peers.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

// ---- The proxy on plain sockets ----

// A listening socket on 127.0.0.1 and its port.
std::pair<int, int> Listen() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd, 8), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return {fd, ntohs(addr.sin_port)};
}

int Connect(int port) {
  return ConnectLoopback(port, absl::Seconds(10));  // a test that would hang fails instead
}

int Accept(int listener) {
  int fd = ::accept(listener, nullptr, nullptr);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void ResetOnClose(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(gen());
  return out;
}

bool SendAll(int fd, const std::string& bytes) {
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until end of stream or an error; *error is 0 for a clean end, else errno.
std::string ReadToEnd(int fd, int* error) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    *error = n == 0 ? 0 : errno;
    return out;
  }
}

std::string ReadExactly(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

struct Pipe {
  std::unique_ptr<FaultProxy> proxy;
  int listener = -1, client = -1, server = -1;
  ~Pipe() {
    for (int fd : {client, server, listener}) {
      if (fd >= 0) ::close(fd);
    }
  }
};

// A server socket, the proxy in front of it and a client connected through it.
void Open(Pipe* p) {
  auto [listener, port] = Listen();
  p->listener = listener;
  auto proxy = FaultProxy::Start(port);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  p->proxy = *std::move(proxy);
  p->client = Connect(p->proxy->port());
  p->server = Accept(listener);
}

TEST(FaultProxyTest, PassesBytesThroughExactlyBothWaysUnderLatencyAndBandwidth) {
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(Open(&p));
  const std::string up = RandomBytes(1 << 20, 1), down = RandomBytes(300000, 2);
  std::thread writer([&] { EXPECT_TRUE(SendAll(p.client, up)); });
  EXPECT_EQ(ReadExactly(p.server, up.size()), up);
  writer.join();
  // 10 ms a chunk and 1 MB/s: 300,000 bytes take at least 0.3 s.
  p.proxy->SetLatency(absl::Milliseconds(10));
  p.proxy->SetBandwidth(1000000);
  const absl::Time start = absl::Now();
  std::thread back([&] { EXPECT_TRUE(SendAll(p.server, down)); });
  EXPECT_EQ(ReadExactly(p.client, down.size()), down);
  back.join();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  // Ends of stream pass too.
  ::shutdown(p.client, SHUT_WR);
  int error = -1;
  EXPECT_EQ(ReadToEnd(p.server, &error), "");
  EXPECT_EQ(error, 0);
  ProxyStats s = p.proxy->stats();
  EXPECT_EQ(s.connections, 1);
  EXPECT_EQ(s.bytes[static_cast<int>(Direction::kToServer)], static_cast<int64_t>(up.size()));
  EXPECT_EQ(s.bytes[static_cast<int>(Direction::kToClient)], static_cast<int64_t>(down.size()));
  EXPECT_EQ(s.faults_fired, 0);
}

TEST(FaultProxyTest, ResetsAConnectionAfterExactlyNBytesAndOnlyOnce) {
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(Open(&p));
  p.proxy->Arm({.kind = Fault::kReset, .direction = Direction::kToServer, .after_bytes = 10000});
  const std::string up = RandomBytes(50000, 3);
  SendAll(p.client, up);  // may fail once the reset arrives
  int error = 0;
  EXPECT_EQ(ReadToEnd(p.server, &error), up.substr(0, 10000));
  EXPECT_EQ(error, ECONNRESET);
  ASSERT_TRUE(p.proxy->WaitForFaults(1, absl::Seconds(5)));
  error = 0;
  ReadToEnd(p.client, &error);
  EXPECT_EQ(error, ECONNRESET);
  // The fault fired once: the next connection carries everything.
  int client = Connect(p.proxy->port());
  int server = Accept(p.listener);
  EXPECT_TRUE(SendAll(client, up));
  EXPECT_EQ(ReadExactly(server, up.size()), up);
  ::close(client);
  ::close(server);
  EXPECT_EQ(p.proxy->stats().connections, 2);
  EXPECT_EQ(p.proxy->stats().faults_fired, 1);
}

TEST(FaultProxyTest, HalfCloseEndsOneDirectionAndKeepsTheOther) {
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(Open(&p));
  p.proxy->Arm({.kind = Fault::kHalfClose, .direction = Direction::kToServer, .after_bytes = 100});
  const std::string up = RandomBytes(200, 4), down = RandomBytes(70000, 5);
  EXPECT_TRUE(SendAll(p.client, up));
  int error = -1;
  EXPECT_EQ(ReadToEnd(p.server, &error), up.substr(0, 100));  // then end of stream
  EXPECT_EQ(error, 0);
  EXPECT_TRUE(SendAll(p.server, down));
  EXPECT_EQ(ReadExactly(p.client, down.size()), down);
  ASSERT_TRUE(WaitFor(5, [&] { return p.proxy->stats().dropped_bytes == 100; }));
}

TEST(FaultProxyTest, StallHoldsEverythingUntilReleased) {
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(Open(&p));
  p.proxy->Arm({.kind = Fault::kStall,
                .direction = Direction::kToServer,
                .after_bytes = 5,
                .stall = absl::InfiniteDuration()});
  EXPECT_TRUE(SendAll(p.client, "helloworld"));
  EXPECT_EQ(ReadExactly(p.server, 5), "hello");
  ASSERT_TRUE(p.proxy->WaitForFaults(1, absl::Seconds(5)));
  EXPECT_TRUE(SendAll(p.server, "back"));
  // Nothing moves either way while stalled.
  timeval brief{0, 300000};
  ::setsockopt(p.server, SOL_SOCKET, SO_RCVTIMEO, &brief, sizeof brief);
  ::setsockopt(p.client, SOL_SOCKET, SO_RCVTIMEO, &brief, sizeof brief);
  char c;
  EXPECT_EQ(::recv(p.server, &c, 1, 0), -1);
  EXPECT_EQ(::recv(p.client, &c, 1, 0), -1);
  p.proxy->ReleaseStalls();
  EXPECT_EQ(ReadExactly(p.server, 5), "world");
  EXPECT_EQ(ReadExactly(p.client, 4), "back");
}

// Nothing arrives on `fd` within 300 ms: neither bytes nor an end of stream nor a reset.
bool HearsNothing(int fd) {
  timeval brief{0, 300000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &brief, sizeof brief);
  char c;
  const ssize_t n = ::recv(fd, &c, 1, 0);
  const int error = errno;
  timeval back{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &back, sizeof back);
  return n < 0 && (error == EAGAIN || error == EWOULDBLOCK);
}

TEST(FaultProxyTest, SilenceDropsEverythingBothWaysPassesNoEndAndSparesNewConnections) {
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(Open(&p));
  EXPECT_TRUE(SendAll(p.client, "hello"));
  EXPECT_EQ(ReadExactly(p.server, 5), "hello");
  p.proxy->Silence();
  EXPECT_TRUE(SendAll(p.client, "more"));
  EXPECT_TRUE(SendAll(p.server, "back"));
  ASSERT_TRUE(WaitFor(5, [&] { return p.proxy->stats().dropped_bytes == 8; }));
  EXPECT_TRUE(HearsNothing(p.server));
  EXPECT_TRUE(HearsNothing(p.client));
  // An end that closes its side (FIN, then RST) tells the other nothing.
  ::shutdown(p.client, SHUT_WR);
  EXPECT_TRUE(HearsNothing(p.server));
  ResetOnClose(p.client);
  ::close(p.client);
  p.client = -1;
  EXPECT_TRUE(HearsNothing(p.server));
  EXPECT_TRUE(SendAll(p.server, "still there?"));
  // A new connection passes.
  int client = Connect(p.proxy->port());
  int server = Accept(p.listener);
  EXPECT_TRUE(SendAll(client, "again"));
  EXPECT_EQ(ReadExactly(server, 5), "again");
  EXPECT_TRUE(SendAll(server, "yes"));
  EXPECT_EQ(ReadExactly(client, 3), "yes");
  ::close(client);
  ::close(server);
  const ProxyStats s = p.proxy->stats();
  EXPECT_EQ(s.connections, 2);
  EXPECT_EQ(s.silenced_connections, 1);
  EXPECT_EQ(s.bytes[static_cast<int>(Direction::kToServer)], 10);
  EXPECT_EQ(s.faults_fired, 0);
}

TEST(FaultProxyTest, SilenceAsAFaultFiresAfterExactlyNBytes) {
  Pipe p;
  ASSERT_NO_FATAL_FAILURE(Open(&p));
  p.proxy->Arm({.kind = Fault::kSilence, .direction = Direction::kToClient, .after_bytes = 3});
  EXPECT_TRUE(SendAll(p.server, "abcdef"));
  EXPECT_EQ(ReadExactly(p.client, 3), "abc");
  ASSERT_TRUE(p.proxy->WaitForFaults(1, absl::Seconds(5)));
  EXPECT_TRUE(SendAll(p.client, "up"));
  EXPECT_TRUE(HearsNothing(p.client));
  EXPECT_TRUE(HearsNothing(p.server));
  EXPECT_EQ(p.proxy->stats().silenced_connections, 1);
  ASSERT_TRUE(WaitFor(5, [&] { return p.proxy->stats().dropped_bytes == 5; }));
}

// ---- Federations through the proxy ----

std::string Format(const char* fmt, ...) {
  char buf[2048];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

struct Settings {
  int rounds = 2;
  int min_sites = 2;
  double upload_timeout = 20;
  bool secure = false;
};

// A provisioned federation of real processes with short deadlines. Each site listed in
// `proxied` reaches the coordinator through a FaultProxy of its own (its certificate names
// 127.0.0.1, which the proxy listens on too); the others connect directly.
class Federation {
 public:
  Federation(const std::string& dir, const std::vector<std::string>& sites,
             const std::vector<std::string>& proxied, const Settings& s)
      : dir_(dir), sites_(sites) {
    const int port = FreePort();
    kit_ = Provision(dir, sites, port);
    const std::string coordinator = kit_ + "/coordinator/coordinator.toml";
    ReplaceInFile(coordinator, "[coordinator]\n", "[coordinator]\nlinger_seconds = 5\n");
    // 64 KiB chunks: the mlp's 636 KB model and updates stream in ten.
    AppendText(coordinator,
               Format("\n[model]\nname = \"mlp\"\nseed = 3\n"
                      "[rounds]\ntotal = %d\nmin_sites = %d\nupload_timeout_seconds = %g\n"
                      "evaluate_timeout_seconds = 20\nwait_for_sites_seconds = 120\n"
                      "site_idle_seconds = 60\n"
                      "[training]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.05\n"
                      "[transfer]\nchunk_bytes = 65536\n"
                      "[aggregation]\nmode = \"%s\"\nstage_timeout_seconds = 20\n",
                      s.rounds, s.min_sites, s.upload_timeout, s.secure ? "secure" : "plaintext"));
    for (const std::string& site : sites) {
      const std::string path = kit_ + "/sites/" + site + "/site.toml";
      ReplaceInFile(path, "[site]\n", "[site]\nreconnect_seconds = 120\n");
      if (!s.secure) {
        ReplaceInFile(path, "[policy]\n",
                      "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n");
      }
      AppendText(path, "train_limit = 1500\ntest_limit = 500\n[compute]\nthreads = 1\n");
      if (std::find(proxied.begin(), proxied.end(), site) == proxied.end()) continue;
      auto proxy = FaultProxy::Start(port);
      EXPECT_TRUE(proxy.ok()) << proxy.status();
      ReplaceInFile(path, Format("coordinator = \"127.0.0.1:%d\"", port),
                    Format("coordinator = \"127.0.0.1:%d\"", (*proxy)->port()));
      proxies_[site] = *std::move(proxy);
    }
  }

  FaultProxy& proxy(const std::string& site) { return *proxies_.at(site); }
  std::string kit() const { return kit_; }
  std::string state() const { return kit_ + "/coordinator/state"; }
  std::string Egress(const std::string& site) const {
    return kit_ + "/sites/" + site + "/state/egress.jsonl";
  }

  void Start() {
    StartCoordinator();
    for (const std::string& site : sites_) StartSite(site);
  }
  void StartCoordinator() {
    coordinator_ = std::make_unique<Process>(
        std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                                 kit_ + "/coordinator/coordinator.toml"},
        dir_ + "/coordinator.log");
  }
  void StartSite(const std::string& site) {
    sites_running_[site] = std::make_unique<Process>(
        std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                                 kit_ + "/sites/" + site + "/site.toml"},
        dir_ + "/" + site + ".log");
  }
  Process& coordinator() { return *coordinator_; }
  Process& site(const std::string& name) { return *sites_running_.at(name); }

  // Every process exits 0.
  void ExpectFinished() {
    EXPECT_EQ(coordinator_->Wait(240).value_or(-1), 0) << coordinator_->Log();
    for (auto& [name, process] : sites_running_) {
      EXPECT_EQ(process->Wait(60).value_or(-1), 0) << name << ":\n" << process->Log();
    }
  }

  // The records after the run: the audit log and each ledger verify, each ledger reconciles
  // with 0 differences; each round 0..rounds is in metrics.jsonl once and released once; no
  // attempt holds two updates of one site, and each release holds exactly the updates of its
  // attempt; no site spent a plan's contribution twice.
  void ExpectRecordsConsistent(int rounds) const {
    std::string out;
    const std::string ca = kit_ + "/ca/ca.pem";
    const std::string hansa = BuildPath("tools/hansa");
    EXPECT_EQ(RunCommand({hansa, "audit", "verify", state() + "/audit.jsonl", "--ca", ca}, &out), 0)
        << out;
    for (const std::string& site : sites_) {
      EXPECT_EQ(
          RunCommand({hansa, "audit", "verify", "--role", "site", Egress(site), "--ca", ca}, &out),
          0)
          << out;
      EXPECT_EQ(RunCommand({hansa, "audit", "reconcile", state() + "/audit.jsonl", Egress(site),
                            "--ca", ca},
                           &out),
                0)
          << out;
      EXPECT_THAT(out, HasSubstr(", 0 differences")) << site << ": " << out;
      std::set<std::string> spent;
      for (const auto& r : ReadJsonLines(Egress(site))) {
        if (r["event"] != "contribution_spent") continue;
        EXPECT_TRUE(spent.insert(r["fields"]["plan_sha256"].get<std::string>()).second)
            << site << " spent one plan's contribution twice: " << r.dump();
      }
    }
    std::vector<int> metric_rounds;
    for (const auto& m : ReadJsonLines(state() + "/metrics.jsonl")) {
      metric_rounds.push_back(m["round"].get<int>());
    }
    std::vector<int> expected;
    for (int r = 0; r <= rounds; ++r) expected.push_back(r);
    EXPECT_EQ(metric_rounds, expected);
    std::map<int, int> released;
    std::set<std::string> attempt_updates;
    for (const auto& r : ReadJsonLines(state() + "/audit.jsonl")) {
      const auto& f = r["fields"];
      if (r["event"] == "round_planned") attempt_updates.clear();
      if (r["event"] == "update_received") {
        EXPECT_TRUE(attempt_updates.insert(f["site"].get<std::string>()).second)
            << "two updates of one site in one attempt: " << r.dump();
      }
      if (r["event"] == "aggregate_released") {
        ++released[f["round"].get<int>()];
        std::set<std::string> in_sum(f["sites"].begin(), f["sites"].end());
        EXPECT_EQ(in_sum, attempt_updates) << r.dump();
        EXPECT_EQ(in_sum.size(), f["sites"].size()) << r.dump();
      }
    }
    for (int r = 1; r <= rounds; ++r) EXPECT_EQ(released[r], 1) << "round " << r;
    EXPECT_EQ(released.size(), static_cast<size_t>(rounds));
  }

  // The sites of round `round`'s released aggregate.
  std::vector<std::string> Released(int round) const {
    for (const auto& r : ReadJsonLines(state() + "/audit.jsonl")) {
      if (r["event"] == "aggregate_released" && r["fields"]["round"] == round) {
        return r["fields"]["sites"].get<std::vector<std::string>>();
      }
    }
    return {};
  }

 private:
  std::string dir_;
  std::vector<std::string> sites_;
  std::string kit_;
  std::map<std::string, std::unique_ptr<FaultProxy>> proxies_;
  std::unique_ptr<Process> coordinator_;
  std::map<std::string, std::unique_ptr<Process>> sites_running_;
};

// Whether the coordinator's audit log records `site` dropped out of a stage.
bool DroppedOnRecord(const Federation& fed, const std::string& site) {
  for (const auto& r : ReadJsonLines(fed.state() + "/audit.jsonl")) {
    if (r["event"] == "site_dropped" && r["fields"]["site"] == site) return true;
  }
  return false;
}

// Past the join, the plan and anything else a site sends before its first update, and well
// inside the 636 KB update: the first upload is where the fault lands.
constexpr int64_t kMidUpload = 200000;
// Past the join reply and the plan, inside the first 636 KB model download.
constexpr int64_t kMidDownload = 300000;

TEST(NetworkFaultsTest, LatencyAndABandwidthLimitSlowTheFederationButChangeNothing) {
  Federation fed(FreshDir(), {"alpha", "beta"}, {"alpha", "beta"}, Settings{});
  fed.proxy("alpha").SetLatency(absl::Milliseconds(20));
  fed.proxy("beta").SetBandwidth(2 << 20);
  fed.Start();
  fed.ExpectFinished();
  fed.ExpectRecordsConsistent(2);
  for (int r = 1; r <= 2; ++r) {
    EXPECT_THAT(fed.Released(r), ::testing::UnorderedElementsAre("alpha", "beta")) << r;
  }
  // Two updates and at least two models (the initial one and round 1's) each way, in 64 KiB
  // chunks, through each proxy.
  for (const char* site : {"alpha", "beta"}) {
    ProxyStats s = fed.proxy(site).stats();
    EXPECT_GT(s.bytes[static_cast<int>(Direction::kToServer)], 2 * 636000) << site;
    EXPECT_GT(s.bytes[static_cast<int>(Direction::kToClient)], 2 * 636000) << site;
    EXPECT_EQ(s.connections, 1) << site << " reconnected: " << fed.site(site).Log();
  }
}

TEST(NetworkFaultsTest, AResetMidUploadIsWithdrawnAndTheSiteUploadsAgain) {
  Federation fed(FreshDir(), {"alpha", "beta"}, {"beta"}, Settings{});
  fed.proxy("beta").Arm(
      {.kind = Fault::kReset, .direction = Direction::kToServer, .after_bytes = kMidUpload});
  fed.Start();
  fed.ExpectFinished();
  EXPECT_EQ(fed.proxy("beta").stats().faults_fired, 1);
  EXPECT_GE(fed.proxy("beta").stats().connections, 2);
  const std::string beta = fed.site("beta").Log();
  EXPECT_THAT(beta, HasSubstr("uploading round 1: "));
  EXPECT_THAT(beta, HasSubstr("reconnecting"));
  EXPECT_THAT(beta, HasSubstr("sending the same update again (its upload broke off)"));
  // The coordinator says what it did with the cut upload.
  EXPECT_THAT(fed.coordinator().Log(),
              HasSubstr("round 1: upload from beta not accepted, nothing of it counts: upload "
                        "from beta ended after "));
  EXPECT_THAT(fed.coordinator().Log(), HasSubstr("bytes (truncated stream)"));
  fed.ExpectRecordsConsistent(2);
  // The round kept beta: its second upload of the same plan, never the cut one as well.
  EXPECT_THAT(fed.Released(1), ::testing::UnorderedElementsAre("alpha", "beta"));
  int failed = 0, spent = 0;
  for (const auto& r : ReadJsonLines(fed.Egress("beta"))) {
    failed += r["event"] == "send_failed" && r["fields"]["type"] == "upload";
    spent += r["event"] == "contribution_spent" && r["fields"]["round"] == 1;
  }
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(spent, 1);
}

TEST(NetworkFaultsTest, AResetMidMaskedUploadIsWithdrawnAndTheSumStaysExact) {
  Federation fed(FreshDir(), {"alpha", "beta", "gamma"}, {"beta"},
                 Settings{.rounds = 1, .min_sites = 3, .secure = true});
  fed.proxy("beta").Arm(
      {.kind = Fault::kReset, .direction = Direction::kToServer, .after_bytes = kMidUpload});
  fed.Start();
  fed.ExpectFinished();
  EXPECT_EQ(fed.proxy("beta").stats().faults_fired, 1);
  EXPECT_THAT(fed.site("beta").Log(), HasSubstr("uploading round 1: "));
  EXPECT_THAT(fed.coordinator().Log(), HasSubstr("unmasked the sum of 3 sites"));
  fed.ExpectRecordsConsistent(1);
  EXPECT_THAT(fed.Released(1), ::testing::UnorderedElementsAre("alpha", "beta", "gamma"));
  // beta sent the very bytes it had masked (no second share delivery, which would abort its
  // SecAgg+ session), and the masks cancel: the model learned.
  EXPECT_THAT(fed.site("beta").Log(), HasSubstr("sending the same update again"));
  const auto metrics = ReadJsonLines(fed.state() + "/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_GT(metrics[1]["accuracy"].get<double>(), metrics[0]["accuracy"].get<double>() + 0.3);
}

TEST(NetworkFaultsTest, AStallPastTheUploadDeadlineLeavesTheSiteOutAndTheRoundIsRetried) {
  Federation fed(FreshDir(), {"alpha", "beta"}, {"beta"},
                 Settings{.rounds = 1, .upload_timeout = 8});
  fed.proxy("beta").Arm({.kind = Fault::kStall,
                         .direction = Direction::kToServer,
                         .after_bytes = kMidUpload,
                         .stall = absl::InfiniteDuration()});
  fed.Start();
  ASSERT_TRUE(fed.proxy("beta").WaitForFaults(1, absl::Seconds(120))) << fed.site("beta").Log();
  // Held until both ends have given the upload up.
  ASSERT_TRUE(WaitFor(60,
                      [&] {
                        return fed.coordinator().Log().find(
                                   "no answer in time from beta (TRAIN)") != std::string::npos &&
                               fed.site("beta").Log().find("reconnecting") != std::string::npos;
                      }))
      << fed.coordinator().Log() << fed.site("beta").Log();
  fed.proxy("beta").ReleaseStalls();
  fed.ExpectFinished();
  EXPECT_THAT(fed.site("beta").Log(), HasSubstr("uploading round 1: Deadline Exceeded"));
  EXPECT_THAT(fed.coordinator().Log(), HasSubstr("only 1 of min_sites = 2 updates arrived"));
  EXPECT_THAT(fed.coordinator().Log(),
              HasSubstr("round 1: upload from beta not accepted, nothing of it counts: "));
  fed.ExpectRecordsConsistent(1);
  EXPECT_THAT(fed.Released(1), ::testing::UnorderedElementsAre("alpha", "beta"));
  EXPECT_TRUE(DroppedOnRecord(fed, "beta"));
}

TEST(NetworkFaultsTest, HalfOpenConnectionsAreDroppedAndTheSiteCarriesOn) {
  Federation fed(FreshDir(), {"alpha", "beta"}, {"beta"}, Settings{.rounds = 1});
  // beta stops hearing the coordinator mid-download (the coordinator still hears beta), and
  // later the coordinator stops hearing beta mid-upload.
  fed.proxy("beta").Arm(
      {.kind = Fault::kHalfClose, .direction = Direction::kToClient, .after_bytes = kMidDownload});
  fed.proxy("beta").Arm(
      {.kind = Fault::kHalfClose, .direction = Direction::kToServer, .after_bytes = kMidUpload});
  fed.Start();
  fed.ExpectFinished();
  EXPECT_EQ(fed.proxy("beta").stats().faults_fired, 2);
  EXPECT_GE(fed.proxy("beta").stats().connections, 3);
  const std::string beta = fed.site("beta").Log();
  EXPECT_THAT(beta, HasSubstr("downloading the global model"));
  EXPECT_THAT(beta, HasSubstr("uploading round 1: "));
  fed.ExpectRecordsConsistent(1);
  EXPECT_THAT(fed.Released(1), ::testing::UnorderedElementsAre("alpha", "beta"));
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A connection that goes silent both ways with no end of stream and no reset (a NAT that forgot
// it, a cable pulled), first while the site waits idle for its plan, then mid-upload. The
// shipped keepalive settings (common/net/rpc.h: a ping after at most 20 s, 10 s for its answer)
// find the idle one long before the poll's own deadline (poll wait 20 s + rpc_timeout 30 s); the
// coordinator counts the silent uploader out at the upload deadline, when the site gives the
// upload up too; the site comes back over a new connection each time (at once after a deadline,
// not once keepalive gives the silent connection up) and the round is released once, with
// nothing counted twice. About a minute of real time, most of it the keepalive.
TEST(NetworkFaultsTest, ASilentConnectionIsFoundByKeepaliveAndTheSiteComesBackOverANewOne) {
  Federation fed(FreshDir(), {"alpha", "beta"}, {"beta"},
                 Settings{.rounds = 1, .upload_timeout = 10});
  fed.StartCoordinator();
  fed.StartSite("beta");
  ASSERT_TRUE(WaitFor(60, [&] {
    return fed.site("beta").Log().find("joined federation") != std::string::npos;
  })) << fed.site("beta").Log();
  // alpha is not up yet: beta polls for a plan that cannot come (min_sites = 2).
  const absl::Time silenced = absl::Now();
  fed.proxy("beta").Silence();
  // The next silence lands inside beta's first upload, over whatever connection carries it.
  fed.proxy("beta").Arm(
      {.kind = Fault::kSilence, .direction = Direction::kToServer, .after_bytes = kMidUpload});
  ASSERT_TRUE(WaitFor(90, [&] { return Count(fed.site("beta").Log(), "joined federation") >= 2; }))
      << fed.site("beta").Log();
  const absl::Duration found = absl::Now() - silenced;
  const std::string idle = fed.site("beta").Log();
  EXPECT_THAT(idle, HasSubstr("asking for a task: "));
  EXPECT_THAT(idle, ::testing::Not(HasSubstr("asking for a task: Deadline Exceeded")));
  // Keepalive, not the poll's deadline (50 s after the poll began, at least 30 s after the
  // silence): found and back within the keepalive's 30 s, plus the rejoin.
  EXPECT_LT(found, absl::Seconds(45)) << idle;
  std::cerr << "idle silence found and beta rejoined after " << absl::FormatDuration(found) << "\n";
  fed.StartSite("alpha");
  ASSERT_TRUE(fed.proxy("beta").WaitForFaults(1, absl::Seconds(120))) << fed.site("beta").Log();
  fed.ExpectFinished();
  const std::string beta = fed.site("beta").Log();
  const std::string coordinator = fed.coordinator().Log();
  // The upload deadline (10 s after the plan) comes before keepalive could (at least 10 s after
  // the silence), and the site reconnects at once over a new connection instead of waiting for
  // keepalive to give the silent one up.
  const size_t cut = beta.find("uploading round 1: Deadline Exceeded; reconnecting");
  ASSERT_NE(cut, std::string::npos) << beta;
  const size_t back = beta.find("joined federation", cut);
  ASSERT_NE(back, std::string::npos) << beta;
  EXPECT_EQ(beta.substr(cut, back - cut).find("keepalive"), std::string::npos) << beta;
  EXPECT_THAT(coordinator, HasSubstr("no answer in time from beta (TRAIN)"));
  EXPECT_THAT(coordinator, HasSubstr("only 1 of min_sites = 2 updates arrived"));
  const ProxyStats s = fed.proxy("beta").stats();
  EXPECT_EQ(s.silenced_connections, 2);
  EXPECT_GE(s.connections, 3);
  fed.ExpectRecordsConsistent(1);
  EXPECT_THAT(fed.Released(1), ::testing::UnorderedElementsAre("alpha", "beta"));
  EXPECT_TRUE(DroppedOnRecord(fed, "beta"));
}

}  // namespace
}  // namespace hansa::testing
