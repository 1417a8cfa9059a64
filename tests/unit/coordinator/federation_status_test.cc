// The federation's status board as the engine fills it (a round's stages, uploads, dropouts,
// refusals, its release and evaluation) and the Prometheus text rendered from a snapshot.
#include "coordinator/federation_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hansa {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

FederationStatusBoard& RunOneRound(FederationStatusBoard& board) {
  board.Update([](FederationStatus& s) {
    s.federation = "fed";
    s.total_rounds = 5;
    s.site_idle = absl::Seconds(30);
  });
  for (const char* site : {"alpha", "beta", "gamma"}) {
    board.SiteJoined(site, "Org", "DE", kT0 + absl::Hours(24 * 100), kT0);
  }
  board.PlanOpened(1, {"alpha", "beta", "gamma"}, kT0);
  board.StageBegan("upload", kT0 + absl::Seconds(2));
  board.UploadStarted();
  board.BytesReceived("alpha", 1000, true);
  board.UploadEnded();
  board.BytesReceived("beta", 3000, true);
  board.SiteDropped("gamma");
  board.SiteRefused("gamma");
  board.StageBegan("idle", kT0 + absl::Seconds(6));
  board.RoundReleased(1, 2, 0, kT0 + absl::Seconds(10));
  board.RoundEvaluated(1, 0.75, 0.5);
  board.PrivacySpent("client_level", 1.5, 10, 1e-5);
  board.AuditState(42, "abc123");
  return board;
}

TEST(FederationStatusBoardTest, RecordsARoundItsStagesAndItsSites) {
  FederationStatusBoard board;
  const FederationStatus s = RunOneRound(board).Snapshot();
  ASSERT_EQ(s.history.size(), 1u);
  const RoundHistory& r = s.history[0];
  EXPECT_EQ(r.round, 1);
  EXPECT_EQ(r.sites, 2);
  EXPECT_DOUBLE_EQ(r.seconds, 10);
  EXPECT_DOUBLE_EQ(r.stage_seconds.at("upload"), 4);
  EXPECT_EQ(r.bytes_received, 4000);
  EXPECT_DOUBLE_EQ(r.aggregation_bytes_per_second, 1000);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.75);
  EXPECT_EQ(s.completed_rounds, 1);
  EXPECT_EQ(s.sites.at("alpha").uploads, 1);
  EXPECT_TRUE(s.sites.at("beta").round_uploaded);
  EXPECT_EQ(s.sites.at("gamma").dropouts, 1);
  EXPECT_EQ(s.sites.at("gamma").refusals, 1);
  EXPECT_EQ(s.uploads_in_flight, 0);
  EXPECT_EQ(s.audit_head, "abc123");
}

TEST(FederationStatusBoardTest, SnapshotIsACopy) {
  FederationStatusBoard board;
  RunOneRound(board);
  const FederationStatus before = board.Snapshot();
  board.BytesReceived("alpha", 5, false);
  board.SiteSeen("alpha", kT0 + absl::Hours(1));
  EXPECT_EQ(before.sites.at("alpha").bytes_received, 1000);
  EXPECT_EQ(board.Snapshot().sites.at("alpha").bytes_received, 1005);
}

TEST(FederationMetricsTextTest, ShowsSitesConnectedRoundsAndBudget) {
  FederationStatusBoard board;
  const FederationStatus s = RunOneRound(board).Snapshot();
  const std::string text = FederationMetricsText(s, kT0 + absl::Seconds(10));
  EXPECT_THAT(text, HasSubstr("# TYPE hansa_rounds_completed_total counter\n"
                              "hansa_rounds_completed_total{federation=\"fed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("hansa_sites_connected{federation=\"fed\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("hansa_site_received_bytes_total{country=\"DE\",site=\"beta\"} 3000\n"));
  EXPECT_THAT(text, HasSubstr("hansa_site_dropouts_total{country=\"DE\",site=\"gamma\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("hansa_round_stage{stage=\"idle\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("hansa_round_stage{stage=\"upload\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("hansa_stage_duration_seconds_count{stage=\"upload\"} 1\n"));
  EXPECT_THAT(
      text, HasSubstr("hansa_aggregation_throughput_bytes_per_second{federation=\"fed\"} 1000\n"));
  EXPECT_THAT(text, HasSubstr("hansa_privacy_epsilon_spent{guarantee=\"client_level\"} 1.5\n"));
  EXPECT_THAT(text, HasSubstr("hansa_privacy_epsilon_budget{guarantee=\"client_level\"} 10\n"));
  EXPECT_THAT(text, HasSubstr("hansa_audit_records_total{federation=\"fed\"} 42\n"));
  EXPECT_THAT(text, HasSubstr("hansa_model_accuracy{federation=\"fed\"} 0.75\n"));
  EXPECT_THAT(text, Not(HasSubstr("certificate=\"ca\"")));  // not described: no series

  // Silent for longer than site_idle: no longer connected.
  EXPECT_THAT(FederationMetricsText(s, kT0 + absl::Seconds(31)),
              HasSubstr("hansa_sites_connected{federation=\"fed\"} 0\n"));
}

}  // namespace
}  // namespace hansa
