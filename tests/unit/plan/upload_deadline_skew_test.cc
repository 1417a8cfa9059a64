// The upload deadline between two clocks minutes apart: the coordinator stamps each task with
// the time left (SetUploadTimeLeft) and the site counts it on its own clock
// (LocalizeUploadDeadline), so a site ahead or behind by five minutes gets the same window.
#include <cstdint>
#include <limits>

#include "common/clock/clock.h"
#include "common/plan/plan_writer.h"
#include "gtest/gtest.h"
#include "proto/plan_digest.h"

namespace hansa {
namespace {

TEST(UploadDeadlineSkewTest, ASiteFiveMinutesOffGetsTheWholeUploadWindow) {
  FakeClock coordinator;
  const absl::Duration window = absl::Seconds(90);
  for (absl::Duration skew : {absl::Minutes(-5), absl::ZeroDuration(), absl::Minutes(5)}) {
    SCOPED_TRACE(absl::FormatDuration(skew));
    FakeClock site(coordinator.Now() + skew);
    v1::Task task;
    task.set_kind(v1::Task::TRAIN);
    SetUploadDeadline(coordinator.Now() + window, task.mutable_plan());
    const std::string digest = PlanSha256(task.plan());
    coordinator.Advance(absl::Seconds(10));  // the task waits for its poll
    site.Advance(absl::Seconds(10));
    SetUploadTimeLeft(coordinator.Now(), &task);
    EXPECT_EQ(task.upload_ms_left(), 80000);
    LocalizeUploadDeadline(site.Now(), &task);
    const absl::Time local = absl::FromUnixMillis(task.plan().upload_deadline_unix_ms());
    // Before, the site took the coordinator's absolute time: five minutes ahead, a 90 s window
    // had closed before the site began; five minutes behind, it stayed open five minutes long.
    EXPECT_EQ(local - site.Now(), absl::Seconds(80));
    EXPECT_EQ(PlanSha256(task.plan()), digest);  // the deadline is no part of the plan's digest
  }
}

TEST(UploadDeadlineSkewTest, APlanWithoutADeadlineOrAnOlderCoordinatorIsLeftAlone) {
  FakeClock clock;
  v1::Task none;
  SetUploadTimeLeft(clock.Now(), &none);
  EXPECT_EQ(none.upload_ms_left(), 0);
  LocalizeUploadDeadline(clock.Now(), &none);
  EXPECT_EQ(none.plan().upload_deadline_unix_ms(), 0);

  v1::Task older;  // a coordinator that sends only the absolute time
  older.mutable_plan()->set_upload_deadline_unix_ms(1700000000123);
  LocalizeUploadDeadline(clock.Now() + absl::Minutes(5), &older);
  EXPECT_EQ(older.plan().upload_deadline_unix_ms(), 1700000000123);

  v1::Task late;  // handed out after its deadline: at least a moment, never a negative window
  SetUploadDeadline(clock.Now() - absl::Seconds(1), late.mutable_plan());
  SetUploadTimeLeft(clock.Now(), &late);
  EXPECT_EQ(late.upload_ms_left(), 1);
}

TEST(UploadDeadlineSkewTest, TheSiteBoundsAWindowTheCoordinatorSetsYearsAheadOrPastTheEndOfTime) {
  FakeClock site;
  const absl::Duration longest = absl::Minutes(10);
  for (int64_t left : {int64_t{400} * 24 * 3600 * 1000, std::numeric_limits<int64_t>::max()}) {
    SCOPED_TRACE(left);
    v1::Task task;
    task.set_upload_ms_left(left);
    SetUploadDeadline(site.Now() + absl::Seconds(90), task.mutable_plan());
    LocalizeUploadDeadline(site.Now(), &task);  // no overflow: at most the end of time
    EXPECT_GT(task.plan().upload_deadline_unix_ms(), absl::ToUnixMillis(site.Now()));
    // Without the bound the site's upload, and its shutdown, waited as long as the coordinator
    // chose not to read.
    EXPECT_EQ(SiteUploadDeadline(task.plan(), site.Now(), longest), site.Now() + longest);
  }
  v1::RoundPlan soon;  // a window shorter than the bound is kept
  SetUploadDeadline(site.Now() + absl::Seconds(90), &soon);
  EXPECT_EQ(SiteUploadDeadline(soon, site.Now(), longest), site.Now() + absl::Seconds(90));
  EXPECT_EQ(SiteUploadDeadline(v1::RoundPlan(), site.Now(), longest), site.Now() + longest);
}

}  // namespace
}  // namespace hansa
