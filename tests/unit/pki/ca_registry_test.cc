// The operator's CA folder (common/pki/ca_registry.h) and the participant's enrollment folder
// (common/pki/enrollment.h): a request made at the participant, signed, renewed, revoked and
// installed, with no private key but the CA's in the operator's folders.
#include "common/pki/ca_registry.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <limits>
#include <string>

#include <toml++/toml.h>

#include "common/fileio/fileio.h"
#include "common/pki/enrollment.h"
#include "common/pki/revocation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/pki_ca_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

int Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<int>(st.st_mode & 0777);
}

CaOptions TestCa() {
  CaOptions options;
  options.federation = "test";
  options.organization = "Operators";
  options.country = "DE";
  return options;
}

// A participant's enrollment: its key stays in the returned folder.
Enrollment EnrollIn(const std::string& dir, const std::string& name,
                    ParticipantRole role = ParticipantRole::kSite,
                    std::vector<std::string> hosts = {}) {
  EnrollRequest request;
  request.out_dir = dir;
  request.role = role;
  request.subject = {name, "Org " + name, "FR"};
  request.hosts = std::move(hosts);
  auto enrolled = Enroll(request);
  EXPECT_TRUE(enrolled.ok()) << enrolled.status();
  return *std::move(enrolled);
}

class CaRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    ca_dir_ = root_ + "/ca";
    auto registry = CaRegistry::Init(ca_dir_, TestCa());
    ASSERT_TRUE(registry.ok()) << registry.status();
  }

  CaRegistry Open() {
    auto registry = CaRegistry::Open(ca_dir_);
    EXPECT_TRUE(registry.ok()) << registry.status();
    return *std::move(registry);
  }

  Certificate SignSite(const std::string& name, int days = 365) {
    Enrollment e = EnrollIn(root_ + "/" + name, name);
    SignOptions options;
    options.days = days;
    auto cert = Open().Sign(e.request, options);
    EXPECT_TRUE(cert.ok()) << cert.status();
    return *std::move(cert);
  }

  Certificate SignCoordinator() {
    Enrollment e = EnrollIn(root_ + "/coordinator", "coordinator", ParticipantRole::kCoordinator,
                            {"fl.example.org", "127.0.0.1"});
    SignOptions options;
    options.role = ParticipantRole::kCoordinator;
    options.extra_hosts = {"localhost", "127.0.0.1"};
    options.address = "127.0.0.1:50999";
    auto cert = Open().Sign(e.request, options);
    EXPECT_TRUE(cert.ok()) << cert.status();
    return *std::move(cert);
  }

  std::string root_, ca_dir_;
};

TEST_F(CaRegistryTest, InitWritesTheCaOnceWithAnEmptyRevocationList) {
  EXPECT_EQ(Mode(ca_dir_ + "/ca-key.pem"), 0600);
  CaRegistry registry = Open();
  EXPECT_EQ(registry.ca().certificate().Subject(), (SubjectName{"test CA", "Operators", "DE"}));
  EXPECT_TRUE(registry.records().empty());
  auto crl = RevocationList::FromFile(ca_dir_ + "/crl.pem", registry.ca().certificate());
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_TRUE(crl->entries().empty());

  // While one command holds the folder, a second is turned away instead of interleaving.
  auto busy = CaRegistry::Open(ca_dir_);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(busy.status().message(), HasSubstr("another hansa ca command"));
  registry = CaRegistry(std::move(*CaRegistry::Init(root_ + "/second", TestCa())));

  const std::string ca_pem = *ReadFile(ca_dir_ + "/ca.pem");
  auto again = CaRegistry::Init(ca_dir_, TestCa());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("created once"));
  EXPECT_EQ(*ReadFile(ca_dir_ + "/ca.pem"), ca_pem);
}

TEST_F(CaRegistryTest, OpenNamesAFolderWithoutACa) {
  auto registry = CaRegistry::Open(root_ + "/nothing");
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(registry.status().message(), HasSubstr("hansa ca init"));
}

