// hansa doctor's checks (client/doctor.h), each alone against temporary files and loopback
// sockets: a federation CA made here, IDX and CSV files written here, a fake HTTP proxy thread
// and a real mutual TLS 1.3 gRPC server standing in for the coordinator.
#include "client/doctor.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/fileio/fileio.h"
#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

// The result of `check` in `results`; a test failure when there is none.
CheckResult Find(const std::vector<CheckResult>& results, const std::string& check) {
  for (const CheckResult& r : results) {
    if (r.check == check) return r;
  }
  ADD_FAILURE() << "no check named " << check;
  return {};
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string BigEndian(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An IDX file of bytes with these dimensions; `missing` bytes short of what the header says.
std::string Idx(const std::vector<uint32_t>& dims, size_t missing = 0) {
  std::string out{0, 0, 0x08, static_cast<char>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    out += BigEndian(d);
    n *= d;
  }
  out += std::string(n - missing, '\x07');
  return out;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// A temporary site: a CA, the site's certificate and key, IDX data, a coordinator certificate
// for 127.0.0.1, and a SiteConfig pointing at them.
class DoctorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The process id too: another build tree's copy of this test may run at the same time.
    dir_ = absl::StrCat(::testing::TempDir(), "doctor_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name(), "_",
                        getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    CaOptions ca_options;
    ca_options.federation = "test";
    ca_options.country = "DE";
    ca_options.not_before = absl::Now() - absl::Hours(24 * 400);
    auto ca = CertificateAuthority::Create(ca_options);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_.emplace(std::move(*ca));
    WriteText(dir_ + "/ca.pem", ca_->certificate().ToPem());
    IssueSite({});

    WriteText(dir_ + "/train-images", Idx({6, 4, 4}));
    WriteText(dir_ + "/train-labels", Idx({6}));
    WriteGzip(dir_ + "/test-images.gz", Idx({3, 4, 4}));
    WriteGzip(dir_ + "/test-labels.gz", Idx({3}));

    config_.name = "alpha";
    config_.certificate = dir_ + "/cert.pem";
    config_.private_key = dir_ + "/key.pem";
    config_.ca_certificate = dir_ + "/ca.pem";
    config_.state_dir = dir_ + "/state";
    config_.train_images = dir_ + "/train-images";
    config_.train_labels = dir_ + "/train-labels";
    config_.test_images = dir_ + "/test-images.gz";
    config_.test_labels = dir_ + "/test-labels.gz";
    options_.clock_synchronized = [] { return StatusOr<bool>(true); };
    options_.getenv = [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      return it == env_.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    options_.network_timeout = absl::Seconds(10);
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Issues the site's certificate (and a fresh key) with `request`'s times and usage; by
  // default valid for a year from an hour ago, for TLS clients.
  void IssueSite(CertificateRequest request, const std::string& suffix = "") {
    auto key = PrivateKey::Generate();
    ASSERT_TRUE(key.ok());
    request.subject = {"alpha", "Alpha Hospital", "DE"};
    if (!request.server_auth) request.client_auth = true;
    auto cert = ca_->Issue(request, key->GetPublicKey());
    ASSERT_TRUE(cert.ok()) << cert.status();
    WriteText(dir_ + "/cert" + suffix + ".pem", cert->ToPem());
    ASSERT_TRUE(WritePrivateKeyFile(dir_ + "/key" + suffix + ".pem", *key).ok());
  }

  std::string dir_;
  std::optional<CertificateAuthority> ca_;
  SiteConfig config_;
  DoctorOptions options_;
  std::map<std::string, std::string> env_;
};

TEST_F(DoctorTest, FormatsOneLinePerCheckAndTheFixBelowIt) {
  EXPECT_EQ(FormatCheck({CheckLevel::kOk, "dns", "resolves", ""}), "OK    dns: resolves\n");
  EXPECT_EQ(FormatCheck({CheckLevel::kFail, "route", "refused", "start it"}),
            "FAIL  route: refused\n      fix: start it\n");
  EXPECT_FALSE(AnyFailed({{CheckLevel::kWarn, "a", "", "x"}}));
  EXPECT_TRUE(AnyFailed({{CheckLevel::kOk, "a", "", ""}, {CheckLevel::kFail, "b", "", "x"}}));
}

TEST_F(DoctorTest, AConfigThatDoesNotParseIsTheOnlyCheckAndFails) {
  const std::string toml = dir_ + "/site.toml";
  WriteText(toml, "[site]\nname = \"alpha\"\ncolour = \"blue\"\n");
  const std::vector<CheckResult> results = RunDoctor(toml, options_);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].level, CheckLevel::kFail);
  EXPECT_EQ(results[0].check, "config");
  EXPECT_THAT(results[0].detail, HasSubstr("site.colour"));
  EXPECT_TRUE(AnyFailed(results));
}

TEST_F(DoctorTest, GoodCertificateAndKeyPassEveryCheck) {
  const std::vector<CheckResult> results = CheckCertificates(config_, options_);
  ASSERT_EQ(results.size(), 8u);
  for (const CheckResult& r : results) {
    EXPECT_EQ(r.level, CheckLevel::kOk) << FormatCheck(r);
  }
  EXPECT_THAT(Find(results, "certificate").detail, HasSubstr("'alpha' (O=Alpha Hospital, C=DE)"));
  EXPECT_THAT(Find(results, "key file mode").detail, HasSubstr("mode 0600"));
}

TEST_F(DoctorTest, ExpiredCertificateFailsAndSoDoesTheClockCheck) {
  CertificateRequest request;
  request.not_before = absl::Now() - absl::Hours(24 * 100);
  request.not_after = absl::Now() - absl::Hours(24);
  IssueSite(request);
  const std::vector<CheckResult> results = CheckCertificates(config_, options_);
  const CheckResult validity = Find(results, "certificate validity");
  EXPECT_EQ(validity.level, CheckLevel::kFail);
  EXPECT_THAT(validity.detail, HasSubstr("certificate of 'alpha' expired at"));
  EXPECT_THAT(validity.fix, HasSubstr("hansa enroll"));
  EXPECT_EQ(Find(results, "certificate issuer").level, CheckLevel::kOk);
  const CheckResult clock = CheckClock(config_, options_);
  EXPECT_EQ(clock.level, CheckLevel::kFail);
  EXPECT_THAT(clock.detail, HasSubstr("lies outside the site certificate's validity"));
}

TEST_F(DoctorTest, CertificateExpiringWithinThirtyDaysWarns) {
  CertificateRequest request;
  request.not_after = absl::Now() + absl::Hours(24 * 10 + 1);
  IssueSite(request);
  const CheckResult validity = Find(CheckCertificates(config_, options_), "certificate validity");
  EXPECT_EQ(validity.level, CheckLevel::kWarn);
  EXPECT_THAT(validity.detail, HasSubstr("expires in 10 days"));
  EXPECT_THAT(validity.fix, HasSubstr("renewed"));
}

TEST_F(DoctorTest, KeyOfAnotherCertificateFails) {
  IssueSite({}, "-other");
  config_.private_key = dir_ + "/key-other.pem";
  const CheckResult key = Find(CheckCertificates(config_, options_), "private key");
  EXPECT_EQ(key.level, CheckLevel::kFail);
  EXPECT_THAT(key.detail, HasSubstr("is not the key of " + config_.certificate));
}

TEST_F(DoctorTest, KeyFileReadableByOthersWarns) {
  ASSERT_EQ(chmod(config_.private_key.c_str(), 0644), 0);
  const std::vector<CheckResult> results = CheckCertificates(config_, options_);
  const CheckResult mode = Find(results, "key file mode");
  EXPECT_EQ(mode.level, CheckLevel::kWarn);
  EXPECT_THAT(mode.detail, HasSubstr("mode 0644"));
  EXPECT_EQ(mode.fix, "chmod 600 " + config_.private_key);
  EXPECT_FALSE(AnyFailed(results));
}

TEST_F(DoctorTest, CertificateOfAnotherCaFailsTheIssuerCheck) {
  CaOptions other;
  other.federation = "other";
  other.country = "FR";
  auto ca = CertificateAuthority::Create(other);
  ASSERT_TRUE(ca.ok());
  WriteText(dir_ + "/ca.pem", ca->certificate().ToPem());
  const CheckResult issuer = Find(CheckCertificates(config_, options_), "certificate issuer");
  EXPECT_EQ(issuer.level, CheckLevel::kFail);
  EXPECT_THAT(issuer.detail, HasSubstr("was not signed by the federation CA"));
}

TEST_F(DoctorTest, ServerOnlyCertificateFailsTheUsageCheck) {
  CertificateRequest request;
  request.server_auth = true;
  IssueSite(request);
  const CheckResult usage = Find(CheckCertificates(config_, options_), "certificate usage");
  EXPECT_EQ(usage.level, CheckLevel::kFail);
  EXPECT_THAT(usage.detail, HasSubstr("not allowed for TLS client authentication"));
}

TEST_F(DoctorTest, MissingCertificateFileFailsAndNamesIt) {
  config_.certificate = dir_ + "/nowhere.pem";
  const CheckResult cert = Find(CheckCertificates(config_, options_), "certificate");
  EXPECT_EQ(cert.level, CheckLevel::kFail);
  EXPECT_THAT(cert.detail, HasSubstr("nowhere.pem"));
}

TEST_F(DoctorTest, IdxFilesRawAndGzippedPassWithTheirCounts) {
  const std::vector<CheckResult> results = CheckDataFiles(config_);
  EXPECT_FALSE(AnyFailed(results));
  EXPECT_THAT(Find(results, "data train").detail, HasSubstr("6 images 4x4"));
  EXPECT_THAT(Find(results, "data test").detail, HasSubstr("3 images 4x4"));
  EXPECT_THAT(Find(results, "state directory").detail, HasSubstr("will be created"));
}

TEST_F(DoctorTest, MissingDataFileFails) {
  config_.train_labels = dir_ + "/no-such-labels";
  const CheckResult train = Find(CheckDataFiles(config_), "data train");
  EXPECT_EQ(train.level, CheckLevel::kFail);
  EXPECT_THAT(train.detail, HasSubstr("no-such-labels does not exist"));
  EXPECT_THAT(train.fix, HasSubstr("[data]"));
}

TEST_F(DoctorTest, TruncatedOrMismatchedIdxFilesFail) {
  WriteGzip(dir_ + "/test-images.gz", Idx({3, 4, 4}, 5));
  CheckResult test = Find(CheckDataFiles(config_), "data test");
  EXPECT_EQ(test.level, CheckLevel::kFail);
  EXPECT_THAT(test.detail, HasSubstr("truncated"));
  WriteText(dir_ + "/train-labels", Idx({5}));
  CheckResult train = Find(CheckDataFiles(config_), "data train");
  EXPECT_EQ(train.level, CheckLevel::kFail);
  EXPECT_THAT(train.detail, HasSubstr("holds 6 images but"));
}

TEST_F(DoctorTest, CsvWithoutTheLabelColumnFails) {
  config_.format = "csv";
  config_.train_file = dir_ + "/train.csv";
  config_.csv.label = "diagnosis";
  WriteText(config_.train_file, "age,weight,diagnosis\n1,2,0\n");
  EXPECT_EQ(Find(CheckDataFiles(config_), "data train").level, CheckLevel::kOk);
  WriteText(config_.train_file, "age,weight,outcome\n1,2,0\n");
  const CheckResult train = Find(CheckDataFiles(config_), "data train");
  EXPECT_EQ(train.level, CheckLevel::kFail);
  EXPECT_THAT(train.detail, HasSubstr("no column 'diagnosis'"));
}

TEST_F(DoctorTest, ModelFileNotInThePolicyWarns) {
  config_.model_files = {dir_ + "/model.pt"};
  WriteText(config_.model_files[0], "not really torchscript");
  const CheckResult model = Find(CheckDataFiles(config_), "model file");
  EXPECT_EQ(model.level, CheckLevel::kWarn);
  EXPECT_THAT(model.detail, HasSubstr("which [policy] allowed_models does not list"));
}

TEST_F(DoctorTest, UnsynchronisedClockWarnsAndAnUnknownOneIsNoted) {
  options_.clock_synchronized = [] { return StatusOr<bool>(false); };
  CheckResult clock = CheckClock(config_, options_);
  EXPECT_EQ(clock.level, CheckLevel::kWarn);
  EXPECT_THAT(clock.detail, HasSubstr("not synchronised"));
  options_.clock_synchronized = [] {
    return StatusOr<bool>(absl::UnavailableError("timedatectl is not installed"));
  };
  clock = CheckClock(config_, options_);
  EXPECT_EQ(clock.level, CheckLevel::kOk);
  EXPECT_THAT(clock.detail, HasSubstr("synchronisation not checked: timedatectl is not"));
  EXPECT_THAT(clock.detail, HasSubstr("within the site certificate and the CA certificate"));
}

TEST_F(DoctorTest, ProxyComesFromSiteTomlThenTheEnvironmentUnlessNoProxyListsTheHost) {
  config_.coordinator = "fl.example.org:50051";
  std::string source;
  EXPECT_EQ(EffectiveProxy(config_, options_, &source), "");
  env_["https_proxy"] = "proxy.hospital:3128";
  EXPECT_EQ(EffectiveProxy(config_, options_, &source), "http://proxy.hospital:3128");
  EXPECT_EQ(source, "environment variable https_proxy");
  env_["grpc_proxy"] = "http://grpc.hospital:8080";
  EXPECT_EQ(EffectiveProxy(config_, options_, &source), "http://grpc.hospital:8080");
  env_["no_proxy"] = "localhost,.example.org";
  EXPECT_EQ(EffectiveProxy(config_, options_, &source), "");
  EXPECT_THAT(source, HasSubstr("no_proxy lists fl.example.org"));
  config_.proxy = "http://10.0.0.1:3128";
  EXPECT_EQ(EffectiveProxy(config_, options_, &source), "http://10.0.0.1:3128");
  EXPECT_EQ(source, "[network] proxy");
}

TEST_F(DoctorTest, UnresolvableHostFailsUnlessAProxyResolvesIt) {
  config_.coordinator = "coordinator.invalid:50051";
  std::vector<CheckResult> dns = CheckDns(config_, "");
  ASSERT_EQ(dns.size(), 1u);
  EXPECT_EQ(dns[0].level, CheckLevel::kFail);
  EXPECT_THAT(dns[0].detail, HasSubstr("'coordinator.invalid' does not resolve"));
  dns = CheckDns(config_, "http://127.0.0.1:3128");
  ASSERT_EQ(dns.size(), 1u);
  EXPECT_EQ(dns[0].level, CheckLevel::kWarn);
  dns = CheckDns(config_, "http://proxy.invalid:3128");
  ASSERT_EQ(dns.size(), 2u);
  EXPECT_EQ(dns[1].level, CheckLevel::kFail);
  EXPECT_THAT(dns[1].detail, HasSubstr("proxy 'proxy.invalid' does not resolve"));
  config_.coordinator = "127.0.0.1:50051";
  dns = CheckDns(config_, "");
  EXPECT_EQ(dns[0].level, CheckLevel::kOk);
  EXPECT_THAT(dns[0].detail, HasSubstr("is an IP address"));
}

// A TCP listener on 127.0.0.1 (port chosen by the kernel), closed on destruction.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd, 4), 0);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd >= 0) close(fd);
  }
};

