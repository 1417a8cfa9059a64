// SecAgg+ end to end: sites and coordinator as state machines in one process, every message
// passed through its byte encoding, with dropouts and misbehaviour injected between stages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "common/secagg/client.h"
#include "common/secagg/server.h"
#include "tests/unit/secagg/secagg_federation.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

using test_support::DropAt;
using test_support::Federation;
using test_support::Wire;

std::vector<SiteId> Range(SiteId a, SiteId b) {
  std::vector<SiteId> v;
  for (SiteId i = a; i <= b; ++i) v.push_back(i);
  return v;
}

// Every site of `f` through key sharing and its whole masked upload; the masked-input stage
// closed. Returns the survivor list.
SurvivorList UploadAll(Federation& f) {
  const uint32_t n = f.params().num_sites;
  for (SiteId id = 1; id <= n; ++id)
    EXPECT_TRUE(f.server().OnAdvertiseKeys(*f.client(id).Start()).ok());
  auto dir = f.server().CloseAdvertiseKeys();
  for (SiteId id = 1; id <= n; ++id) {
    EXPECT_TRUE(f.server().OnShareKeys(*f.client(id).OnKeyDirectory(*dir)).ok());
  }
  auto closed = f.server().CloseShareKeys();
  EXPECT_TRUE(closed.ok()) << closed.status();
  for (const auto& d : *closed) {
    EXPECT_TRUE(f.client(d.receiver).OnShareDelivery(d).ok());
    EXPECT_TRUE(f.Upload(d.receiver, 1000).ok());
  }
  return *f.server().CloseMaskedInput();
}

TEST(SecAggTest, SumEqualsPlaintextSumWithoutDropouts) {
  for (bool malicious : {false, true}) {
    for (RingWidth ring : {RingWidth::k32, RingWidth::k64}) {
      Federation f(5, malicious, ring);
      auto result = f.Run({}, 64);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->survivors, Range(1, 5));
      EXPECT_EQ(result->sum, f.PlainSum(Range(1, 5)));
      EXPECT_EQ(f.server().participants().unmasked, Range(1, 5));
    }
  }
}

// Sites whose input is masked outside the session (as on a GPU) from its mask streams upload
// exactly what MaskChunk would: the sum is still the plaintext sum, in both rings, also when
// one of them drops before its masked input and its pairwise masks must be removed.
TEST(SecAggTest, MaskingWithTheSessionsStreamsElsewhereGivesTheSameSum) {
  for (RingWidth ring : {RingWidth::k32, RingWidth::k64}) {
    Federation f(5, false, ring);
    f.SetMaskedElsewhere({1, 4});
    auto result = f.Run({{2, DropAt::kMaskedInput}}, 64);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->sum, f.PlainSum({1, 3, 4, 5}));
    // Once the last chunk is taken the keys are gone.
    auto after = f.client(1).MaskStreams();
    EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

TEST(SecAggTest, MaskStreamsAreRefusedBeforeTheSharesArriveAndChunksStillCheckedWhenTaken) {
  Federation f(3, false);
  auto early = f.client(1).MaskStreams();
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(early.status().message()), HasSubstr("no mask streams"));
  // Driven to stage 2 by hand: a chunk taken out of order aborts the session as MaskChunk does.
  for (SiteId id = 1; id <= 3; ++id) {
    ASSERT_TRUE(f.server().OnAdvertiseKeys(Wire(*f.client(id).Start())).ok());
  }
  auto dir = f.server().CloseAdvertiseKeys();
  ASSERT_TRUE(dir.ok()) << dir.status();
  for (SiteId id = 1; id <= 3; ++id) {
    ASSERT_TRUE(f.server().OnShareKeys(Wire(*f.client(id).OnKeyDirectory(Wire(*dir)))).ok());
  }
  auto deliveries = f.server().CloseShareKeys();
  ASSERT_TRUE(deliveries.ok()) << deliveries.status();
  for (const ShareDelivery& d : *deliveries) {
    if (d.receiver == 1) {
      ASSERT_TRUE(f.client(1).OnShareDelivery(Wire(d)).ok());
    }
  }
  auto streams = f.client(1).MaskStreams();
  ASSERT_TRUE(streams.ok()) << streams.status();
  EXPECT_EQ(streams->size(), 3u);  // the self mask and one per peer
  EXPECT_EQ((*streams)[0].op, MaskOp::kAdd);
  auto skipped = f.client(1).TakeMaskedChunk(10, RingVector::Zeros(RingWidth::k32, 5));
  EXPECT_EQ(skipped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(skipped.status().message()), HasSubstr("does not continue at 0"));
  EXPECT_EQ(f.client(1).stage(), ClientSession::Stage::kAborted);
}