TEST_F(CaRegistryTest, SignIssuesForTheRequestsKeyAndRecordsIt) {
  Certificate cert = SignSite("alpha");
  auto key = ReadPrivateKeyFile(root_ + "/alpha/key.pem");
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(cert.CheckPrivateKeyMatches(*key).ok());
  CaRegistry registry = Open();
  EXPECT_TRUE(VerifyCertificate(cert, registry.ca().certificate(), absl::Now(),
                                CertificateUsage::kTlsClient)
                  .ok());
  EXPECT_EQ(cert.Subject(), (SubjectName{"alpha", "Org alpha", "FR"}));
  ASSERT_EQ(registry.records().size(), 1u);
  const IssuedRecord& r = registry.records()[0];
  EXPECT_EQ(r.name, "alpha");
  EXPECT_EQ(r.role, ParticipantRole::kSite);
  EXPECT_EQ(r.serial_hex, cert.SerialHex());
  EXPECT_EQ(r.fingerprint, cert.Sha256Fingerprint());
  EXPECT_EQ(r.not_after, cert.NotAfter());
  EXPECT_EQ(r.Status(absl::Now()), "valid");
  EXPECT_EQ(Certificate::FromFile(registry.IssuedPath(r.serial_hex))->Sha256Fingerprint(),
            cert.Sha256Fingerprint());
}

TEST_F(CaRegistryTest, SignRefusesANameThatHoldsAValidCertificate) {
  SignSite("alpha");
  Enrollment again = EnrollIn(root_ + "/alpha-2", "alpha");
  auto cert = Open().Sign(again.request, SignOptions{});
  ASSERT_FALSE(cert.ok());
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(cert.status().message(), HasSubstr("hansa ca renew alpha"));
  EXPECT_EQ(Open().records().size(), 1u);
}

TEST_F(CaRegistryTest, SignRefusesNamesThatAreNotParticipantNames) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto csr = SigningRequest::Create(*key, {"Alpha Clinic", "", "FR"});
  ASSERT_TRUE(csr.ok());
  auto cert = Open().Sign(*csr, SignOptions{});
  ASSERT_FALSE(cert.ok());
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cert.status().message(), HasSubstr("lowercase letter"));
  SignOptions too_long;
  too_long.days = 20000;
  auto outlives = Open().Sign(EnrollIn(root_ + "/beta", "beta").request, too_long);
  EXPECT_EQ(outlives.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(outlives.status().message(), HasSubstr("outlive the federation CA"));
}

TEST_F(CaRegistryTest, ACoordinatorGetsItsHostsAndBecomesThePinnedCoordinator) {
  EXPECT_FALSE(Open().CurrentCoordinator().has_value());
  Certificate cert = SignCoordinator();
  EXPECT_THAT(cert.SubjectAltNames(), ::testing::UnorderedElementsAre(
                                          "DNS:fl.example.org", "DNS:localhost", "IP:127.0.0.1"));
  CaRegistry registry = Open();
  ASSERT_TRUE(registry.CurrentCoordinator().has_value());
  EXPECT_EQ(registry.CurrentCoordinator()->Sha256Fingerprint(), cert.Sha256Fingerprint());
  EXPECT_EQ(registry.CoordinatorAddress(), "127.0.0.1:50999");
  EXPECT_TRUE(VerifyCertificate(cert, registry.ca().certificate(), absl::Now(),
                                CertificateUsage::kTlsServer)
                  .ok());

  Enrollment hostless = EnrollIn(root_ + "/other", "other");
  SignOptions options;
  options.role = ParticipantRole::kCoordinator;
  auto refused = registry.Sign(hostless.request, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("--host"));
}

