// The pieces of `[experiment] workers = N` that need no training: the split of the sites, the
// torchrun variables, the TCPStore rendezvous (ranks as threads) and what rank 0 refuses to
// spread. Whole runs over worker processes: tests/integration/workers_test.cc.
#include "sim/workers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/model/models.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"
#include "common/pki/signing_request.h"
#include "coordinator/strategy.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(SiteShareTest, SplitsContiguouslyWithTheRemainderOnTheFirstRanks) {
  // 10 sites over 3 workers: 4, 3, 3.
  EXPECT_EQ(SiteShare(10, 3, 0), std::make_pair(0, 4));
  EXPECT_EQ(SiteShare(10, 3, 1), std::make_pair(4, 3));
  EXPECT_EQ(SiteShare(10, 3, 2), std::make_pair(7, 3));
  EXPECT_EQ(SiteShare(4, 2, 1), std::make_pair(2, 2));
  EXPECT_EQ(SiteShare(5, 1, 0), std::make_pair(0, 5));
}

TEST(WorkerEnvironmentTest, ReadsTheTorchrunVariablesAndNamesWhatIsWrong) {
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  ::setenv("MASTER_PORT", "29500", 1);
  StatusOr<WorkerEnvironment> env = ReadWorkerEnvironment(2);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->world_size, 2);
  EXPECT_EQ(env->master_addr, "10.0.0.7");
  EXPECT_EQ(env->master_port, 29500);

  StatusOr<WorkerEnvironment> other = ReadWorkerEnvironment(4);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(),
              HasSubstr("WORLD_SIZE is 2 but the experiment has workers = 4"));
  ::setenv("RANK", "2", 1);
  StatusOr<WorkerEnvironment> rank = ReadWorkerEnvironment(2);
  EXPECT_EQ(rank.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rank.status().message(), HasSubstr("RANK is '2'; it must be 0..1"));
  ::setenv("RANK", "0", 1);
  ::unsetenv("MASTER_PORT");
  StatusOr<WorkerEnvironment> port = ReadWorkerEnvironment(2);
  EXPECT_THAT(port.status().message(), HasSubstr("MASTER_PORT is not set"));
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR"}) ::unsetenv(v);
}

TEST(RendezvousTest, RanksAsThreadsSeeEachOthersKeysAndCounters) {
  const int port = FreePort();
  std::unique_ptr<RendezvousStore> stores[2];
  std::thread rank1([&] {
    RendezvousOptions o;
    o.port = port;
    o.rank = 1;
    o.world_size = 2;
    o.timeout = std::chrono::seconds(60);
    StatusOr<std::unique_ptr<RendezvousStore>> s = JoinRendezvous(o);
    if (s.ok()) stores[1] = *std::move(s);
  });
  RendezvousOptions o;
  o.port = port;
  o.world_size = 2;
  o.timeout = std::chrono::seconds(60);
  StatusOr<std::unique_ptr<RendezvousStore>> s0 = JoinRendezvous(o);
  rank1.join();
  ASSERT_TRUE(s0.ok()) << s0.status();
  ASSERT_NE(stores[1], nullptr);
  stores[0] = *std::move(s0);
  EXPECT_EQ(stores[1]->rank(), 1);
  ASSERT_TRUE(stores[0]->Set("setup", std::string("a\0b", 3)).ok());
  StatusOr<std::string> got = stores[1]->Get("setup", std::chrono::seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::string("a\0b", 3));
  EXPECT_EQ(*stores[1]->Check({"setup"}), true);
  EXPECT_EQ(*stores[1]->Check({"setup", "other"}), false);
  EXPECT_EQ(*stores[1]->Add("beat", 1), 1);
  EXPECT_EQ(*stores[0]->Add("beat", 0), 1);
  StatusOr<std::string> late = stores[1]->Get("never", std::chrono::milliseconds(50));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(late.status().message(), HasSubstr("'never' not set"));
}

