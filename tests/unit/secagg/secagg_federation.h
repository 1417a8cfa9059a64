// SecAgg+ sessions of a whole federation in one process (tests only): every site's and the
// coordinator's state machine, every message passed through its byte encoding, and dropouts
// injected between stages. Shared by protocol_test.cc and exhaustive_dropout_test.cc.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "common/secagg/client.h"
#include "common/secagg/server.h"

namespace hansa::test_support {

enum class DropAt { kNever, kAdvertise, kShareKeys, kMaskedInput, kConsistency, kUnmask };

template <typename M>
M Wire(const M& m) {  // through the byte encoding, as the transport would carry it
  auto parsed = M::Parse(m.Serialize());
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return std::move(*parsed);
}

class Federation {
 public:
  // `identities`, when given, are the sites' long-lived signing keys (at least n, kept by the
  // caller for the Federation's life), as real sites keep theirs across rounds: tests that run
  // many rounds (the exhaustive patterns) make them once. Fresh ones otherwise.
  Federation(uint32_t n, bool malicious, RingWidth ring = RingWidth::k32, int degree = 0,
             int threshold = 0, uint64_t length = 257,
             const std::vector<Ed25519PrivateKey>* identities = nullptr) {
    params_.round = 11;
    params_.num_sites = n;
    params_.degree = degree;
    params_.threshold = threshold;
    params_.malicious = malicious;
    params_.ring = ring;
    params_.vector_length = length;
    params_.round_seed = {42, static_cast<uint8_t>(n)};
    if (identities == nullptr) {
      for (uint32_t i = 0; i < n; ++i) own_keys_.push_back(*Ed25519PrivateKey::Generate());
      identities = &own_keys_;
    }
    for (uint32_t i = 0; i < n; ++i) {
      keys_.push_back(&identities->at(i));
      params_.signing_keys.push_back(keys_.back()->public_key());
    }
    std::mt19937_64 rng(n * 31 + length);
    for (uint32_t i = 0; i < n; ++i) {
      RingVector v = RingVector::Zeros(ring, length);
      for (auto& w : v.w32) w = static_cast<uint32_t>(rng());
      for (auto& w : v.w64) w = rng();
      inputs_.push_back(std::move(v));
    }
    Reset();
  }

  void Reset() {
    server_ = std::move(*ServerSession::Create(params_));
    // As the plan carries it: the coordinator's commitment to its graph seed.
    params_.graph_seed_commitment = server_->params().graph_seed_commitment;
    clients_.clear();
    for (SiteId id = 1; id <= params_.num_sites; ++id) {
      auto c = ClientSession::Create(params_, id, keys_[id - 1]);
      EXPECT_TRUE(c.ok()) << c.status();
      clients_.push_back(std::move(*c));
    }
  }

  // The plan's minimum number of inputs for an unmasked sum; new sessions for every party.
  void SetMinSurvivors(uint32_t min_survivors) {
    params_.min_survivors = min_survivors;
    Reset();
  }

  ClientSession& client(SiteId id) { return *clients_[id - 1]; }
  ServerSession& server() { return *server_; }
  const Ed25519PrivateKey& key(SiteId id) const { return *keys_[id - 1]; }
  const SecAggParams& params() const { return params_; }

  bool Active(SiteId id, DropAt stage) const {
    auto it = drops_.find(id);
    return it == drops_.end() || it->second > stage;
  }
  bool Alive(SiteId id) const {
    return clients_[id - 1]->stage() != ClientSession::Stage::kAborted;
  }

  // Runs a whole round; `drops` says at which stage a site stops sending.
  StatusOr<SecAggResult> Run(std::map<SiteId, DropAt> drops, size_t chunk = 100) {
    drops_ = std::move(drops);
    delivered_.clear();
    const uint32_t n = params_.num_sites;
    for (SiteId id = 1; id <= n; ++id) {
      if (!Active(id, DropAt::kAdvertise)) continue;
      ASSIGN_OR_RETURN(AdvertiseKeys m, client(id).Start());
      RETURN_IF_ERROR(Deliver(m, &ServerSession::OnAdvertiseKeys));
    }
    ASSIGN_OR_RETURN(KeyDirectory dir, server_->CloseAdvertiseKeys());
    for (SiteId id = 1; id <= n; ++id) {
      if (!Active(id, DropAt::kShareKeys)) continue;
      ASSIGN_OR_RETURN(ShareKeys m, client(id).OnKeyDirectory(Wire(dir)));
      RETURN_IF_ERROR(Deliver(m, &ServerSession::OnShareKeys));
    }
    ASSIGN_OR_RETURN(std::vector<ShareDelivery> deliveries, server_->CloseShareKeys());
    for (const ShareDelivery& d : deliveries) {
      if (!Active(d.receiver, DropAt::kMaskedInput)) continue;
      RETURN_IF_ERROR(client(d.receiver).OnShareDelivery(Wire(d)));
      RETURN_IF_ERROR(Upload(d.receiver, chunk));
    }
    ASSIGN_OR_RETURN(SurvivorList survivors, server_->CloseMaskedInput());
    if (params_.malicious) {
      for (SiteId id : survivors.survivors) {
        if (!Active(id, DropAt::kConsistency)) continue;
        ASSIGN_OR_RETURN(ConsistencySignature sig, client(id).OnSurvivorList(Wire(survivors)));
        RETURN_IF_ERROR(Deliver(sig, &ServerSession::OnConsistencySignature));
      }
    }
    ASSIGN_OR_RETURN(UnmaskRequest request, server_->StartUnmask());
    for (SiteId id : request.survivors) {
      if (!Active(id, DropAt::kUnmask)) continue;
      if (params_.malicious && !Active(id, DropAt::kConsistency)) continue;
      ASSIGN_OR_RETURN(UnmaskResponse r, client(id).OnUnmaskRequest(Wire(request)));
      RETURN_IF_ERROR(Deliver(r, &ServerSession::OnUnmaskResponse));
    }
    return applier_ ? server_->Finish(applier_) : server_->Finish();
  }