TEST_F(CaRegistryTest, OnlyTheCaGrantsTheOperatorUnit) {
  // A site's request that asks for OU=operator (made by OpenSSL's own tool) gets a site
  // certificate without it.
  Enrollment mallory = EnrollIn(root_ + "/mallory", "mallory");
  const std::string csr_path = root_ + "/mallory/operator.csr";
  const std::string command = "openssl req -new -key " + root_ + "/mallory/key.pem -subj " +
                              "'/C=FR/O=Org/OU=operator/CN=mallory' -out " + csr_path;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  auto csr = SigningRequest::FromFile(csr_path);
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto site = Open().Sign(*csr, SignOptions{});
  ASSERT_TRUE(site.ok()) << site.status();
  EXPECT_EQ(site->OrganizationalUnit(), "");

  Enrollment e = EnrollIn(root_ + "/alice", "alice");
  SignOptions options;
  options.role = ParticipantRole::kOperator;
  auto op = Open().Sign(e.request, options);
  ASSERT_TRUE(op.ok()) << op.status();
  EXPECT_EQ(op->OrganizationalUnit(), kOperatorUnit);
  EXPECT_EQ(op->Subject(), (SubjectName{"alice", "Org alice", "FR"}));
  CaRegistry registry = Open();
  EXPECT_TRUE(
      VerifyCertificate(*op, registry.ca().certificate(), absl::Now(), CertificateUsage::kTlsClient)
          .ok());
  EXPECT_EQ(registry.records().back().role, ParticipantRole::kOperator);
  EXPECT_THAT(FormatIssuedTable(registry.records(), absl::Now()), HasSubstr("operator"));
  // The role survives the index and a renewal.
  auto renewed = registry.Renew("alice", 30);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->OrganizationalUnit(), kOperatorUnit);
  EXPECT_EQ(ParseRole("auditor").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CaRegistryTest, RenewKeepsKeyAndSubjectAndLeavesTheOldCertificateValid) {
  Certificate old = SignSite("alpha", 20);
  const absl::Time later = absl::Now() + absl::Hours(24 * 10);
  auto renewed = Open().Renew("alpha", 365, later);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_NE(renewed->SerialHex(), old.SerialHex());
  EXPECT_EQ(renewed->Subject(), old.Subject());
  EXPECT_EQ(renewed->PublicKeyPem(), old.PublicKeyPem());
  EXPECT_EQ(renewed->SubjectAltNames(), old.SubjectAltNames());
  EXPECT_EQ(renewed->NotAfter(),
            absl::FromUnixSeconds(absl::ToUnixSeconds(later)) + absl::Hours(24 * 365));
  CaRegistry registry = Open();
  ASSERT_EQ(registry.records().size(), 2u);
  EXPECT_EQ(registry.records()[0].Status(absl::Now()), "valid");
  EXPECT_EQ(registry.records()[1].Status(absl::Now()), "valid");

  auto unknown = registry.Renew("nobody", 365);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("hansa ca sign"));
}

TEST_F(CaRegistryTest, RevokeListsEveryRevokedSerialInANewerRevocationList) {
  Certificate alpha = SignSite("alpha");
  auto alpha_renewed = Open().Renew("alpha", 365);
  ASSERT_TRUE(alpha_renewed.ok());
  Certificate beta = SignSite("beta");
  auto revoked = Open().Revoke("alpha", "keyCompromise");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->size(), 2u);
  auto beta_revoked = Open().Revoke(beta.SerialHex(), "cessationOfOperation");
  ASSERT_TRUE(beta_revoked.ok()) << beta_revoked.status();

  CaRegistry registry = Open();
  auto crl = RevocationList::FromFile(ca_dir_ + "/crl.pem", registry.ca().certificate());
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_EQ(crl->number(), 3u);  // the empty list of init, then one per revocation
  ASSERT_EQ(crl->entries().size(), 3u);
  ASSERT_NE(crl->Find(alpha.SerialHex()), nullptr);
  EXPECT_EQ(crl->Find(alpha.SerialHex())->reason, "keyCompromise");
  EXPECT_NE(crl->Find(alpha_renewed->SerialHex()), nullptr);
  EXPECT_EQ(crl->Find(beta.SerialHex())->reason, "cessationOfOperation");
  for (const IssuedRecord& r : registry.records()) EXPECT_EQ(r.Status(absl::Now()), "revoked");

  auto twice = registry.Revoke("alpha", "unspecified");
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kFailedPrecondition);
  auto unknown = registry.Revoke("gamma", "unspecified");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  auto bad_reason = registry.Revoke("alpha", "boredom");
  EXPECT_EQ(bad_reason.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_reason.status().message(), HasSubstr("keyCompromise"));
  auto renew = registry.Renew("alpha", 365);
  EXPECT_EQ(renew.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(renew.status().message(), HasSubstr("enroll again with a new key"));
  // A revoked name may enroll again with a new key.
  auto again = registry.Sign(EnrollIn(root_ + "/alpha-new", "alpha").request, SignOptions{});
  EXPECT_TRUE(again.ok()) << again.status();
}