TEST_F(DoctorTest, ClosedPortFailsTheRouteAndTheTlsCheckIsNotAttempted) {
  int port = 0;
  {
    Listener gone;
    port = gone.port;
  }
  config_.coordinator = absl::StrCat("127.0.0.1:", port);
  const CheckResult route = CheckRoute(config_, "", options_);
  EXPECT_EQ(route.level, CheckLevel::kFail);
  EXPECT_THAT(route.detail, HasSubstr("Connection refused"));
  EXPECT_THAT(route.fix, HasSubstr("is the coordinator running"));
  const CheckResult tls = CheckTlsHandshake(config_, "", false, options_);
  EXPECT_EQ(tls.level, CheckLevel::kFail);
  EXPECT_THAT(tls.detail, HasSubstr("not attempted: the TCP route"));
}

TEST_F(DoctorTest, OpenPortPassesTheDirectRoute) {
  Listener open;
  config_.coordinator = absl::StrCat("127.0.0.1:", open.port);
  const CheckResult route = CheckRoute(config_, "", options_);
  EXPECT_EQ(route.level, CheckLevel::kOk) << FormatCheck(route);
  EXPECT_THAT(route.detail, HasSubstr("no proxy"));
}

// A proxy that answers one CONNECT with `status_line` and records the request.
class FakeProxy {
 public:
  explicit FakeProxy(std::string status_line) {
    thread_ = std::thread([this, status_line] {
      const int client = accept(listener_.fd, nullptr, nullptr);
      if (client < 0) return;
      char buf[1024];
      while (request_.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(client, buf, sizeof buf, 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<size_t>(n));
      }
      const std::string answer = status_line + "\r\n\r\n";
      send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
      close(client);
    });
  }
  ~FakeProxy() {
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", listener_.port); }
  // REQUIRES: the thread ended (after the check returned, it has).
  const std::string& request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  Listener listener_;
  std::string request_;
  std::thread thread_;
};

TEST_F(DoctorTest, ProxyThatRefusesTheConnectFailsTheRouteWithItsStatusLine) {
  config_.coordinator = "fl.example.org:50051";
  FakeProxy proxy("HTTP/1.1 403 Access violation");
  const CheckResult route = CheckRoute(config_, proxy.url(), options_);
  EXPECT_EQ(route.level, CheckLevel::kFail);
  EXPECT_THAT(route.detail, HasSubstr("refused the CONNECT to fl.example.org:50051: it answered "
                                      "\"HTTP/1.1 403 Access violation\""));
  EXPECT_THAT(route.fix, HasSubstr("allow CONNECT"));
  EXPECT_THAT(proxy.request(), HasSubstr("CONNECT fl.example.org:50051 HTTP/1.1\r\n"));
}

TEST_F(DoctorTest, ProxyThatOpensTheTunnelPassesTheRoute) {
  config_.coordinator = "fl.example.org:50051";
  FakeProxy proxy("HTTP/1.1 200 Connection established");
  const CheckResult route = CheckRoute(config_, proxy.url(), options_);
  EXPECT_EQ(route.level, CheckLevel::kOk) << FormatCheck(route);
  EXPECT_THAT(route.detail, HasSubstr("answered \"HTTP/1.1 200 Connection established\""));
}

// A real mutual TLS 1.3 gRPC server on 127.0.0.1 with a coordinator certificate of the test CA.
class TlsDoctorTest : public DoctorTest {
 protected:
  void SetUp() override {
    DoctorTest::SetUp();
    ASSERT_TRUE(EnforceTls13Only().ok());
    auto key = PrivateKey::Generate();
    ASSERT_TRUE(key.ok());
    CertificateRequest request;
    request.subject = {"coordinator", "", "DE"};
    request.server_auth = true;
    request.ip_addresses = coordinator_ips_;
    request.not_after = absl::Now() + coordinator_validity_;
    auto cert = ca_->Issue(request, key->GetPublicKey());
    ASSERT_TRUE(cert.ok()) << cert.status();
    fingerprint_ = cert->Sha256Fingerprint();
    auto key_pem = key->ToPem();
    ASSERT_TRUE(key_pem.ok());
    auto creds = MakeServerCredentials({cert->ToPem(), *key_pem, ca_->certificate().ToPem()});
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    config_.coordinator = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    DoctorTest::TearDown();
  }