  // From now on, after each message the coordinator accepts, it is also sent what a replaying or
  // confused peer would send, each of which it must refuse without effect: the same message
  // again, the message for the previous round, and every message it accepted earlier in the
  // round (late, from a closed stage, or a duplicate); before each chunk after a site's first,
  // the chunk after it (out of order). Refusals are counted; one accepted fails the test.
  void SetHostile(bool hostile) { hostile_ = hostile; }
  int64_t refused() const { return refused_; }

  // Finish removes the masks with `apply` instead of the CPU PRG.
  void SetUnmaskApplier(ServerSession::MaskApplier apply) { applier_ = std::move(apply); }

  Status Upload(SiteId id, size_t chunk) {
    const RingVector& in = inputs_[id - 1];
    std::vector<MaskedInputChunk> masked;
    for (size_t off = 0; off < in.size(); off += chunk) {
      size_t len = std::min(chunk, in.size() - off);
      RingVector part = RingVector::Zeros(in.width, len);
      if (in.width == RingWidth::k32) {
        std::copy(in.w32.begin() + off, in.w32.begin() + off + len, part.w32.begin());
      } else {
        std::copy(in.w64.begin() + off, in.w64.begin() + off + len, part.w64.begin());
      }
      MaskedInputChunk m;
      if (masked_elsewhere_.count(id) > 0) {
        ASSIGN_OR_RETURN(m, MaskElsewhere(client(id), off, std::move(part)));
      } else {
        ASSIGN_OR_RETURN(m, client(id).MaskChunk(off, std::move(part)));
      }
      masked.push_back(std::move(m));
    }
    for (size_t i = 0; i < masked.size(); ++i) {
      if (hostile_ && i + 1 < masked.size()) {
        Refused(server_->OnMaskedInputChunk(Wire(masked[i + 1])), "a chunk out of order");
      }
      RETURN_IF_ERROR(Deliver(masked[i], &ServerSession::OnMaskedInputChunk));
    }
    return absl::OkStatus();
  }

  // What a GPU does with the session's mask streams, done here with the CPU PRG.
  static StatusOr<MaskedInputChunk> MaskElsewhere(ClientSession& site, uint64_t offset,
                                                  RingVector part) {
    ASSIGN_OR_RETURN(std::vector<MaskStream> streams, site.MaskStreams());
    for (const MaskStream& s : streams) {
      ASSIGN_OR_RETURN(ChaCha20Prg prg, ChaCha20Prg::Create(*s.key, s.nonce));
      if (part.width == RingWidth::k32) {
        RETURN_IF_ERROR(prg.ApplyMask(offset, part.w32.data(), part.size(), s.op));
      } else {
        RETURN_IF_ERROR(prg.ApplyMask(offset, part.w64.data(), part.size(), s.op));
      }
    }
    return site.TakeMaskedChunk(offset, std::move(part));
  }
  // These sites mask through MaskStreams() and TakeMaskedChunk() instead of MaskChunk().
  void SetMaskedElsewhere(std::set<SiteId> sites) { masked_elsewhere_ = std::move(sites); }

  RingVector PlainSum(const std::vector<SiteId>& sites) const {
    RingVector sum = RingVector::Zeros(params_.ring, params_.vector_length);
    for (SiteId id : sites) EXPECT_TRUE(sum.AddInPlace(inputs_[id - 1]).ok());
    return sum;
  }

  const RingVector& input(SiteId id) const { return inputs_[id - 1]; }

 private:
  // Passes `m` to the coordinator through its byte encoding; when hostile, then sends what a
  // replaying peer would (SetHostile).
  template <typename M>
  Status Deliver(const M& m, Status (ServerSession::*on)(const M&)) {
    RETURN_IF_ERROR((server_.get()->*on)(Wire(m)));
    if (!hostile_) return absl::OkStatus();
    Refused((server_.get()->*on)(Wire(m)), "the same message again");
    M stale = m;
    stale.round -= 1;
    Refused((server_.get()->*on)(Wire(stale)), "a message for the previous round");
    for (const auto& again : delivered_) Refused(again(), "an earlier message again");
    delivered_.push_back([this, m, on] { return (server_.get()->*on)(Wire(m)); });
    return absl::OkStatus();
  }

  void Refused(const Status& status, const char* what) {
    ++refused_;
    EXPECT_FALSE(status.ok()) << "the coordinator accepted " << what;
  }

  SecAggParams params_;
  std::vector<Ed25519PrivateKey> own_keys_;  // when no identities were given
  std::vector<const Ed25519PrivateKey*> keys_;
  bool hostile_ = false;
  int64_t refused_ = 0;
  std::vector<std::function<Status()>> delivered_;
  std::vector<RingVector> inputs_;
  std::unique_ptr<ServerSession> server_;
  std::vector<std::unique_ptr<ClientSession>> clients_;
  std::map<SiteId, DropAt> drops_;
  std::set<SiteId> masked_elsewhere_;
  ServerSession::MaskApplier applier_;
};

}  // namespace hansa::test_support