// The coordinator hands out exactly the streams to remove: each survivor's self mask and, for
// the site that dropped after sharing keys, its pairwise mask with each surviving neighbour.
// An applier elsewhere (as on a GPU) gives the plaintext sum; one that fails fails the round.
TEST(SecAggTest, UnmaskingWithTheServersStreamsElsewhereGivesTheSameSum) {
  Federation f(7, false);
  size_t streams = 0;
  f.SetUnmaskApplier([&](const std::vector<MaskStream>& s, RingVector* sum) {
    streams = s.size();
    for (const MaskStream& m : s) EXPECT_EQ(m.key->size(), kChaCha20KeySize);
    return ApplyMasksOnCpu(s, sum);
  });
  auto result = f.Run({{3, DropAt::kMaskedInput}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->sum, f.PlainSum({1, 2, 4, 5, 6, 7}));
  EXPECT_EQ(streams, 6u + 6u);

  Federation g(5, false);
  g.SetUnmaskApplier([](const std::vector<MaskStream>&, RingVector*) {
    return absl::InternalError("device lost");
  });
  auto failed = g.Run({});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("device lost"));
}

// n = 7: k = 6, t = 4, so any 1..2 dropouts (k - t) at any stage must still give the exact
// sum of the sites whose input was uploaded.
TEST(SecAggTest, RecoversSumWithDropoutsAtEveryStage) {
  for (bool malicious : {false, true}) {
    for (DropAt stage : {DropAt::kAdvertise, DropAt::kShareKeys, DropAt::kMaskedInput,
                         DropAt::kConsistency, DropAt::kUnmask}) {
      if (stage == DropAt::kConsistency && !malicious) continue;
      for (int dropped = 1; dropped <= 2; ++dropped) {
        Federation f(7, malicious);
        std::map<SiteId, DropAt> drops;
        for (int i = 0; i < dropped; ++i) drops[static_cast<SiteId>(2 + 3 * i)] = stage;
        auto result = f.Run(drops);
        ASSERT_TRUE(result.ok()) << "stage " << static_cast<int>(stage) << " dropped " << dropped
                                 << ": " << result.status();
        std::vector<SiteId> uploaded;
        for (SiteId id = 1; id <= 7; ++id) {
          if (f.Active(id, DropAt::kMaskedInput)) uploaded.push_back(id);
        }
        EXPECT_EQ(result->survivors, uploaded);
        EXPECT_EQ(result->sum, f.PlainSum(uploaded));
      }
    }
  }
}

// Each site keeps a share of its own self-mask seed, so a survivor's seed needs only t - 1
// neighbours. 3 sites (k = t = 2): any one may drop after key sharing, at either later stage,
// and the sum is still exact. 7 sites (k = 6, t = 4): three may drop then, k + 1 - t.
TEST(SecAggTest, OwnSeedShareLetsTheSmallestCohortLoseASiteAfterSharingKeys) {
  for (DropAt stage : {DropAt::kMaskedInput, DropAt::kUnmask}) {
    for (auto [n, dropped] : {std::pair{3, 1}, std::pair{7, 3}}) {
      for (SiteId first = 1; first <= static_cast<SiteId>(n - dropped + 1); first += 2) {
        Federation f(n, false);
        std::map<SiteId, DropAt> drops;
        for (int i = 0; i < dropped; ++i) drops[first + static_cast<SiteId>(i)] = stage;
        auto result = f.Run(drops);
        ASSERT_TRUE(result.ok()) << n << " sites, stage " << static_cast<int>(stage)
                                 << ", first dropped " << first << ": " << result.status();
        std::vector<SiteId> uploaded;
        for (SiteId id = 1; id <= static_cast<SiteId>(n); ++id) {
          if (f.Active(id, DropAt::kMaskedInput)) uploaded.push_back(id);
        }
        EXPECT_EQ(result->survivors, uploaded);
        EXPECT_EQ(result->sum, f.PlainSum(uploaded));
      }
    }
  }
  {  // One more is below the threshold: 3 sites, two stop before uploading.
    Federation f(3, false);
    auto r = f.Run({{1, DropAt::kMaskedInput}, {2, DropAt::kMaskedInput}});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  {  // With the malicious-coordinator checks no site reveals its own share: 3 sites cannot
     // lose one after key sharing, and the round aborts cleanly.
    Federation f(3, true);
    auto r = f.Run({{2, DropAt::kUnmask}});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("self-mask seed"));
  }
}