TEST(RendezvousTest, RefusesARankOutsideTheWorldAndABadPort) {
  RendezvousOptions o;
  o.rank = 2;
  o.world_size = 2;
  EXPECT_EQ(JoinRendezvous(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 0;
  o.port = 70000;
  StatusOr<std::unique_ptr<RendezvousStore>> bad = JoinRendezvous(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("is not host:port"));
}

TEST(WorkersExperimentTest, WorkersResolveToThemselvesAndOneLeavesTheFileAsBefore) {
  StatusOr<ExperimentConfig> e = ParseExperiment(
      "[experiment]\nsites = 6\nworkers = 3\nworker_timeout = 9\n", "w.toml", "/tmp");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->base.workers, 3);
  EXPECT_EQ(e->base.worker_timeout_seconds, 9);
  EXPECT_EQ(e->Runs()[0].workers, 3);
  StatusOr<ExperimentConfig> again = ParseExperiment(e->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ResolvedToml(), e->ResolvedToml());
  EXPECT_THAT(e->ResolvedToml(), HasSubstr("workers = 3\nworker_timeout = 9\n"));
  // One worker (the default): an experiment.toml written before workers existed still matches.
  StatusOr<ExperimentConfig> one = ParseExperiment("[experiment]\nsites = 6\n", "1.toml", "/tmp");
  ASSERT_TRUE(one.ok());
  EXPECT_THAT(one->ResolvedToml(), ::testing::Not(HasSubstr("workers")));
  StatusOr<ExperimentConfig> zero =
      ParseExperiment("[experiment]\nworkers = 0\n", "0.toml", "/tmp");
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("workers"));
}

TEST(LoopbackEnrollmentTest, IssuesASiteCertificateFromItsRequestAndOnlyForThatSite) {
  StatusOr<std::unique_ptr<LoopbackFederation>> f =
      LoopbackFederation::Create({"site-000", "site-001"}, "EU");
  ASSERT_TRUE(f.ok()) << f.status();
  StatusOr<PrivateKey> key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  StatusOr<SigningRequest> request = SigningRequest::Create(*key, {"site-001", "site-001", "EU"});
  ASSERT_TRUE(request.ok()) << request.status();
  StatusOr<std::string> issued = (*f)->IssueSiteCertificate(1, request->ToPem());
  ASSERT_TRUE(issued.ok()) << issued.status();
  StatusOr<Certificate> certificate = Certificate::FromPem(*issued);
  ASSERT_TRUE(certificate.ok());
  EXPECT_EQ(certificate->Subject().common_name, "site-001");
  EXPECT_TRUE(certificate->CheckPrivateKeyMatches(*key).ok());  // the key stayed with the site

  StatusOr<std::string> other = (*f)->IssueSiteCertificate(0, request->ToPem());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.status().message(), HasSubstr("names 'site-001', not 'site-000'"));
  EXPECT_EQ((*f)->IssueSiteCertificate(2, request->ToPem()).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*f)->IssueSiteCertificate(1, "not a request").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Rank 0 of two, with a second rank joined by a thread that then only waits.
class RemoteSitesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerEnvironment env;
    env.world_size = 2;
    env.master_port = FreePort();
    std::thread rank1([&] {
      WorkerEnvironment e = env;
      e.rank = 1;
      StatusOr<std::unique_ptr<CellWorkers>> w = CellWorkers::Join(e, std::chrono::seconds(60));
      if (w.ok()) rank1_ = *std::move(w);
    });
    StatusOr<std::unique_ptr<CellWorkers>> w = CellWorkers::Join(env, std::chrono::seconds(60));
    rank1.join();
    ASSERT_TRUE(w.ok()) << w.status();
    rank0_ = *std::move(w);
    ASSERT_NE(rank1_, nullptr);
    StatusOr<std::unique_ptr<LoopbackFederation>> f =
        LoopbackFederation::Create({"site-000", "site-001", "site-002"}, "EU");
    ASSERT_TRUE(f.ok()) << f.status();
    federation_ = *std::move(f);
    StatusOr<Model> model = InitialModel("mlp", 0);
    ASSERT_TRUE(model.ok());
    layout_ = model->layout;
  }
  StatusOr<std::unique_ptr<RemoteSites>> Start(const std::string& strategy, int sites,
                                               int min_sites = 0, int timeout_seconds = 60) {
    SimulationConfig config;
    config.sites = sites;
    config.min_sites = min_sites;
    config.worker_timeout_seconds = timeout_seconds;
    std::vector<std::string> names;
    for (int i = 0; i < sites; ++i) names.push_back(absl::StrFormat("site-%03d", i));
    StatusOr<StrategyOptions> options = ParseStrategySpec(strategy);
    if (!options.ok()) return options.status();
    config.strategy = *options;
    last_dir_ = config.DirName();
    StatusOr<std::unique_ptr<Strategy>> s = Strategy::Create(*options, layout_);
    if (!s.ok()) return s.status();
    return RemoteSites::Start(rank0_.get(), config, **s, *federation_, std::move(names));
  }
  std::unique_ptr<CellWorkers> rank0_, rank1_;
  std::unique_ptr<LoopbackFederation> federation_;
  ModelLayout layout_;
  std::string last_dir_;
};

