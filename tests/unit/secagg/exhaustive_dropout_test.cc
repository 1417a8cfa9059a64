// Every dropout pattern of small federations (issue 16): for n sites, each valid degree k and
// threshold t, with and without the malicious-coordinator checks, and a plan minimum of none
// or the whole cohort, every assignment of a stage at which each site stops (never, or before
// advertising, sharing keys, its masked upload, signing the survivors, answering the unmask
// request). Whatever happens, the round either releases exactly the plaintext sum of the sites
// whose masked inputs it holds, over at least the plan's minimum, or stops with
// FailedPrecondition and releases nothing. The same patterns run again with a coordinator that is
// also sent replayed, stale and out-of-order messages, which it must refuse without effect.
//
// By default every pattern of n = 3, and those of n = 4 under its default k and t without a
// plan minimum (about 2,600 rounds, 5 s), and n = 3 again with replays (about 1,400 rounds,
// 27,000 refused messages, 15 s). `make check-exhaustive` (HANSA_EXHAUSTIVE_SITES=5) takes
// every (k, t) and both minima of every n up to 5, with and without replays; 6 and 7 take hours
// of CPU, spread over processes (or machines) with HANSA_EXHAUSTIVE_SHARD=i/N: each takes every
// N-th pattern from the i-th (scripts/exhaustive.sh runs one shard per core).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/unit/secagg/secagg_federation.h"