// A sparse Harary graph: 30 sites, k = 8, t = 5; three sites dropped at different stages.
TEST(SecAggTest, SparseNeighbourGraphRecoversSum) {
  Federation f(30, false, RingWidth::k64, 8, 5, 50);
  auto result = f.Run({{3, DropAt::kShareKeys}, {17, DropAt::kMaskedInput}, {25, DropAt::kUnmask}});
  ASSERT_TRUE(result.ok()) << result.status();
  std::vector<SiteId> uploaded;
  for (SiteId id = 1; id <= 30; ++id) {
    if (id != 3 && id != 17) uploaded.push_back(id);
  }
  EXPECT_EQ(result->sum, f.PlainSum(uploaded));
  EXPECT_LE(f.client(1).masking_peers().size(), 0u);  // done: secrets wiped
}

TEST(SecAggTest, AbortsCleanlyBelowThreshold) {
  {  // 4 of 7 stop before uploading: 3 survivors < t = 4.
    Federation f(7, false);
    auto r = f.Run({{1, DropAt::kMaskedInput},
                    {2, DropAt::kMaskedInput},
                    {3, DropAt::kMaskedInput},
                    {4, DropAt::kMaskedInput}});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("must be retried"));
    EXPECT_EQ(f.server().Finish().status().code(), absl::StatusCode::kFailedPrecondition);
  }
  {  // 4 of 7 do not answer the unmask request: a seed has 3 < 4 shares (two neighbours' and
     // its owner's).
    Federation f(7, false);
    auto r = f.Run(
        {{1, DropAt::kUnmask}, {2, DropAt::kUnmask}, {3, DropAt::kUnmask}, {4, DropAt::kUnmask}});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("self-mask seed"));
  }
  {  // Only 3 of 5 advertise: t + 1 = 4 needed.
    Federation f(5, false);
    auto r = f.Run({{1, DropAt::kAdvertise}, {2, DropAt::kAdvertise}});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("advertised keys"));
  }
}

