#include "common/pki/startup_kit.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>

#include <toml++/toml.h>
#include <filesystem>
#include <string>

#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/pki_kit_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

ProvisionRequest DemoRequest(const std::string& out) {
  ProvisionRequest request;
  request.out_dir = out;
  request.federation = "demo";
  request.coordinator = {"coordinator", "DE", "Hansa Operators"};
  request.sites = {{"berlin", "DE", "Charité Berlin"}, {"paris", "FR", ""}, {"milan", "IT", ""}};
  request.coordinator_hosts = {"fl.example.org", "10.0.0.5"};
  request.shard_shared_data = true;
  return request;
}

int Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<int>(st.st_mode & 0777);
}

Certificate Load(const std::string& path) {
  auto cert = Certificate::FromFile(path);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return *cert;
}

TEST(StartupKitTest, ProvisionsVerifyingKitsWithPrivateKeysAndConfigs) {
  std::string out = MakeTempDir();
  auto summary = WriteStartupKits(DemoRequest(out));
  ASSERT_TRUE(summary.ok()) << summary.status();

  Certificate ca = Load(out + "/ca/ca.pem");
  EXPECT_EQ(ca.Subject(), (SubjectName{"demo CA", "Hansa Operators", "DE"}));
  EXPECT_EQ(Mode(out + "/ca/ca-key.pem"), 0600);
  EXPECT_TRUE(ReadPrivateKeyFile(out + "/ca/ca-key.pem").ok());

  const std::string kit = out + "/coordinator";
  Certificate coordinator = Load(kit + "/cert.pem");
  EXPECT_EQ(coordinator.Subject(), (SubjectName{"coordinator", "Hansa Operators", "DE"}));
  EXPECT_TRUE(VerifyCertificate(coordinator, ca, absl::Now(), CertificateUsage::kTlsServer).ok());
  EXPECT_THAT(coordinator.SubjectAltNames(),
              ElementsAre("DNS:localhost", "DNS:fl.example.org", "IP:127.0.0.1", "IP:10.0.0.5"));
  EXPECT_EQ(Mode(kit + "/key.pem"), 0600);
  EXPECT_TRUE(coordinator.CheckPrivateKeyMatches(*ReadPrivateKeyFile(kit + "/key.pem")).ok());
  EXPECT_EQ(Load(kit + "/ca.pem").Sha256Fingerprint(), ca.Sha256Fingerprint());
  EXPECT_FALSE(std::filesystem::exists(kit + "/ca-key.pem"));

  toml::table coordinator_toml = toml::parse_file(kit + "/coordinator.toml");
  EXPECT_EQ(coordinator_toml["federation"]["name"].value_or(std::string()), "demo");
  EXPECT_EQ(coordinator_toml["coordinator"]["listen"].value_or(std::string()), "127.0.0.1:50051");
  EXPECT_EQ(coordinator_toml["coordinator"]["certificate"].value_or(std::string()), "cert.pem");
  EXPECT_EQ(coordinator_toml["coordinator"]["private_key"].value_or(std::string()), "key.pem");
  EXPECT_EQ(coordinator_toml["coordinator"]["ca_certificate"].value_or(std::string()), "ca.pem");
  EXPECT_EQ(coordinator_toml["coordinator"]["state_dir"].value_or(std::string()), "state");
  const toml::array* allowed = coordinator_toml["sites"]["allowed"].as_array();
  ASSERT_NE(allowed, nullptr);
  ASSERT_EQ(allowed->size(), 3u);
  EXPECT_EQ((*allowed)[2].value_or(std::string()), "milan");

  const std::vector<SubjectName> expected = {
      {"berlin", "Charité Berlin", "DE"}, {"paris", "paris", "FR"}, {"milan", "milan", "IT"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string dir = out + "/sites/" + expected[i].common_name;
    Certificate site = Load(dir + "/cert.pem");
    EXPECT_EQ(site.Subject(), expected[i]);
    EXPECT_TRUE(VerifyCertificate(site, ca, absl::Now(), CertificateUsage::kTlsClient).ok());
    EXPECT_THAT(site.SubjectAltNames(), ElementsAre("DNS:" + expected[i].common_name));
    EXPECT_EQ(Mode(dir + "/key.pem"), 0600);
    EXPECT_TRUE(site.CheckPrivateKeyMatches(*ReadPrivateKeyFile(dir + "/key.pem")).ok());
    toml::table site_toml = toml::parse_file(dir + "/site.toml");
    EXPECT_EQ(site_toml["site"]["name"].value_or(std::string()), expected[i].common_name);
    EXPECT_EQ(site_toml["site"]["coordinator"].value_or(std::string()), "127.0.0.1:50051");
    EXPECT_EQ(site_toml["site"]["certificate"].value_or(std::string()), "cert.pem");
    EXPECT_EQ(site_toml["site"]["state_dir"].value_or(std::string()), "state");
    EXPECT_EQ(site_toml["policy"]["coordinator_fingerprint"].value_or(std::string()),
              coordinator.Sha256Fingerprint());
    EXPECT_EQ(site_toml["data"]["train_images"].value_or(std::string()),
              "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
    EXPECT_EQ(site_toml["data"]["shard_index"].value_or(int64_t{-1}), static_cast<int64_t>(i));
    EXPECT_EQ(site_toml["data"]["shard_count"].value_or(int64_t{-1}), 3);
  }

  ASSERT_EQ(summary->participants.size(), 5u);
  EXPECT_EQ(summary->participants[1].fingerprint, coordinator.Sha256Fingerprint());
  std::string text = summary->ToText();
  EXPECT_THAT(text, HasSubstr(coordinator.Sha256Fingerprint()));
  EXPECT_THAT(text, HasSubstr("hansa-client --config " + out + "/sites/paris/site.toml"));
  EXPECT_THAT(text, HasSubstr("never copy it into a kit"));
}

// A real site trains on all of its own files: only a federation whose sites share one data set
// (the demo) is provisioned with shards.
TEST(StartupKitTest, ASitesOwnDataIsNotShardedUnlessTheSitesShareIt) {
  const std::string out = MakeTempDir();
  ProvisionRequest request = DemoRequest(out);
  request.shard_shared_data = false;
  ASSERT_TRUE(WriteStartupKits(request).ok());
  const std::string path = out + "/sites/paris/site.toml";
  toml::table site_toml = toml::parse_file(path);
  EXPECT_FALSE(site_toml["data"]["shard_index"]);
  EXPECT_FALSE(site_toml["data"]["shard_count"]);
  EXPECT_TRUE(site_toml["data"]["train_images"]);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("This site's own files"));
}

TEST(StartupKitTest, RefusesToReplaceAnExistingCaWithoutForce) {
  std::string out = MakeTempDir();
  ASSERT_TRUE(WriteStartupKits(DemoRequest(out)).ok());
  std::string first = Load(out + "/ca/ca.pem").Sha256Fingerprint();
  auto again = WriteStartupKits(DemoRequest(out));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("--force"));
  EXPECT_EQ(Load(out + "/ca/ca.pem").Sha256Fingerprint(), first);

  ProvisionRequest forced = DemoRequest(out);
  forced.force = true;
  ASSERT_TRUE(WriteStartupKits(forced).ok());
  Certificate ca = Load(out + "/ca/ca.pem");
  EXPECT_NE(ca.Sha256Fingerprint(), first);
  EXPECT_TRUE(VerifyCertificate(Load(out + "/sites/berlin/cert.pem"), ca, absl::Now()).ok());
}

