// A coordinator state dir as a two-round secure federation with privacy would leave it:
// ROOT/ca.pem, ROOT/state/audit.jsonl (24 records, signed by the test coordinator) and
// ROOT/state/metrics.jsonl (rounds 0 to 2). Returns ROOT/state.
#pragma once

#include <string>

#include "common/audit/audit_log.h"
#include "common/audit/jurisdiction.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "gtest/gtest.h"
#include "tests/unit/audit/test_federation.h"

namespace hansa {

// `study`: federation_started's GDPR facts (StudyFactsJson's shape); null: none recorded.
inline std::string WriteSyntheticState(const std::string& root,
                                       const std::string& milan_organisation = "Policlinico",
                                       const nlohmann::json& study = nullptr) {
  const auto& fed = testing::TestFederation::Get();
  std::string state = root + "/state";
  EXPECT_TRUE(WriteFileAtomically(root + "/ca.pem", fed.ca().ToPem()).ok());
  auto fp = [&fed](const std::string& site) { return fed.site(site).cert.Sha256Fingerprint(); };
  auto digest = [](const std::string& s) { return ToHex(Sha256(s)); };

  SecureAggregationFields secagg{3, 2, 2, false, 32, 1.0, 20};
  nlohmann::json privacy = {
      {"mechanism", "distributed_discrete_gaussian"}, {"noise_multiplier", 1.1}, {"delta", 1e-5}};
  RoundPlannedFields plan1{
      1,        0,      digest("plan 1"), digest("model 0"), {"berlin", "milan", "paris"},
      "secure", secagg, privacy};
  RoundPlannedFields plan2a{
      2,      0,      digest("plan 2a"), digest("model 1"), {"berlin", "milan", "paris"}, "secure",
      secagg, privacy};
  SecureAggregationFields secagg2{2, 1, 2, false, 32, 1.0, 20};
  RoundPlannedFields plan2b{
      2, 1, digest("plan 2b"), digest("model 1"), {"berlin", "paris"}, "secure", secagg2, privacy};
  std::string refusal(CheckJurisdiction("boston", "US", DefaultAllowedCountries()).message());
  std::vector<std::string> allowed = DefaultAllowedCountries();

  std::vector<AuditEvent> events = {
      FederationStarted({"demo", digest("coordinator.toml"), "coordinator", "DE", "simple_cnn", 2,
                         2, "secure", allowed, study}),
      SiteAdmitted({"berlin", "Charité Berlin", "DE", fp("berlin")}),
      SiteAdmitted({"paris", "AP-HP", "FR", fp("paris")}),
      SiteAdmitted({"milan", milan_organisation, "IT", fp("milan")}),
      SiteRefused({"boston", "MGH", "US", std::string(64, 'b')}, refusal),
      RoundPlanned(plan1),
      SiteConsented(1, "berlin"),
      UpdateReceived(1, "berlin", 1000, digest("u1b")),
      UpdateReceived(1, "milan", 1000, digest("u1m")),
      UpdateReceived(1, "paris", 1000, digest("u1p")),
      AggregateReleased(1, digest("model 1"), {"berlin", "milan", "paris"}),
      PrivacySpentEvent(1, 1.5, 1e-5),
      CheckpointWritten(1, "checkpoints/round-0001.safetensors", digest("model 1")),
      CoordinatorResumed(1),
      RoundPlanned(plan2a),
      SiteDeclined(2, "paris", "privacy budget exhausted"),
      SiteDropped(2, "milan", "upload"),
      UpdateReceived(2, "berlin", 1000, digest("u2b-first")),
      RoundPlanned(plan2b),
      UpdateReceived(2, "berlin", 1000, digest("u2b")),
      UpdateReceived(2, "paris", 1000, digest("u2p")),
      AggregateReleased(2, digest("model 2"), {"berlin", "paris"}),
      PrivacySpentEvent(2, 2.25, 1e-5),
      FederationFinished(2)};
  {
    const auto& who = fed.coordinator();
    auto log = AuditLog::Open(state + "/audit.jsonl", who.Key(), who.cert);
    EXPECT_TRUE(log.ok()) << log.status();
    for (const AuditEvent& e : events) EXPECT_TRUE((*log)->Append(e).ok());
  }
  EXPECT_TRUE(WriteFileAtomically(
                  state + "/metrics.jsonl",
                  "{\"round\":0,\"sites\":0,\"accuracy\":0.1,\"loss\":2.3,\"seconds\":0,"
                  "\"bytes_up\":0,\"bytes_down\":5000}\n"
                  "{\"round\":1,\"sites\":3,\"accuracy\":0.74,\"loss\":0.65,\"seconds\":13.5,"
                  "\"bytes_up\":3000,\"bytes_down\":15000}\n"
                  "{\"round\":2,\"sites\":2,\"accuracy\":0.83,\"loss\":0.45,\"seconds\":22.1,"
                  "\"bytes_up\":2000,\"bytes_down\":10000}\n")
                  .ok());
  return state;
}

}  // namespace hansa