// index.tsv names files under issued/ by serial: a serial that is not hex (a path) is refused
// when the registry is opened, and a revocation list at the largest number is not followed by
// one that would wrap to 0 (every coordinator would take it as older).
TEST_F(CaRegistryTest, RefusesASerialThatIsNotHexAndACrlNumberThatWouldWrap) {
  SignSite("alpha");
  const std::string index = ca_dir_ + "/index.tsv";
  auto text = ReadFile(index);
  ASSERT_TRUE(text.ok());
  const std::string serial = Open().records().front().serial_hex;
  std::string edited = *text;
  edited.replace(edited.find(serial), serial.size(), "../../../etc/passwd");
  ASSERT_TRUE(WriteFileAtomically(index, edited).ok());
  auto opened = CaRegistry::Open(ca_dir_);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("is not a hexadecimal serial number"));
  ASSERT_TRUE(WriteFileAtomically(index, *text).ok());

  CaRegistry registry = Open();
  auto last = RevocationList::Issue(registry.ca(), {}, std::numeric_limits<uint64_t>::max(),
                                    absl::Now(), absl::Now() + absl::Hours(24));
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(WriteRevocationListFile(ca_dir_ + "/crl.pem", *last).ok());
  auto revoked = registry.Revoke("alpha", "superseded");
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(revoked.status().message(), HasSubstr("largest CRL number"));
}

TEST_F(CaRegistryTest, ListMarksValidCertificatesThatExpireWithin30Days) {
  SignSite("alpha", 10);
  SignSite("beta", 365);
  const std::string table = FormatIssuedTable(Open().records(), absl::Now());
  EXPECT_THAT(table, HasSubstr("! alpha"));
  EXPECT_THAT(table, HasSubstr("hansa ca renew alpha"));
  EXPECT_THAT(table, HasSubstr("  beta"));
  EXPECT_THAT(table, Not(HasSubstr("! beta")));
  EXPECT_THAT(table, HasSubstr("1 valid certificate(s) expire within 30 days"));
  // Past its end it is expired, no longer a warning.
  const std::string later = FormatIssuedTable(Open().records(), absl::Now() + absl::Hours(24 * 11));
  EXPECT_THAT(later, HasSubstr("expired"));
  EXPECT_THAT(later, Not(HasSubstr("! alpha")));
}

TEST_F(CaRegistryTest, EnrollWritesAPrivateKeyOnlyAtTheParticipantAndKeepsIt) {
  Enrollment e = EnrollIn(root_ + "/alpha", "alpha");
  EXPECT_EQ(Mode(e.key_path), 0600);
  EXPECT_THAT(*ReadFile(e.request_path), HasSubstr("BEGIN CERTIFICATE REQUEST"));
  EXPECT_THAT(*ReadFile(e.request_path), Not(HasSubstr("PRIVATE KEY")));
  const std::string key_pem = *ReadFile(e.key_path);
  EnrollRequest again;
  again.out_dir = root_ + "/alpha";
  again.subject = {"alpha", "", "FR"};
  auto refused = Enroll(again);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("hansa ca renew"));
  EXPECT_EQ(*ReadFile(e.key_path), key_pem);
}

TEST_F(CaRegistryTest, AcceptInstallsTheReplyAndPinsTheCoordinator) {
  Certificate coordinator = SignCoordinator();
  Certificate cert = SignSite("alpha");
  CaRegistry registry = Open();
  const std::string reply = root_ + "/reply";
  auto files = WriteReply(reply, registry, cert);
  ASSERT_TRUE(files.ok()) << files.status();
  // A site's reply: no revocation list, which only the coordinator reads.
  EXPECT_THAT(*files, ::testing::ElementsAre("cert.pem", "ca.pem", "coordinator.sha256",
                                             "coordinator.address"));
  AcceptOptions options;
  options.dir = root_ + "/alpha";
  options.reply_dir = reply;
  auto accepted = AcceptReply(options);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->role, ParticipantRole::kSite);
  EXPECT_TRUE(accepted->config_created);
  auto config = toml::parse_file(options.dir + "/site.toml");
  EXPECT_EQ(config["site"]["name"].value_or(std::string()), "alpha");
  EXPECT_EQ(config["site"]["coordinator"].value_or(std::string()), "127.0.0.1:50999");
  EXPECT_EQ(config["policy"]["coordinator_fingerprint"].value_or(std::string()),
            coordinator.Sha256Fingerprint());
  EXPECT_EQ(Certificate::FromFile(options.dir + "/cert.pem")->Sha256Fingerprint(),
            cert.Sha256Fingerprint());

  // A later reply updates the address and the pin and keeps the site's own edits.
  ASSERT_TRUE(WriteFileAtomically(options.dir + "/site.toml",
                                  *ReadFile(options.dir + "/site.toml") + "train_limit = 500\n")
                  .ok());
  options.coordinator_address = "fl.example.org:443";
  auto again = AcceptReply(options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->config_created);
  auto updated = toml::parse_file(options.dir + "/site.toml");
  EXPECT_EQ(updated["site"]["coordinator"].value_or(std::string()), "fl.example.org:443");
  EXPECT_EQ(updated["data"]["train_limit"].value_or(0), 500);
}