// The review's case: 4 sites, a sum only over all 4; site 4 does not upload in the first
// attempt. The coordinator's session does not start unmasking the other three.
TEST(SecAggTest, NoSumIsUnmaskedBelowThePlansMinimum) {
  Federation f(4, false, RingWidth::k32, 3, 2);
  f.SetMinSurvivors(4);
  auto r = f.Run({{4, DropAt::kMaskedInput}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no sum of fewer than 4"));
  EXPECT_EQ(f.server().StartUnmask().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(f.server().Finish().status().code(), absl::StatusCode::kFailedPrecondition);
  // The retry is a new session in which all four take part: the only sum ever unmasked.
  f.SetMinSurvivors(4);
  auto all = f.Run({});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->survivors, Range(1, 4));
  EXPECT_EQ(all->sum.w32, f.PlainSum(Range(1, 4)).w32);
}

// A coordinator that skips its own check and asks for the shares of a 3-site sum, though the
// plan allows none below 4, gets no share from anyone: each site counts the survivors itself.
// Without the minimum the same request is answered, which is what the check takes away.
TEST(SecAggTest, SitesRefuseToRevealSharesForASumBelowThePlansMinimum) {
  for (uint32_t min_survivors : {4u, 0u}) {
    Federation f(4, false, RingWidth::k32, 3, 2);
    f.SetMinSurvivors(min_survivors);
    UploadAll(f);
    UnmaskRequest three{f.params().round, {1, 2, 3}, {}};
    for (SiteId id : {1u, 2u, 3u}) {
      auto response = f.client(id).OnUnmaskRequest(three);
      if (min_survivors == 4) {
        EXPECT_EQ(response.status().code(), absl::StatusCode::kPermissionDenied);
        EXPECT_THAT(std::string(response.status().message()), HasSubstr("plan's minimum of 4"));
        EXPECT_EQ(f.client(id).stage(), ClientSession::Stage::kAborted);
      } else {
        EXPECT_TRUE(response.ok()) << response.status();
      }
    }
  }
  // Malicious mode: the survivor list is not even signed.
  Federation f(4, true, RingWidth::k32, 3, 2);
  f.SetMinSurvivors(4);
  UploadAll(f);
  auto sig = f.client(1).OnSurvivorList(SurvivorList{f.params().round, {1, 2, 3}});
  EXPECT_EQ(sig.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(sig.status().message()), HasSubstr("refusing to sign"));
}

// A coordinator that lists as a survivor a site that never advertised keys, or that never
// gave its neighbours shares, would have the others unmask a sum of four inputs under a plan
// whose minimum is five: the list passes the count, but no input of that site is in the sum.
// Every site refuses such a list, in both modes; with the site left out the count refuses it.
TEST(SecAggTest, SitesRefuseSurvivorsThatNeverTookPart) {
  for (bool malicious : {false, true}) {
    for (DropAt drop : {DropAt::kAdvertise, DropAt::kShareKeys}) {
      SCOPED_TRACE(::testing::Message() << (malicious ? "malicious" : "semi-honest") << ", drop "
                                        << static_cast<int>(drop));
      Federation f(5, malicious, RingWidth::k32, 4, 3, 64);
      f.SetMinSurvivors(5);
      for (SiteId id = 1; id <= 5; ++id) {
        auto keys = f.client(id).Start();
        ASSERT_TRUE(keys.ok()) << keys.status();
        if (id == 5 && drop == DropAt::kAdvertise) continue;
        ASSERT_TRUE(f.server().OnAdvertiseKeys(*keys).ok());
      }
      auto dir = f.server().CloseAdvertiseKeys();
      ASSERT_TRUE(dir.ok()) << dir.status();
      for (SiteId id = 1; id <= (drop == DropAt::kAdvertise ? 4u : 5u); ++id) {
        auto shares = f.client(id).OnKeyDirectory(Wire(*dir));
        ASSERT_TRUE(shares.ok()) << shares.status();
        if (id == 5) continue;  // drops at ShareKeys: its shares never reach anyone
        ASSERT_TRUE(f.server().OnShareKeys(*shares).ok());
      }
      auto deliveries = f.server().CloseShareKeys();
      ASSERT_TRUE(deliveries.ok()) << deliveries.status();
      for (const ShareDelivery& d : *deliveries) {
        ASSERT_TRUE(f.client(d.receiver).OnShareDelivery(Wire(d)).ok());
        ASSERT_TRUE(f.Upload(d.receiver, 64).ok());
      }
      const std::string says = drop == DropAt::kAdvertise ? "advertised no keys in this session"
                                                          : "never gave it shares";
      for (SiteId id = 1; id <= 4; ++id) {
        if (malicious) {
          auto sig = f.client(id).OnSurvivorList(SurvivorList{f.params().round, Range(1, 5)});
          EXPECT_EQ(sig.status().code(), absl::StatusCode::kPermissionDenied) << id;
          EXPECT_THAT(std::string(sig.status().message()), HasSubstr(says));
        } else {
          auto response =
              f.client(id).OnUnmaskRequest(UnmaskRequest{f.params().round, Range(1, 5), {}});
          EXPECT_EQ(response.status().code(), absl::StatusCode::kPermissionDenied) << id;
          EXPECT_THAT(std::string(response.status().message()), HasSubstr(says));
        }
        EXPECT_EQ(f.client(id).stage(), ClientSession::Stage::kAborted);
      }
    }
  }
}

// The minimum is part of the parameters every party checks: above the cohort it is refused.
TEST(SecAggTest, MinimumAboveTheCohortIsRefused) {
  SecAggParams p;
  p.num_sites = 4;
  p.vector_length = 10;
  p.min_survivors = 5;
  auto resolved = ResolveParams(p);
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(resolved.status().message()), HasSubstr("at least 5"));
}

TEST(SecAggTest, SiteStoppingMidUploadAbortsTheRound) {
  Federation f(5, false);
  for (SiteId id = 1; id <= 5; ++id)
    ASSERT_TRUE(f.server().OnAdvertiseKeys(*f.client(id).Start()).ok());
  auto dir = f.server().CloseAdvertiseKeys();
  for (SiteId id = 1; id <= 5; ++id) {
    ASSERT_TRUE(f.server().OnShareKeys(*f.client(id).OnKeyDirectory(*dir)).ok());
  }
  auto closed = f.server().CloseShareKeys();
  EXPECT_TRUE(closed.ok()) << closed.status();
  for (const auto& d : *closed) {
    ASSERT_TRUE(f.client(d.receiver).OnShareDelivery(d).ok());
  }
  RingVector part = RingVector::Zeros(RingWidth::k32, 10);
  auto chunk = f.client(1).MaskChunk(0, part);
  ASSERT_TRUE(chunk.ok());
  ASSERT_TRUE(f.server().OnMaskedInputChunk(*chunk).ok());
  // Out-of-order chunk is refused without harm.
  auto skip = f.client(2).MaskChunk(10, part);
  EXPECT_EQ(skip.status().code(), absl::StatusCode::kInvalidArgument);
  auto r = f.server().CloseMaskedInput();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("middle of its masked upload"));
}