TEST_F(RemoteSitesTest, RefusesWhatCannotBeSpreadAndNamesTheCellToTheWorkers) {
  StatusOr<std::unique_ptr<RemoteSites>> median = Start("median", 3);
  EXPECT_EQ(median.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(median.status().message(), HasSubstr("needs every site's own update"));
  StatusOr<std::unique_ptr<RemoteSites>> few = Start("fedavg", 1);
  EXPECT_EQ(few.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(few.status().message(), HasSubstr("workers = 2 needs at least as many sites"));
  StatusOr<std::unique_ptr<RemoteSites>> fine = Start("fedavg", 3);
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ((*fine)->local(), std::make_pair(0, 2));
  StatusOr<std::pair<std::string, std::string>> cell = rank1_->NextCell();
  ASSERT_TRUE(cell.ok()) << cell.status();
  EXPECT_EQ(cell->first, last_dir_);  // the cell's folder: the worker finds its config by it
  EXPECT_THAT(cell->second, HasSubstr("hansa/sim/cell/0/"));
  fine->reset();
  // The sweep is over: the worker reads the end and confirms it.
  std::thread finish([&] { rank0_->Finish(); });
  StatusOr<std::pair<std::string, std::string>> end = rank1_->NextCell();
  finish.join();
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(end->first, "");
}

// Waits (up to 60 s) until `done`.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A worker that stops beating is taken for dead: its sites leave the run while min_sites remain
// (and for the rest of the sweep: the next cell starts without it, or is refused when it would
// be short), else the cell fails naming the worker and its sites.
TEST_F(RemoteSitesTest, ASilentWorkerIsLostAboveMinSitesAndFailsTheCellBelow) {
  StatusOr<std::unique_ptr<RemoteSites>> cell = Start("fedavg", 3, /*min_sites=*/2, 1);
  ASSERT_TRUE(cell.ok()) << cell.status();
  RemoteSites& sites = **cell;
  EXPECT_TRUE(sites.Live(2));
  rank1_.reset();  // rank 1 (site 2) stops beating
  ASSERT_TRUE(Eventually([&] { return !sites.Live(2); }));
  EXPECT_TRUE(sites.Live(0));
  EXPECT_TRUE(sites.Check().ok()) << sites.Check();
  ASSERT_EQ(sites.LostWorkers().size(), 1u);
  EXPECT_THAT(sites.LostWorkers()[0],
              HasSubstr("worker 1 (sites 2..2) has been silent for 1 s (worker_timeout)"));
  EXPECT_TRUE(rank0_->lost(1));
  // The other ranks' upload chain and the worker itself read it from the store.
  StatusOr<bool> told = rank0_->store().Check({"hansa/sim/lost/1"});
  ASSERT_TRUE(told.ok()) << told.status();
  EXPECT_TRUE(*told);
  cell->reset();
  StatusOr<std::unique_ptr<RemoteSites>> next = Start("fedavg", 3, 2, 1);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE((*next)->Live(2));
  next->reset();
  StatusOr<std::unique_ptr<RemoteSites>> short_cell = Start("fedavg", 3);
  EXPECT_EQ(short_cell.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(short_cell.status().message(),
              HasSubstr("worker 1 (sites 2..2) died in an earlier cell, leaving 2 sites; this "
                        "cell needs min_sites = 3"));
}

TEST_F(RemoteSitesTest, ASilentWorkerFailsTheCellWhenThePlanNeedsEverySite) {
  StatusOr<std::unique_ptr<RemoteSites>> cell = Start("fedavg", 3, /*min_sites=*/0, 1);
  ASSERT_TRUE(cell.ok()) << cell.status();
  rank1_.reset();
  ASSERT_TRUE(Eventually([&] { return !(*cell)->Check().ok(); }));
  EXPECT_EQ((*cell)->Check().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT((*cell)->Check().message(),
              HasSubstr("worker 1 (sites 2..2) has been silent for 1 s (worker_timeout): its "
                        "sites dropped out, and the plan needs every site"));
  EXPECT_TRUE((*cell)->Live(2));  // not lost: the cell fails instead
  EXPECT_FALSE(rank0_->lost(1));
}

// Sites upload in index order across ranks; a rank taken for dead is skipped, so the ranks
// after it do not wait for uploads that never come.
TEST(UploadChainTest, ARankWaitsForTheNearestRankBeforeItThatIsNotLost) {
  WorkerEnvironment env;
  env.world_size = 3;
  env.master_port = FreePort();
  std::unique_ptr<CellWorkers> ranks[3];
  std::vector<std::thread> joins;
  for (int k = 1; k < 3; ++k) {
    joins.emplace_back([&, k] {
      WorkerEnvironment e = env;
      e.rank = k;
      StatusOr<std::unique_ptr<CellWorkers>> w = CellWorkers::Join(e, std::chrono::seconds(60));
      if (w.ok()) ranks[k] = *std::move(w);
    });
  }
  StatusOr<std::unique_ptr<CellWorkers>> w = CellWorkers::Join(env, std::chrono::seconds(60));
  for (std::thread& t : joins) t.join();
  ASSERT_TRUE(w.ok()) << w.status();
  ranks[0] = *std::move(w);
  ASSERT_NE(ranks[1], nullptr);
  ASSERT_NE(ranks[2], nullptr);
  const std::string r = "hansa/sim/cell/0/round/1/";
  const auto done = [&](int rank) {
    StatusOr<bool> d = EarlierUploadsDone(ranks[rank]->store(), r, rank);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() && *d;
  };
  EXPECT_FALSE(done(1));
  // c10d's set does not wait for the store to answer, so another rank's connection sees it a
  // moment later: the product polls, and so does the test.
  ASSERT_TRUE(ranks[0]->store().Set(r + "uploaded/0", "1").ok());
  EXPECT_TRUE(Eventually([&] { return done(1); }));
  EXPECT_FALSE(done(2));  // rank 1 is alive and has not uploaded
  ranks[0]->MarkLost(1);
  EXPECT_TRUE(Eventually([&] { return done(2); }));
  EXPECT_FALSE(EarlierUploadsDone(ranks[2]->store(), "hansa/sim/cell/0/round/2/", 2).value());
}

// One GPU per worker on a node with several; the experiment's device as given otherwise.
TEST(WorkerDeviceTest, AutoAndCudaSpreadOverTheNodesGpus) {
  EXPECT_EQ(WorkerDevice("auto", 0, 4), "cuda:0");
  EXPECT_EQ(WorkerDevice("auto", 5, 4), "cuda:1");
  EXPECT_EQ(WorkerDevice("cuda", 3, 2), "cuda:1");
  EXPECT_EQ(WorkerDevice("auto", 3, 0), "cpu");
  EXPECT_EQ(WorkerDevice("cuda", 1, 0), "cuda");  // the trainer names the missing CUDA
  EXPECT_EQ(WorkerDevice("cpu", 1, 4), "cpu");
  EXPECT_EQ(WorkerDevice("cuda:2", 0, 4), "cuda:2");
  EXPECT_EQ(WorkerDevice("cuda:2", 3, 4), "cuda:2");
}

TEST(WorkerDeviceTest, LocalRankComesFromTheLaunchersVariables) {
  for (const char* name : {"LOCAL_RANK", "SLURM_LOCALID", "RANK"}) unsetenv(name);
  EXPECT_EQ(LocalRank(), 0);
  setenv("RANK", "5", 1);
  EXPECT_EQ(LocalRank(), 5);
  setenv("SLURM_LOCALID", "2", 1);
  EXPECT_EQ(LocalRank(), 2);
  setenv("LOCAL_RANK", "1", 1);
  EXPECT_EQ(LocalRank(), 1);
  setenv("LOCAL_RANK", "x", 1);
  EXPECT_EQ(LocalRank(), 0);
  for (const char* name : {"LOCAL_RANK", "SLURM_LOCALID", "RANK"}) unsetenv(name);
}

}  // namespace
}  // namespace hansa