// The pin is compared with the coordinator's lowercase fingerprint: 64 characters that are not
// all hex digits would make the site refuse every handshake, so accept refuses them up front.
TEST_F(CaRegistryTest, AcceptPinsOnlyAFingerprintAndWritesItInLowercase) {
  Certificate coordinator = SignCoordinator();
  Certificate cert = SignSite("alpha");
  const std::string reply = root_ + "/reply";
  ASSERT_TRUE(WriteReply(reply, Open(), cert).ok());
  AcceptOptions options;
  options.dir = root_ + "/alpha";
  options.reply_dir = reply;
  std::string not_hex = coordinator.Sha256Fingerprint();
  not_hex[10] = 'g';
  ASSERT_TRUE(WriteFileAtomically(reply + "/coordinator.sha256", not_hex + "\n").ok());
  auto refused = AcceptReply(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("64 hex digits"));
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/cert.pem"));

  std::string upper = coordinator.Sha256Fingerprint();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ASSERT_TRUE(WriteFileAtomically(reply + "/coordinator.sha256", upper + "\n").ok());
  auto accepted = AcceptReply(options);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->coordinator_fingerprint, coordinator.Sha256Fingerprint());
  auto config = toml::parse_file(options.dir + "/site.toml");
  EXPECT_EQ(config["policy"]["coordinator_fingerprint"].value_or(std::string()),
            coordinator.Sha256Fingerprint());
}

// A site config without the lines accept rewrites refuses the reply before it is installed:
// nothing half-done for the participant to untangle.
TEST_F(CaRegistryTest, AcceptInstallsNothingWhenTheSiteConfigCannotTakeThePin) {
  SignCoordinator();
  Certificate cert = SignSite("alpha");
  const std::string reply = root_ + "/reply";
  ASSERT_TRUE(WriteReply(reply, Open(), cert).ok());
  AcceptOptions options;
  options.dir = root_ + "/alpha";
  options.reply_dir = reply;
  const std::string own = "[site]\nname = \"alpha\"\n";
  ASSERT_TRUE(WriteFileAtomically(options.dir + "/site.toml", own).ok());
  auto refused = AcceptReply(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("has no line 'coordinator = ...'"));
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/cert.pem"));
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/ca.pem"));
  EXPECT_EQ(*ReadFile(options.dir + "/site.toml"), own);
}