// Drives a malicious-mode round up to the consistency check and returns the survivor list.

TEST(SecAggMaliciousTest, SiteAbortsWhenShownADifferentSurvivorSet) {
  Federation f(6, true);
  SurvivorList real = UploadAll(f);
  // The coordinator shows site 1 a view without site 6 (still >= t = 4) and everybody else
  // the true view, hoping to get site 6's mask-key shares from site 1 and its seed shares
  // from the others.
  SurvivorList lie = real;
  lie.survivors.pop_back();
  auto lie_sig = f.client(1).OnSurvivorList(lie);
  ASSERT_TRUE(lie_sig.ok());
  EXPECT_EQ(f.server().OnConsistencySignature(*lie_sig).code(),
            absl::StatusCode::kPermissionDenied);
  std::vector<ConsistencySignature> sigs;
  for (SiteId id = 2; id <= 6; ++id) {
    auto s = f.client(id).OnSurvivorList(real);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(f.server().OnConsistencySignature(*s).ok());
    sigs.push_back(*s);
  }
  auto request = f.server().StartUnmask();
  ASSERT_TRUE(request.ok());
  // Site 1 signed another list: it refuses to reveal anything.
  auto r1 = f.client(1).OnUnmaskRequest(*request);
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r1.status().message()), HasSubstr("inconsistent views"));
  // Site 2 handed a request that carries site 1's signature over the other list refuses too.
  UnmaskRequest mixed = *request;
  mixed.signatures.push_back(*lie_sig);
  auto r2 = f.client(2).OnUnmaskRequest(mixed);
  EXPECT_EQ(r2.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r2.status().message()), HasSubstr("inconsistent views"));
  EXPECT_EQ(f.client(2).stage(), ClientSession::Stage::kAborted);
  // And the abort is final.
  auto again = f.client(2).OnUnmaskRequest(*request);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("aborted earlier"));
  // Site 3 with the honest request reveals shares, one per neighbour and never both kinds;
  // in this mode nothing of its own.
  auto r3 = f.client(3).OnUnmaskRequest(*request);
  ASSERT_TRUE(r3.ok()) << r3.status();
  std::set<SiteId> owners;
  for (const auto& s : r3->shares) {
    EXPECT_TRUE(owners.insert(s.owner).second);
    EXPECT_EQ(s.kind, ShareKind::kSelfMaskSeed);
  }
  EXPECT_EQ(owners, (std::set<SiteId>{1, 2, 4, 5, 6}));
  // Nor does the coordinator take one in this mode.
  UnmaskResponse own = *r3;
  own.shares.front().owner = 3;
  EXPECT_THAT(std::string(f.server().OnUnmaskResponse(own).message()),
              HasSubstr("neither itself nor a neighbour"));
  EXPECT_TRUE(f.server().OnUnmaskResponse(*r3).ok());
  auto replayed = f.client(3).OnUnmaskRequest(*request);  // a replay reveals nothing more
  EXPECT_EQ(replayed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(replayed.status().message()), HasSubstr("out of order"));
}

TEST(SecAggMaliciousTest, SiteAbortsOnTooFewOrForgedSignatures) {
  Federation f(6, true);
  SurvivorList real = UploadAll(f);
  std::vector<ConsistencySignature> sigs;
  for (SiteId id = 1; id <= 6; ++id) sigs.push_back(*f.client(id).OnSurvivorList(real));
  UnmaskRequest few{f.params().round, real.survivors, {sigs[0], sigs[1], sigs[2]}};
  auto r = f.client(1).OnUnmaskRequest(few);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("only 3 consistency signatures"));
  UnmaskRequest forged{f.params().round, real.survivors, sigs};
  forged.signatures[4].signature[0] ^= 1;
  EXPECT_EQ(f.client(2).OnUnmaskRequest(forged).status().code(),
            absl::StatusCode::kPermissionDenied);
  UnmaskRequest dup{f.params().round, real.survivors, {sigs[0], sigs[0], sigs[1], sigs[2]}};
  EXPECT_THAT(std::string(f.client(3).OnUnmaskRequest(dup).status().message()),
              HasSubstr("repeated"));
}