namespace hansa {
namespace {

using test_support::DropAt;
using test_support::Federation;

// The (k, t) pairs ResolveParams accepts for n sites: k even below n - 1, or n - 1; t in
// (k/2, k].
std::vector<std::pair<int, int>> ValidDegreeAndThreshold(int n) {
  std::vector<std::pair<int, int>> out;
  for (int k = 2; k <= n - 1; ++k) {
    if (k < n - 1 && k % 2 != 0) continue;
    for (int t = k / 2 + 1; t <= k; ++t) out.emplace_back(k, t);
  }
  return out;
}

// 0 when unset: the quick default.
int FullSites() {
  const char* env = std::getenv("HANSA_EXHAUSTIVE_SITES");
  return env != nullptr ? std::max(3, std::min(8, std::atoi(env))) : 0;
}

// The share of the patterns this process runs: every `count`-th from `index`
// (HANSA_EXHAUSTIVE_SHARD=index/count; all of them when unset).
struct Shard {
  int64_t index = 0;
  int64_t count = 1;
};
Shard ThisShard() {
  Shard shard;
  const char* env = std::getenv("HANSA_EXHAUSTIVE_SHARD");
  if (env == nullptr) return shard;
  long long index = 0, count = 0;
  if (std::sscanf(env, "%lld/%lld", &index, &count) != 2 || count < 1 || index < 0 ||
      index >= count) {
    ADD_FAILURE() << "HANSA_EXHAUSTIVE_SHARD='" << env << "': expected i/N with 0 <= i < N";
    return shard;
  }
  shard.index = index;
  shard.count = count;
  return shard;
}

struct Tally {
  int64_t rounds = 0, released = 0, stopped = 0, refused = 0;
};

// One pattern: `code` in base `stages` gives each site its stage. With `hostile`, the
// coordinator is also sent replayed, stale and out-of-order messages (Federation::SetHostile).
// Sets `*released` to whether the round released a sum.
void RunPattern(int n, int k, int t, bool malicious, uint32_t minimum,
                const std::vector<DropAt>& stages, int64_t code, Tally* tally, bool hostile = false,
                bool* released = nullptr) {
  std::map<SiteId, DropAt> drops;
  std::string described;
  for (int i = 0; i < n; ++i) {
    const DropAt stage = stages[code % static_cast<int64_t>(stages.size())];
    code /= static_cast<int64_t>(stages.size());
    if (stage != DropAt::kNever) drops[static_cast<SiteId>(i + 1)] = stage;
    described += std::to_string(static_cast<int>(stage));
  }
  // The sites' signing keys live across rounds, as real sites' do: made once per process.
  static const std::vector<Ed25519PrivateKey>* const identities = [] {
    auto* keys = new std::vector<Ed25519PrivateKey>();  // NOLINT(cppcoreguidelines-owning-memory)
    for (int i = 0; i < 8; ++i) keys->push_back(*Ed25519PrivateKey::Generate());
    return keys;
  }();
  Federation f(static_cast<uint32_t>(n), malicious, RingWidth::k32, k, t, 3, identities);
  if (minimum > 0) f.SetMinSurvivors(minimum);
  f.SetHostile(hostile);
  const bool anyone_drops = !drops.empty();
  auto result = f.Run(drops, /*chunk=*/1);  // three chunks per upload
  ++tally->rounds;
  tally->refused += f.refused();
  if (released != nullptr) *released = result.ok();
  const std::string where = "n=" + std::to_string(n) + " k=" + std::to_string(k) +
                            " t=" + std::to_string(t) + (malicious ? " malicious" : "") +
                            " min=" + std::to_string(minimum) + " stages=" + described +
                            (hostile ? " hostile" : "");
  if (!result.ok()) {
    ++tally->stopped;
    ASSERT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition)
        << where << ": " << result.status();
    // Nothing can be had from the stopped session afterwards either.
    ASSERT_FALSE(f.server().Finish().ok()) << where;
    ASSERT_TRUE(anyone_drops) << where << ": a round without dropouts must finish";
    return;
  }
  ++tally->released;
  std::vector<SiteId> uploaded;
  for (SiteId id = 1; id <= static_cast<SiteId>(n); ++id) {
    if (f.Active(id, DropAt::kMaskedInput)) uploaded.push_back(id);
  }
  ASSERT_EQ(result->survivors, uploaded) << where;
  ASSERT_EQ(result->sum, f.PlainSum(uploaded)) << where;
  ASSERT_GE(result->survivors.size(), std::max<size_t>(minimum, 1)) << where;
  ASSERT_GE(result->survivors.size(), static_cast<size_t>(t)) << where;
}

// Every (n, k, t, checks, minimum) the run covers, each with its stages; `fn` per pattern code.
template <typename Fn>
void ForEachPattern(int largest, bool quick_four, Fn fn) {
  const Shard shard = ThisShard();
  int64_t seen = 0;
  for (int n = 3; n <= largest; ++n) {
    const bool quick = quick_four && n == 4;
    for (auto [k, t] : ValidDegreeAndThreshold(n)) {
      if (quick && !(k == 3 && t == 2)) continue;  // n = 4's defaults
      for (bool malicious : {false, true}) {
        std::vector<DropAt> stages = {DropAt::kNever, DropAt::kAdvertise, DropAt::kShareKeys,
                                      DropAt::kMaskedInput, DropAt::kUnmask};
        if (malicious) stages.push_back(DropAt::kConsistency);
        int64_t patterns = 1;
        for (int i = 0; i < n; ++i) patterns *= static_cast<int64_t>(stages.size());
        for (uint32_t minimum : {0u, static_cast<uint32_t>(n)}) {
          if (quick && minimum > 0) continue;
          for (int64_t code = 0; code < patterns; ++code) {
            if (seen++ % shard.count != shard.index) continue;
            fn(n, k, t, malicious, minimum, stages, code);
            if (::testing::Test::HasFatalFailure() || ::testing::Test::HasFailure()) return;
          }
        }
      }
    }
  }
}

TEST(ExhaustiveDropoutTest, EveryPatternReleasesTheExactSumOrNothing) {
  Tally tally;
  const int full = FullSites();
  ForEachPattern(
      std::max(full, 4), full == 0,
      [&](int n, int k, int t, bool malicious, uint32_t minimum, const std::vector<DropAt>& stages,
          int64_t code) { RunPattern(n, k, t, malicious, minimum, stages, code, &tally); });
  // Both outcomes occur: the patterns reach the protocol's limits from both sides.
  EXPECT_GT(tally.released, 0);
  EXPECT_GT(tally.stopped, 0);
  std::printf("%lld rounds: %lld released the exact sum, %lld stopped cleanly\n",
              static_cast<long long>(tally.rounds), static_cast<long long>(tally.released),
              static_cast<long long>(tally.stopped));
}

// The same patterns with a coordinator that is also sent every message again, each for the
// previous round, every earlier message of the round at each later step, and each site's
// chunks out of order: it refuses each of them, and the round ends as without them. Each run
// releases the exact sum of its uploaders or stops cleanly (RunPattern). Whether a pattern
// can finish at all is a function of the pattern alone only where every site neighbours every
// other (k = n - 1). Below that it also depends on the neighbour graph, which each run draws
// afresh from its coordinator's seed and its sites' fresh keys (graph.h): two runs of one
// pattern may differ (n = 6, k = 2: sites 3 and 6 dropping before their uploads strand a site
// whose two neighbours they are, or no site), so there each run is held to the invariants
// alone, not to the other.
TEST(ExhaustiveDropoutTest, ReplayedStaleAndOutOfOrderMessagesAreRefusedWithoutEffect) {
  Tally tally;
  int64_t compared = 0;
  const int full = FullSites();
  ForEachPattern(std::max(full, 3), full == 0,
                 [&](int n, int k, int t, bool malicious, uint32_t minimum,
                     const std::vector<DropAt>& stages, int64_t code) {
                   bool clean = false, hostile = false;
                   RunPattern(n, k, t, malicious, minimum, stages, code, &tally, false, &clean);
                   RunPattern(n, k, t, malicious, minimum, stages, code, &tally, true, &hostile);
                   if (k != n - 1) return;
                   ++compared;
                   EXPECT_EQ(clean, hostile)
                       << "n=" << n << " k=" << k << " t=" << t << (malicious ? " malicious" : "")
                       << " min=" << minimum << " pattern " << code;
                 });
  EXPECT_GT(compared, 0);
  EXPECT_GT(tally.refused, tally.rounds);
  std::printf("%lld rounds: %lld hostile messages refused\n", static_cast<long long>(tally.rounds),
              static_cast<long long>(tally.refused));
}

}  // namespace
}  // namespace hansa