// An address that is not UTF-8 would make a site.toml that no TOML reader loads.
TEST_F(CaRegistryTest, AcceptRefusesACoordinatorAddressThatIsNotAHostAndPort) {
  SignCoordinator();
  Certificate cert = SignSite("alpha");
  const std::string reply = root_ + "/reply";
  ASSERT_TRUE(WriteReply(reply, Open(), cert).ok());
  ASSERT_TRUE(
      WriteFileAtomically(reply + "/coordinator.address", "fl.\xa9xample.org:50051\n").ok());
  AcceptOptions options;
  options.dir = root_ + "/alpha";
  options.reply_dir = reply;
  auto refused = AcceptReply(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("'fl.\\xa9xample.org:50051' is not a HOST:PORT"));
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/cert.pem"));
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/site.toml"));

  options.coordinator_address = "fl.example.org 443";
  EXPECT_EQ(AcceptReply(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.coordinator_address = "fl.example.org:443";
  auto accepted = AcceptReply(options);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  auto config = toml::parse_file(options.dir + "/site.toml");
  EXPECT_EQ(config["site"]["coordinator"].value_or(std::string()), "fl.example.org:443");
}

TEST_F(CaRegistryTest, TheCoordinatorInstallsItsCertificateAndTheRevocationList) {
  Certificate cert = SignCoordinator();
  CaRegistry registry = Open();
  const std::string reply = root_ + "/reply";
  auto files = WriteReply(reply, registry, cert);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_THAT(*files, ::testing::Contains("crl.pem"));
  AcceptOptions options;
  options.dir = root_ + "/coordinator";
  options.reply_dir = reply;
  auto accepted = AcceptReply(options);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->role, ParticipantRole::kCoordinator);
  auto config = toml::parse_file(options.dir + "/coordinator.toml");
  EXPECT_EQ(config["coordinator"]["listen"].value_or(std::string()), "127.0.0.1:50999");
  EXPECT_EQ(config["federation"]["name"].value_or(std::string()), "test");
  EXPECT_EQ(config["pki"]["revocation_list"].value_or(std::string()), "crl.pem");
  EXPECT_TRUE(RevocationList::FromFile(options.dir + "/crl.pem", registry.ca().certificate()).ok());

  // A list another key signed is refused before anything is installed.
  auto other = CaRegistry::Init(root_ + "/other-ca", TestCa());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(WriteFileAtomically(reply + "/crl.pem", *ReadFile(root_ + "/other-ca/crl.pem")).ok());
  std::filesystem::remove(options.dir + "/cert.pem");
  auto forged = AcceptReply(options);
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kPermissionDenied) << forged.status();
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/cert.pem"));
}

TEST_F(CaRegistryTest, AcceptRefusesACertificateOfAnotherKeyOrAnotherCa) {
  SignCoordinator();
  Certificate alpha = SignSite("alpha");
  Certificate beta = SignSite("beta");
  CaRegistry registry = Open();
  ASSERT_TRUE(WriteReply(root_ + "/reply-beta", registry, beta).ok());
  AcceptOptions options;
  options.dir = root_ + "/alpha";
  options.reply_dir = root_ + "/reply-beta";
  auto wrong_key = AcceptReply(options);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_EQ(wrong_key.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong_key.status().message(), HasSubstr("is not for the key"));
  EXPECT_FALSE(std::filesystem::exists(options.dir + "/cert.pem"));

  ASSERT_TRUE(WriteReply(root_ + "/reply-alpha", registry, alpha).ok());
  options.reply_dir = root_ + "/reply-alpha";
  ASSERT_TRUE(AcceptReply(options).ok());
  // Another federation's CA, which signed a certificate for the same key.
  auto other = CaRegistry::Init(root_ + "/other-ca", TestCa());
  ASSERT_TRUE(other.ok());
  auto csr = SigningRequest::FromFile(root_ + "/alpha/request.csr");
  ASSERT_TRUE(csr.ok());
  auto foreign = other->Sign(*csr, SignOptions{});
  ASSERT_TRUE(foreign.ok());
  ASSERT_TRUE(WriteReply(root_ + "/reply-other", *other, *foreign).ok());
  ASSERT_TRUE(WriteFileAtomically(root_ + "/reply-other/coordinator.sha256",
                                  *ReadFile(root_ + "/reply-alpha/coordinator.sha256"))
                  .ok());
  options.reply_dir = root_ + "/reply-other";
  options.coordinator_address = "127.0.0.1:1";
  auto switched = AcceptReply(options);
  ASSERT_FALSE(switched.ok());
  EXPECT_EQ(switched.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(switched.status().message(), HasSubstr("another CA"));
}

TEST_F(CaRegistryTest, NoPrivateKeyButTheCasInTheOperatorsFolders) {
  SignCoordinator();
  Certificate alpha = SignSite("alpha");
  CaRegistry registry = Open();
  ASSERT_TRUE(WriteReply(root_ + "/reply", registry, alpha).ok());
  ASSERT_TRUE(registry.Renew("alpha", 30).ok());
  ASSERT_TRUE(registry.Revoke("alpha", "superseded").ok());
  int scanned = 0;
  for (const std::string& dir : {ca_dir_, root_ + "/reply"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      ++scanned;
      const std::string path = entry.path().string();
      const bool has_key = ReadFile(path)->find("PRIVATE KEY") != std::string::npos;
      EXPECT_EQ(has_key, path == ca_dir_ + "/ca-key.pem") << path;
    }
  }
  EXPECT_GE(scanned, 9);
}

}  // namespace
}  // namespace hansa