TEST(SecAggMaliciousTest, SiteAbortsOnReplayedMessages) {
  Federation f(5, true);
  for (SiteId id = 1; id <= 5; ++id)
    ASSERT_TRUE(f.server().OnAdvertiseKeys(*f.client(id).Start()).ok());
  auto dir = f.server().CloseAdvertiseKeys();
  ASSERT_TRUE(f.client(1).OnKeyDirectory(*dir).ok());
  auto replay = f.client(1).OnKeyDirectory(*dir);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(replay.status().message()), HasSubstr("out of order"));
  // A directory from another round is refused as well.
  KeyDirectory old = *dir;
  old.round = 10;
  auto stale = f.client(2).OnKeyDirectory(old);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("replayed"));
  // The coordinator refuses a second AdvertiseKeys from one site.
  Federation g(5, true);
  auto a = g.client(1).Start();
  ASSERT_TRUE(g.server().OnAdvertiseKeys(*a).ok());
  EXPECT_THAT(std::string(g.server().OnAdvertiseKeys(*a).message()), HasSubstr("twice"));
}

TEST(SecAggMaliciousTest, SiteAbortsOnRepeatedOrSubstitutedKeys) {
  Federation f(5, true);
  std::vector<AdvertiseKeys> adv;
  for (SiteId id = 1; id <= 5; ++id) adv.push_back(*f.client(id).Start());
  KeyDirectory dir{f.params().round, adv};
  KeyDirectory repeated = dir;
  repeated.entries[3].mask_key = repeated.entries[2].mask_key;
  auto r = f.client(1).OnKeyDirectory(repeated);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("repeats a public key"));
  // A coordinator substituting its own key for site 3 breaks site 3's signature.
  KeyDirectory substituted = dir;
  substituted.entries[2].encryption_key = GenerateX25519KeyPair()->public_key;
  auto s = f.client(2).OnKeyDirectory(substituted);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("advertised keys of site 3"));
  // The coordinator itself refuses a key already advertised by another site.
  AdvertiseKeys copy = adv[1];
  ASSERT_TRUE(f.server().OnAdvertiseKeys(adv[0]).ok());
  copy.mask_key = adv[0].mask_key;
  EXPECT_EQ(f.server().OnAdvertiseKeys(copy).code(), absl::StatusCode::kPermissionDenied);
}

TEST(SecAggTest, SiteRefusesUnmaskRequestThatCallsItDropped) {
  Federation f(5, false);
  UploadAll(f);
  // Site 1 uploaded; a request calling it dropped asks for its mask-key shares while its
  // masked input is in the sum. Site 1 must refuse (the others would too, by symmetry).
  UnmaskRequest lie{f.params().round, {2, 3, 4, 5}, {}};
  auto r = f.client(1).OnUnmaskRequest(lie);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("leaves out this site"));
}

// The coordinator takes a site's share of its own seed, and nothing else of its own: not a
// mask-key share of itself, not a second seed share, not a share with another's index.
TEST(SecAggTest, CoordinatorChecksTheOwnSeedShareOfAnUnmaskResponse) {
  Federation f(4, false);
  EXPECT_EQ(UploadAll(f).survivors, Range(1, 4));
  auto request = f.server().StartUnmask();
  ASSERT_TRUE(request.ok());
  auto r1 = f.client(1).OnUnmaskRequest(*request);
  ASSERT_TRUE(r1.ok());
  ASSERT_EQ(r1->shares.front().owner, 1u);  // its own seed share comes first
  auto refused = [&](UnmaskResponse bad, const char* why) {
    Status st = f.server().OnUnmaskResponse(bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << why;
    return std::string(st.message());
  };
  UnmaskResponse wrong_kind = *r1;
  wrong_kind.shares.front().kind = ShareKind::kMaskKey;
  EXPECT_THAT(refused(wrong_kind, "kind"), HasSubstr("wrong kind of share for site 1"));
  UnmaskResponse twice = *r1;
  twice.shares.push_back(twice.shares.front());
  EXPECT_THAT(refused(twice, "twice"), HasSubstr("or twice"));
  UnmaskResponse borrowed = *r1;  // site 2's own share passed off as site 1's
  auto r2 = f.client(2).OnUnmaskRequest(*request);
  ASSERT_TRUE(r2.ok());
  borrowed.shares.front().share = r2->shares.front().share;
  EXPECT_THAT(refused(borrowed, "index"), HasSubstr("with index 2"));
  // Nothing refused was kept: the true responses give the exact sum.
  ASSERT_TRUE(f.server().OnUnmaskResponse(*r1).ok());
  ASSERT_TRUE(f.server().OnUnmaskResponse(*r2).ok());
  auto result = f.server().Finish();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->sum, f.PlainSum(Range(1, 4)));
}