TEST(StartupKitTest, InvalidRequestsWriteNothing) {
  struct Case {
    const char* what;
    std::function<void(ProvisionRequest&)> change;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"duplicate site",
       [](ProvisionRequest& r) {
         r.sites.push_back({"paris", "FR", ""});
       },
       "'paris' is given twice"},
      {"site named like the coordinator",
       [](ProvisionRequest& r) {
         r.sites.push_back({"coordinator", "FR", ""});
       },
       "given twice"},
      {"bad country", [](ProvisionRequest& r) { r.sites[1].country = "fr"; }, "ISO 3166-1"},
      {"bad name", [](ProvisionRequest& r) { r.sites[0].name = "Berlin"; }, "lowercase letter"},
      {"path in name", [](ProvisionRequest& r) { r.sites[0].name = "../x"; }, "lowercase letter"},
      {"no sites", [](ProvisionRequest& r) { r.sites.clear(); }, "at least one site"},
      {"bad federation", [](ProvisionRequest& r) { r.federation = "a\"b"; }, "federation name"},
      {"bad listen", [](ProvisionRequest& r) { r.listen = "127.0.0.1"; }, "has no port"},
      {"wildcard without host",
       [](ProvisionRequest& r) {
         r.listen = "0.0.0.0:50051";
         r.coordinator_hosts.clear();
       },
       "give the address sites should use with --host"},
      {"days", [](ProvisionRequest& r) { r.validity_days = 0; }, "between 1 and"},
      {"bad host", [](ProvisionRequest& r) { r.coordinator_hosts = {"a b"}; }, "host name"},
  };
  for (const Case& c : cases) {
    std::string out = MakeTempDir();
    ProvisionRequest request = DemoRequest(out);
    c.change(request);
    auto summary = WriteStartupKits(request);
    EXPECT_EQ(summary.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(std::string(summary.status().message()), HasSubstr(c.message)) << c.what;
    EXPECT_TRUE(std::filesystem::is_empty(out)) << c.what;
  }
}