  absl::Duration coordinator_validity_ = absl::Hours(24 * 365);
  std::vector<std::string> coordinator_ips_ = {"127.0.0.1"};
  v1::Coordinator::Service service_;
  std::unique_ptr<grpc::Server> server_;
  std::string fingerprint_;
};

TEST_F(TlsDoctorTest, PinnedCoordinatorPassesTheHandshake) {
  config_.policy.coordinator_fingerprint = fingerprint_;
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kOk) << FormatCheck(tls);
  EXPECT_THAT(tls.detail, HasSubstr("mutual TLS 1.3"));
  EXPECT_THAT(tls.detail, HasSubstr(fingerprint_));
  EXPECT_THAT(tls.detail, HasSubstr("valid until"));
}

// The coordinator's certificate expires in 5 days: the handshake passes but this site will
// lose the coordinator unless it is renewed and the new one pinned.
class ExpiringCoordinatorDoctorTest : public TlsDoctorTest {
 protected:
  void SetUp() override {
    coordinator_validity_ = absl::Hours(24 * 5 + 1);
    TlsDoctorTest::SetUp();
  }
};

TEST_F(ExpiringCoordinatorDoctorTest, CoordinatorCertificateExpiringSoonWarns) {
  config_.policy.coordinator_fingerprint = fingerprint_;
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kWarn) << FormatCheck(tls);
  EXPECT_THAT(tls.detail, HasSubstr("but it expires on"));
  EXPECT_THAT(tls.detail, HasSubstr("(in 5 days)"));
  EXPECT_THAT(tls.fix, HasSubstr("new fingerprint"));
}