TEST(SecAggTest, ShareCiphertextsAreBoundToSenderAndReceiver) {
  Federation f(5, false);
  for (SiteId id = 1; id <= 5; ++id)
    ASSERT_TRUE(f.server().OnAdvertiseKeys(*f.client(id).Start()).ok());
  auto dir = f.server().CloseAdvertiseKeys();
  std::vector<ShareKeys> sk;
  for (SiteId id = 1; id <= 5; ++id) sk.push_back(*f.client(id).OnKeyDirectory(*dir));
  // Hand site 2 the ciphertext site 1 made for site 3, claiming it is for site 2.
  ShareDelivery d{f.params().round, 2, {}};
  for (const auto& e : sk[0].shares) {
    if (e.peer == 3) d.shares.push_back({1, e.ciphertext});
  }
  auto st = f.client(2).OnShareDelivery(d);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()), HasSubstr("authentication failed"));
}

// Chi-square over the bytes of a masked all-zero input: 255 degrees of freedom, mean 255,
// standard deviation 22.6; 400 is beyond 6 standard deviations, while the unmasked input
// scores in the millions.
TEST(SecAggTest, MaskedUploadLooksUniform) {
  Federation f(4, false, RingWidth::k32, 0, 0, 65536);
  for (SiteId id = 1; id <= 4; ++id)
    ASSERT_TRUE(f.server().OnAdvertiseKeys(*f.client(id).Start()).ok());
  auto dir = f.server().CloseAdvertiseKeys();
  for (SiteId id = 1; id <= 4; ++id) {
    ASSERT_TRUE(f.server().OnShareKeys(*f.client(id).OnKeyDirectory(*dir)).ok());
  }
  auto deliveries = f.server().CloseShareKeys();
  ASSERT_TRUE(f.client(1).OnShareDelivery((*deliveries)[0]).ok());
  auto chi_square = [](const std::string& bytes) {
    std::vector<double> counts(256, 0);
    for (unsigned char c : bytes) counts[c] += 1;
    double expected = bytes.size() / 256.0, chi = 0;
    for (double c : counts) chi += (c - expected) * (c - expected) / expected;
    return chi;
  };
  RingVector zeros = RingVector::Zeros(RingWidth::k32, 65536);
  EXPECT_GT(chi_square(RingToBytes(zeros)), 1e6);
  auto masked = f.client(1).MaskChunk(0, zeros);
  ASSERT_TRUE(masked.ok());
  EXPECT_LT(chi_square(RingToBytes(masked->data)), 400.0);
}

// A coordinator that reveals another graph seed than the one its plan committed to (to pick
// the graph after seeing the sites' contributions) is refused by every site, in either mode;
// the same sites accept the directory as it came.
TEST(SecAggTest, EverySiteRefusesAGraphSeedThatDoesNotMatchTheCommitment) {
  for (bool malicious : {false, true}) {
    Federation f(5, malicious);
    for (SiteId id = 1; id <= 5; ++id) {
      ASSERT_TRUE(f.server().OnAdvertiseKeys(Wire(*f.client(id).Start())).ok());
    }
    auto dir = f.server().CloseAdvertiseKeys();
    ASSERT_TRUE(dir.ok()) << dir.status();
    KeyDirectory lie = *dir;
    lie.graph_seed[5] ^= 0x40;
    for (SiteId id = 1; id <= 4; ++id) {
      auto shares = f.client(id).OnKeyDirectory(Wire(lie));
      EXPECT_EQ(shares.status().code(), absl::StatusCode::kPermissionDenied) << id;
      EXPECT_THAT(std::string(shares.status().message()),
                  HasSubstr("does not match its commitment in the plan"));
      EXPECT_EQ(f.client(id).stage(), ClientSession::Stage::kAborted);
    }
    EXPECT_TRUE(f.client(5).OnKeyDirectory(Wire(*dir)).ok());
  }
  // Nor can the coordinator swap a site's contribution: the site itself sees it, and in
  // malicious mode every other site sees the broken signature.
  Federation f(5, true);
  std::vector<AdvertiseKeys> adv;
  for (SiteId id = 1; id <= 5; ++id) {
    adv.push_back(*f.client(id).Start());
    ASSERT_TRUE(f.server().OnAdvertiseKeys(adv.back()).ok());
  }
  KeyDirectory swapped = *f.server().CloseAdvertiseKeys();
  swapped.entries[2].graph_contribution[0] ^= 1;
  auto own = f.client(3).OnKeyDirectory(swapped);
  EXPECT_EQ(own.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(own.status().message()), HasSubstr("another graph contribution"));
  auto other = f.client(1).OnKeyDirectory(swapped);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("advertised keys of site 3"));
}

