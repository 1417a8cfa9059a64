// [monitoring] in coordinator.toml and site.toml: off by default, paths relative to the file,
// the participant's own certificate by default, and HTTPS (with its files checked) exactly when
// the address is not a loopback one.
#include "common/monitoring/monitoring_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hansa {
namespace {

using ::testing::HasSubstr;

MonitoringConfig Read(const std::string& toml) {
  auto cfg = ConfigReader::Parse(toml, "site.toml", "/etc/hansa");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  MonitoringConfig m = ReadMonitoringConfig(*cfg, "/etc/hansa/cert.pem", "/etc/hansa/key.pem");
  EXPECT_TRUE(cfg->Finish().ok()) << cfg->Finish();
  return m;
}

TEST(MonitoringConfigTest, OffByDefaultWithTheParticipantsOwnCertificate) {
  const MonitoringConfig m = Read("");
  EXPECT_EQ(m.listen, "");
  EXPECT_EQ(m.certificate, "/etc/hansa/cert.pem");
  EXPECT_EQ(m.private_key, "/etc/hansa/key.pem");
}

TEST(MonitoringConfigTest, ReadsListenAndPathsRelativeToTheFile) {
  const MonitoringConfig m = Read(
      "[monitoring]\nlisten = \"127.0.0.1:9464\"\ncertificate = \"ops/cert.pem\"\n"
      "private_key = \"ops/key.pem\"\n");
  EXPECT_EQ(m.listen, "127.0.0.1:9464");
  EXPECT_EQ(m.certificate, "/etc/hansa/ops/cert.pem");
  EXPECT_EQ(m.private_key, "/etc/hansa/ops/key.pem");
}

TEST(MonitoringConfigTest, UnknownKeyIsAnError) {
  auto cfg = ConfigReader::Parse("[monitoring]\nlisten = \"127.0.0.1:1\"\nport = 3\n", "site.toml",
                                 "/etc/hansa");
  ASSERT_TRUE(cfg.ok());
  ReadMonitoringConfig(*cfg, "c", "k");
  EXPECT_THAT(std::string(cfg->Finish().message()), HasSubstr("monitoring.port"));
}

TEST(MonitoringConfigTest, LoopbackIsPlainAndAnyOtherAddressNeedsItsTlsFiles) {
  MonitoringConfig m;
  m.listen = "127.0.0.1:9464";
  m.certificate = "/nonexistent/cert.pem";
  m.private_key = "/nonexistent/key.pem";
  auto plain = MonitoringServerOptions(m, "/nonexistent/ca.pem");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->tls.has_value());
  m.listen = "[::1]:9464";
  ASSERT_TRUE(MonitoringServerOptions(m, "/nonexistent/ca.pem").ok());

  m.listen = "0.0.0.0:9464";
  auto https = MonitoringServerOptions(m, "/nonexistent/ca.pem");
  ASSERT_FALSE(https.ok());
  EXPECT_THAT(std::string(https.status().message()), HasSubstr("[monitoring] over HTTPS"));
  EXPECT_THAT(std::string(https.status().message()), HasSubstr("/nonexistent/"));
}

}  // namespace
}  // namespace hansa