TEST_F(TlsDoctorTest, WrongPinFailsNamingBothFingerprints) {
  const std::string pinned(64, 'a');
  config_.policy.coordinator_fingerprint = pinned;
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kFail);
  EXPECT_EQ(tls.detail, absl::StrCat("the coordinator presents certificate ", fingerprint_,
                                     " but site.toml pins ", pinned));
  EXPECT_THAT(tls.fix, HasSubstr("ask the federation operator for the current fingerprint"));
}

TEST_F(TlsDoctorTest, NoPinWarns) {
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kWarn) << FormatCheck(tls);
  EXPECT_THAT(tls.fix, HasSubstr("coordinator_fingerprint"));
}

TEST_F(TlsDoctorTest, SiteCertificateOfAnotherFederationFailsTheHandshake) {
  CaOptions other;
  other.federation = "other";
  other.country = "FR";
  auto ca = CertificateAuthority::Create(other);
  ASSERT_TRUE(ca.ok());
  ca_.emplace(std::move(*ca));
  IssueSite({});
  WriteText(dir_ + "/ca.pem", ca_->certificate().ToPem());
  options_.network_timeout = absl::Seconds(3);
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kFail);
  EXPECT_THAT(tls.detail, HasSubstr("no TLS 1.3 handshake with"));
  EXPECT_THAT(tls.detail,
              HasSubstr("this site does not accept the coordinator's certificate ('coordinator'"));
  EXPECT_THAT(tls.detail, HasSubstr("was not signed by the federation CA"));
  EXPECT_THAT(tls.fix, HasSubstr("is not the federation's CA, ask the federation operator"));
}