// A signed advertisement is bound to its attempt: one from an earlier attempt of the same
// round (other round seed, other graph-seed commitment) verifies neither at the coordinator
// nor at any site of the new attempt, so it cannot be replayed there.
TEST(SecAggMaliciousTest, AdvertisementFromAnotherAttemptFailsVerification) {
  Federation f(5, true);
  std::vector<AdvertiseKeys> first;
  for (SiteId id = 1; id <= 5; ++id) first.push_back(Wire(*f.client(id).Start()));
  for (const AdvertiseKeys& a : first) ASSERT_TRUE(f.server().OnAdvertiseKeys(a).ok());
  const SecAggParams attempt1 = f.params();
  for (int changed : {0, 1}) {
    SecAggParams attempt2 = attempt1;  // the same round, sites and keys
    (changed == 0 ? attempt2.round_seed : attempt2.graph_seed_commitment)[3] ^= 1;
    if (changed == 0) {
      auto server = ServerSession::Create(attempt2);
      ASSERT_TRUE(server.ok()) << server.status();
      Status st = (*server)->OnAdvertiseKeys(first[1]);
      EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
      EXPECT_THAT(std::string(st.message()), HasSubstr("advertised keys of site 2"));
    }
    auto site1 = ClientSession::Create(attempt2, 1, &f.key(1));
    ASSERT_TRUE(site1.ok()) << site1.status();
    KeyDirectory replayed{attempt1.round, first, {}};
    replayed.entries[0] = *(*site1)->Start();
    auto r = (*site1)->OnKeyDirectory(replayed);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << changed;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("advertised keys of site 2"));
  }
}

// 9 sites, k = 4, t = 3. Site 1 is shown the signatures of itself, its four non-neighbours and
// only two of its neighbours: seven in all, but the shares it holds are its neighbours', and
// only two of those vouch for the list. It refuses; with a third neighbour it answers.
TEST(SecAggMaliciousTest, SignaturesFromOutsideTheNeighbourhoodDoNotCount) {
  Federation f(9, true, RingWidth::k32, 4, 3);
  SurvivorList all = UploadAll(f);
  ASSERT_EQ(all.survivors, Range(1, 9));
  std::map<SiteId, ConsistencySignature> sigs;
  for (SiteId id = 1; id <= 9; ++id) sigs[id] = *f.client(id).OnSurvivorList(all);
  auto request_for = [&](SiteId site, size_t neighbours) {
    const std::vector<SiteId> peers = f.client(site).masking_peers();
    EXPECT_EQ(peers.size(), 4u);
    UnmaskRequest r{f.params().round, all.survivors, {}};
    for (SiteId id = 1; id <= 9; ++id) {
      const bool neighbour = std::find(peers.begin(), peers.end(), id) != peers.end();
      if (!neighbour) r.signatures.push_back(sigs[id]);
    }
    for (size_t i = 0; i < neighbours; ++i) r.signatures.push_back(sigs[peers[i]]);
    return r;
  };
  auto refused = f.client(1).OnUnmaskRequest(request_for(1, 2));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("only 2 of the 7 consistency signatures come from this site's neighbours"));
  EXPECT_EQ(f.client(1).stage(), ClientSession::Stage::kAborted);
  auto answered = f.client(2).OnUnmaskRequest(request_for(2, 3));
  EXPECT_TRUE(answered.ok()) << answered.status();
}

// The coordinator's side of the same rule: with signatures only from site 1 and its four
// non-neighbours (five, above t = 3), no neighbour of site 1 could answer for its seed, and
// the session stops before asking anyone to reveal anything.
TEST(SecAggMaliciousTest, CoordinatorDoesNotAskUnlessEveryNeighbourhoodHasItsSigners) {
  Federation f(9, true, RingWidth::k32, 4, 3);
  SurvivorList all = UploadAll(f);
  const std::vector<SiteId> peers = f.client(1).masking_peers();
  for (SiteId id = 1; id <= 9; ++id) {
    if (std::find(peers.begin(), peers.end(), id) != peers.end()) continue;
    ASSERT_TRUE(f.server().OnConsistencySignature(*f.client(id).OnSurvivorList(all)).ok());
  }
  auto request = f.server().StartUnmask();
  EXPECT_EQ(request.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(request.status().message()), HasSubstr("can answer the unmask request"));
  EXPECT_THAT(std::string(request.status().message()), HasSubstr("must be retried"));
}

}  // namespace
}  // namespace hansa