// The same federation in memory only: nothing is written, not even with an out_dir, and the
// kits are what WriteStartupKits would write (the loopback simulation's federation).
TEST(StartupKitTest, IssuesKitsInMemoryWithoutWriting) {
  std::string out = MakeTempDir();
  auto issued = IssueStartupKits(DemoRequest(out));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_TRUE(std::filesystem::is_empty(out));
  ASSERT_EQ(issued->kits.size(), 4u);
  EXPECT_EQ(issued->coordinator_address, "127.0.0.1:50051");
  const Certificate& ca = issued->ca.certificate();
  const StartupKit& coordinator = issued->kits[0];
  EXPECT_EQ(coordinator.dir, "coordinator");
  EXPECT_TRUE(
      VerifyCertificate(coordinator.certificate, ca, absl::Now(), CertificateUsage::kTlsServer)
          .ok());
  EXPECT_TRUE(coordinator.certificate.CheckPrivateKeyMatches(coordinator.key).ok());
  EXPECT_THAT(coordinator.config, HasSubstr("allowed = [\"berlin\", \"paris\", \"milan\"]"));
  const StartupKit& paris = issued->kits[2];
  EXPECT_EQ(paris.dir, "sites/paris");
  EXPECT_EQ(paris.config_name, "site.toml");
  EXPECT_EQ(paris.certificate.Subject(), (SubjectName{"paris", "paris", "FR"}));
  EXPECT_TRUE(
      VerifyCertificate(paris.certificate, ca, absl::Now(), CertificateUsage::kTlsClient).ok());
  EXPECT_FALSE(
      VerifyCertificate(paris.certificate, ca, absl::Now(), CertificateUsage::kTlsServer).ok());
  EXPECT_THAT(paris.config, HasSubstr(coordinator.certificate.Sha256Fingerprint()));
  ProvisionRequest bad = DemoRequest("");
  bad.sites.clear();
  EXPECT_EQ(IssueStartupKits(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StartupKitTest, WildcardListenSendsSitesToTheFirstHost) {
  std::string out = MakeTempDir();
  ProvisionRequest request = DemoRequest(out);
  request.listen = "0.0.0.0:7000";
  auto summary = WriteStartupKits(request);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->coordinator_address, "fl.example.org:7000");
  toml::table site = toml::parse_file(out + "/sites/milan/site.toml");
  EXPECT_EQ(site["site"]["coordinator"].value_or(std::string()), "fl.example.org:7000");
  toml::table coordinator = toml::parse_file(out + "/coordinator/coordinator.toml");
  EXPECT_EQ(coordinator["coordinator"]["listen"].value_or(std::string()), "0.0.0.0:7000");
}

TEST(StartupKitTest, EcdsaKitsVerify) {
  std::string out = MakeTempDir();
  ProvisionRequest request = DemoRequest(out);
  request.key_type = KeyType::kEcdsaP256;
  ASSERT_TRUE(WriteStartupKits(request).ok());
  Certificate ca = Load(out + "/ca/ca.pem");
  EXPECT_EQ(ReadPrivateKeyFile(out + "/sites/paris/key.pem")->type(), KeyType::kEcdsaP256);
  EXPECT_TRUE(VerifyCertificate(Load(out + "/sites/paris/cert.pem"), ca, absl::Now()).ok());
}

TEST(ParticipantSpecTest, ParsesNameCountryAndOrganisation) {
  auto spec = ParseParticipantSpec("berlin:DE:Charité: Campus Mitte");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "berlin");
  EXPECT_EQ(spec->country, "DE");
  EXPECT_EQ(spec->organization, "Charité: Campus Mitte");
  auto short_spec = ParseParticipantSpec("paris:FR");
  ASSERT_TRUE(short_spec.ok());
  EXPECT_EQ(short_spec->organization, "");
  EXPECT_THAT(std::string(ParseParticipantSpec("paris").status().message()),
              HasSubstr("NAME:COUNTRY"));
  EXPECT_THAT(std::string(ParseParticipantSpec("paris:France").status().message()),
              HasSubstr("ISO 3166-1"));
  EXPECT_THAT(std::string(ParseParticipantSpec("Paris:FR").status().message()),
              HasSubstr("lowercase"));
  EXPECT_EQ(ParseParticipantSpec("paris:FR:").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateParticipantName(std::string(63, 'a')).ok());
  EXPECT_FALSE(ValidateParticipantName(std::string(64, 'a')).ok());
}

}  // namespace
}  // namespace hansa