// The coordinator's certificate names 127.0.0.2 only; site.toml dials 127.0.0.1.
class MisnamedCoordinatorDoctorTest : public TlsDoctorTest {
 protected:
  void SetUp() override {
    coordinator_ips_ = {"127.0.0.2"};
    TlsDoctorTest::SetUp();
  }
};

TEST_F(MisnamedCoordinatorDoctorTest, CoordinatorCertificateWithoutTheHostIsNamed) {
  options_.network_timeout = absl::Seconds(3);
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kFail);
  EXPECT_THAT(tls.detail, HasSubstr("does not name '127.0.0.1'; it names IP:127.0.0.2"));
  EXPECT_THAT(tls.fix, HasSubstr("set site.coordinator to one of the names"));
}

// A certificate the coordinator refuses in its handshake (here: not allowed for TLS clients).
TEST_F(TlsDoctorTest, SiteCertificateTheCoordinatorRefusesIsNamed) {
  CertificateRequest request;
  request.server_auth = true;
  IssueSite(request);
  config_.policy.coordinator_fingerprint = fingerprint_;
  options_.network_timeout = absl::Seconds(3);
  const CheckResult tls = CheckTlsHandshake(config_, "", true, options_);
  EXPECT_EQ(tls.level, CheckLevel::kFail) << FormatCheck(tls);
  EXPECT_THAT(tls.detail, HasSubstr("the coordinator refused this site's certificate"));
  EXPECT_THAT(tls.fix, HasSubstr("revoked"));
}

}  // namespace
}  // namespace hansa
