#include "common/secagg/server.h"

#include <algorithm>

#include "common/crypto/random.h"
#include "common/secagg/internal/protocol.h"
#include "common/secagg/shamir.h"

namespace hansa {

using namespace secagg_internal;  // NOLINT(build/namespaces): internal helpers of this module

struct ServerSession::Site {
  AdvertiseKeys keys;
  bool shared = false;
  std::vector<EncryptedShare> outgoing;  // ciphertexts addressed to neighbours
  uint64_t folded = 0;                   // masked elements folded into the sum
  bool signed_consistency = false;
  bool responded = false;
  // Revealed shares of this site's secrets: of the seed from its neighbours (and itself,
  // without the malicious-coordinator checks), of the mask key from its neighbours.
  std::vector<ShamirShare> seed_shares, key_shares;
};

ServerSession::ServerSession(const SecAggParams& params, const GraphSeed& graph_seed)
    : params_(params), graph_seed_(graph_seed) {}
ServerSession::~ServerSession() = default;

StatusOr<std::unique_ptr<ServerSession>> ServerSession::Create(const SecAggParams& params) {
  ASSIGN_OR_RETURN(SecAggParams p, ResolveParams(params));
  GraphSeed seed;
  RETURN_IF_ERROR(RandBytes(seed.data(), seed.size()));
  p.graph_seed_commitment = CommitGraphSeed(seed);
  return std::unique_ptr<ServerSession>(new ServerSession(p, seed));
}

Status ServerSession::Fail(Status status) {
  stage_ = Stage::kAborted;
  abort_status_ = status;
  sum_ = RingVector();
  sites_.clear();
  return status;
}

Status ServerSession::ExpectStage(Stage stage, const char* what) {
  if (stage_ == Stage::kAborted) {
    return absl::FailedPreconditionError(
        absl::StrCat("SecAgg round aborted earlier: ", abort_status_.message()));
  }
  if (stage_ != stage) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is not valid now: its stage is closed or not yet open"));
  }
  return absl::OkStatus();
}

Status ServerSession::Expect(Stage stage, uint64_t round, SiteId sender, const char* what) {
  RETURN_IF_ERROR(Annotate(ExpectStage(stage, what), absl::StrCat("from site ", sender)));
  if (round != params_.round) {
    return absl::InvalidArgumentError(absl::StrCat(what, " from site ", sender, " is for round ",
                                                   round, ", not ", params_.round));
  }
  if (sender < 1 || sender > params_.num_sites) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " from unknown site ", sender, " (cohort 1..", params_.num_sites, ")"));
  }
  return absl::OkStatus();
}

Status ServerSession::OnAdvertiseKeys(const AdvertiseKeys& m) {
  RETURN_IF_ERROR(Expect(Stage::kAdvertise, m.round, m.sender, "AdvertiseKeys"));
  if (sites_.count(m.sender) > 0) {
    return absl::InvalidArgumentError(absl::StrCat("site ", m.sender, " advertised keys twice"));
  }
  if (m.encryption_key == m.mask_key) {
    return absl::InvalidArgumentError(absl::StrCat("site ", m.sender, " reused one key twice"));
  }
  if (params_.malicious) {
    if (!m.signature) {
      return absl::PermissionDeniedError(absl::StrCat("site ", m.sender, "'s keys are unsigned"));
    }
    RETURN_IF_ERROR(Annotate(Ed25519Verify(params_.signing_keys[m.sender - 1],
                                           AdvertiseStatement(params_, m), *m.signature),
                             absl::StrCat("advertised keys of site ", m.sender)));
  }
  for (const auto& [id, site] : sites_) {
    for (const X25519PublicKey& k : {site.keys.encryption_key, site.keys.mask_key}) {
      if (k == m.encryption_key || k == m.mask_key) {
        return absl::PermissionDeniedError(
            absl::StrCat("site ", m.sender, " advertised a key already used by site ", id));
      }
    }
  }
  sites_[m.sender].keys = m;
  return absl::OkStatus();
}

StatusOr<KeyDirectory> ServerSession::CloseAdvertiseKeys() {
  RETURN_IF_ERROR(ExpectStage(Stage::kAdvertise, "CloseAdvertiseKeys"));
  if (sites_.size() < static_cast<size_t>(params_.threshold) + 1) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("only ", sites_.size(), " sites advertised keys; at least threshold + 1 = ",
                     params_.threshold + 1, " are needed; the round must be retried")));
  }
  directory_.round = params_.round;
  for (const auto& [id, site] : sites_) {
    directory_.entries.push_back(site.keys);
    participants_.advertised.push_back(id);
  }
  directory_.graph_seed = graph_seed_;
  StatusOr<NeighbourGraph> graph = NeighbourGraph::ForDirectory(params_, directory_);
  if (!graph.ok()) return Fail(graph.status());
  graph_ = *std::move(graph);
  session_id_ = SessionId(params_, directory_);
  stage_ = Stage::kShare;
  return directory_;
}

Status ServerSession::OnShareKeys(const ShareKeys& m) {
  RETURN_IF_ERROR(Expect(Stage::kShare, m.round, m.sender, "ShareKeys"));
  auto it = sites_.find(m.sender);
  if (it == sites_.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("site ", m.sender, " shares keys but did not advertise any"));
  }
  if (it->second.shared) {
    return absl::InvalidArgumentError(absl::StrCat("site ", m.sender, " shared keys twice"));
  }
  // Exactly one ciphertext for each advertised neighbour, so that every pairwise mask the
  // server may have to remove is backed by shares.
  std::vector<SiteId> expected, got;
  for (SiteId v : graph_.Neighbours(m.sender)) {
    if (sites_.count(v) > 0) expected.push_back(v);
  }
  for (const EncryptedShare& e : m.shares) got.push_back(e.peer);
  if (got != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("site ", m.sender, " sent shares for ", got.size(), " sites, not exactly its ",
                     expected.size(), " advertised neighbours in ascending order"));
  }
  it->second.shared = true;
  it->second.outgoing = m.shares;
  return absl::OkStatus();
}

StatusOr<std::vector<ShareDelivery>> ServerSession::CloseShareKeys() {
  RETURN_IF_ERROR(ExpectStage(Stage::kShare, "CloseShareKeys"));
  std::map<SiteId, ShareDelivery> out;
  for (auto& [id, site] : sites_) {
    if (!site.shared) continue;
    participants_.shared.push_back(id);
    out[id] = ShareDelivery{params_.round, id, {}};
  }
  if (out.size() < static_cast<size_t>(params_.threshold) + 1) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "only ", out.size(), " sites shared keys; at least threshold + 1 = ", params_.threshold + 1,
        " are needed; the round must be retried")));
  }
  for (auto& [id, site] : sites_) {
    if (!site.shared) continue;
    for (EncryptedShare& e : site.outgoing) {
      auto d = out.find(e.peer);
      if (d != out.end()) d->second.shares.push_back({id, std::move(e.ciphertext)});
    }
    site.outgoing.clear();
  }
  sum_ = RingVector::Zeros(params_.ring, params_.vector_length);
  stage_ = Stage::kMask;
  std::vector<ShareDelivery> deliveries;
  deliveries.reserve(out.size());
  for (auto& kv : out) deliveries.push_back(std::move(kv.second));
  return deliveries;
}

Status ServerSession::OnMaskedInputChunk(const MaskedInputChunk& m) {
  return FoldMaskedChunk(m, /*withdraw=*/false);
}

Status ServerSession::WithdrawMaskedChunk(const MaskedInputChunk& m) {
  return FoldMaskedChunk(m, /*withdraw=*/true);
}

Status ServerSession::FoldMaskedChunk(const MaskedInputChunk& m, bool withdraw) {
  RETURN_IF_ERROR(Expect(Stage::kMask, m.round, m.sender, "MaskedInputChunk"));
  auto it = sites_.find(m.sender);
  if (it == sites_.end() || !it->second.shared) {
    return absl::PermissionDeniedError(
        absl::StrCat("site ", m.sender, " sends masked input but did not share keys"));
  }
  Site& site = it->second;
  if (withdraw) {
    // Chunks come back in reverse order of folding: the last folded first.
    if (m.data.width != params_.ring || m.data.size() == 0 ||
        m.offset + m.data.size() != site.folded) {
      return absl::InvalidArgumentError(absl::StrCat(
          "withdrawn chunk of site ", m.sender, " at [", m.offset, ", +", m.data.size(),
          ") is not the last one folded (", site.folded, " values folded)"));
    }
  } else if (m.offset != site.folded || m.data.width != params_.ring || m.data.size() == 0 ||
             m.data.size() > params_.vector_length - site.folded) {
    return absl::InvalidArgumentError(absl::StrCat(
        "masked chunk from site ", m.sender, " at [", m.offset, ", +", m.data.size(),
        ") does not continue its upload at ", site.folded, " of ", params_.vector_length));
  }
  const size_t off = static_cast<size_t>(m.offset);
  if (params_.ring == RingWidth::k32) {
    uint32_t* dst = sum_.w32.data() + off;
    const uint32_t* src = m.data.w32.data();
    if (withdraw) {
      for (size_t i = 0; i < m.data.w32.size(); ++i) dst[i] -= src[i];
    } else {
      for (size_t i = 0; i < m.data.w32.size(); ++i) dst[i] += src[i];
    }
  } else {
    uint64_t* dst = sum_.w64.data() + off;
    const uint64_t* src = m.data.w64.data();
    if (withdraw) {
      for (size_t i = 0; i < m.data.w64.size(); ++i) dst[i] -= src[i];
    } else {
      for (size_t i = 0; i < m.data.w64.size(); ++i) dst[i] += src[i];
    }
  }
  if (withdraw) {
    site.folded -= m.data.size();
  } else {
    site.folded += m.data.size();
  }
  return absl::OkStatus();
}

StatusOr<SurvivorList> ServerSession::CloseMaskedInput() {
  RETURN_IF_ERROR(ExpectStage(Stage::kMask, "CloseMaskedInput"));
  survivors_.clear();
  dropped_after_sharing_.clear();
  for (const auto& [id, site] : sites_) {
    if (!site.shared) continue;
    if (site.folded == params_.vector_length) {
      survivors_.push_back(id);
    } else if (site.folded > 0) {
      return Fail(absl::FailedPreconditionError(
          absl::StrCat("site ", id, " stopped in the middle of its masked upload (", site.folded,
                       " of ", params_.vector_length,
                       " values folded); its partial input cannot be separated from "
                       "the sum; the round must be retried")));
    } else {
      dropped_after_sharing_.push_back(id);
    }
  }
  participants_.masked = survivors_;
  // Below the plan's minimum the sum is never unmasked, however the round goes on: a retry
  // would otherwise give a second sum over other sites, and their difference a site's input.
  if (survivors_.size() < params_.min_survivors) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("only ", survivors_.size(),
                     " sites uploaded masked input; the plan unmasks no sum of "
                     "fewer than ",
                     params_.min_survivors, "; not unmasking, the round must be retried")));
  }
  if (survivors_.size() < static_cast<size_t>(params_.threshold)) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("only ", survivors_.size(), " sites uploaded masked input; threshold is ",
                     params_.threshold, "; the round must be retried")));
  }
  stage_ = params_.malicious ? Stage::kConsistency : Stage::kUnmask;
  request_ = UnmaskRequest{params_.round, survivors_, {}};
  return SurvivorList{params_.round, survivors_};
}

Status ServerSession::OnConsistencySignature(const ConsistencySignature& m) {
  RETURN_IF_ERROR(Expect(Stage::kConsistency, m.round, m.sender, "ConsistencySignature"));
  if (!std::binary_search(survivors_.begin(), survivors_.end(), m.sender)) {
    return absl::PermissionDeniedError(
        absl::StrCat("consistency signature from site ", m.sender, ", not a survivor"));
  }
  Site& site = sites_[m.sender];
  if (site.signed_consistency) {
    return absl::InvalidArgumentError(absl::StrCat("site ", m.sender, " signed twice"));
  }
  RETURN_IF_ERROR(Annotate(
      Ed25519Verify(params_.signing_keys[m.sender - 1],
                    ConsistencyStatement(session_id_, params_.round, survivors_), m.signature),
      absl::StrCat("consistency signature of site ", m.sender)));
  site.signed_consistency = true;
  request_.signatures.push_back(m);
  participants_.signed_consistency.push_back(m.sender);
  return absl::OkStatus();
}

StatusOr<UnmaskRequest> ServerSession::StartUnmask() {
  if (params_.malicious) {
    RETURN_IF_ERROR(ExpectStage(Stage::kConsistency, "StartUnmask"));
    if (request_.signatures.size() < static_cast<size_t>(params_.threshold)) {
      return Fail(absl::FailedPreconditionError(absl::StrCat(
          "only ", request_.signatures.size(), " consistency signatures; threshold is ",
          params_.threshold, "; the round must be retried")));
    }
    if (Status st = CheckSignersCanUnmask(); !st.ok()) return Fail(st);
    std::sort(participants_.signed_consistency.begin(), participants_.signed_consistency.end());
    stage_ = Stage::kUnmask;
  }
  RETURN_IF_ERROR(ExpectStage(Stage::kUnmask, "StartUnmask"));
  return request_;
}

Status ServerSession::CheckSignersCanUnmask() const {
  const size_t t = static_cast<size_t>(params_.threshold);
  auto signed_check = [this](SiteId v) {
    auto it = sites_.find(v);
    return it != sites_.end() && it->second.signed_consistency;
  };
  // A signer answers only when t of its own neighbours signed too (ClientSession).
  std::set<SiteId> answering;
  for (SiteId u : survivors_) {
    if (!signed_check(u)) continue;
    size_t signing_neighbours = 0;
    for (SiteId v : graph_.Neighbours(u)) signing_neighbours += signed_check(v) ? 1 : 0;
    if (signing_neighbours >= t) answering.insert(u);
  }
  auto holders = [&](SiteId owner) {
    size_t n = 0;
    for (SiteId v : graph_.Neighbours(owner)) n += answering.count(v);
    return n;
  };
  for (SiteId u : survivors_) {
    if (holders(u) < t) {
      return absl::FailedPreconditionError(
          absl::StrCat("only ", holders(u), " neighbours of site ", u,
                       " can answer the unmask request (each needs ", t,
                       " consistency signatures from its own neighbours); threshold is ", t,
                       "; the round must be retried"));
    }
  }
  for (SiteId d : dropped_after_sharing_) {
    bool needed = false;
    for (SiteId v : survivors_) needed = needed || graph_.Adjacent(d, v);
    if (needed && holders(d) < t) {
      return absl::FailedPreconditionError(absl::StrCat(
          "only ", holders(d), " neighbours of dropped site ", d,
          " can answer the unmask request; threshold is ", t, "; the round must be retried"));
    }
  }
  return absl::OkStatus();
}

Status ServerSession::OnUnmaskResponse(const UnmaskResponse& m) {
  RETURN_IF_ERROR(Expect(Stage::kUnmask, m.round, m.sender, "UnmaskResponse"));
  auto it = sites_.find(m.sender);
  const bool eligible = std::binary_search(survivors_.begin(), survivors_.end(), m.sender) &&
                        (!params_.malicious || it->second.signed_consistency);
  if (!eligible) {
    return absl::PermissionDeniedError(
        absl::StrCat("unmask response from site ", m.sender, ", which was not asked"));
  }
  if (it->second.responded) {
    return absl::InvalidArgumentError(absl::StrCat("site ", m.sender, " responded twice"));
  }
  // Validate everything before taking anything.
  std::set<SiteId> owners;
  std::vector<std::pair<SiteId, ShamirShare>> seeds, keys;
  for (const RevealedShare& r : m.shares) {
    auto owner = sites_.find(r.owner);
    const bool holder =
        (r.owner == m.sender && !params_.malicious) || graph_.Adjacent(r.owner, m.sender);
    if (owner == sites_.end() || !owner->second.shared || !holder ||
        !owners.insert(r.owner).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("site ", m.sender, " revealed a share of site ", r.owner,
                       ", which is neither itself nor a neighbour that shared keys, or twice"));
    }
    bool survived = std::binary_search(survivors_.begin(), survivors_.end(), r.owner);
    ShareKind want = survived ? ShareKind::kSelfMaskSeed : ShareKind::kMaskKey;
    if (r.kind != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("site ", m.sender, " revealed the wrong kind of share for site ", r.owner));
    }
    ASSIGN_OR_RETURN(ShamirShare share, ShamirShare::Parse(r.share));
    if (share.index != m.sender) {
      return absl::InvalidArgumentError(
          absl::StrCat("site ", m.sender, " revealed a share with index ", share.index));
    }
    (survived ? seeds : keys).emplace_back(r.owner, share);
  }
  for (auto& [owner, share] : seeds) sites_[owner].seed_shares.push_back(share);
  for (auto& [owner, share] : keys) sites_[owner].key_shares.push_back(share);
  it->second.responded = true;
  participants_.unmasked.push_back(m.sender);
  return absl::OkStatus();
}

Status ServerSession::AddSelfMaskKeys(std::vector<std::pair<SecretBytes, MaskOp>>* keys) {
  for (SiteId u : survivors_) {
    Site& site = sites_[u];
    if (site.seed_shares.size() < static_cast<size_t>(params_.threshold)) {
      return absl::FailedPreconditionError(
          absl::StrCat("only ", site.seed_shares.size(), " shares of site ", u,
                       "'s self-mask seed arrived; threshold is ", params_.threshold,
                       "; the round must be retried"));
    }
    ASSIGN_OR_RETURN(SecretBytes seed, ShamirReconstruct(site.seed_shares, params_.threshold));
    ASSIGN_OR_RETURN(SecretBytes key, SelfMaskKey(seed, session_id_));
    keys->emplace_back(std::move(key), MaskOp::kSubtract);
  }
  return absl::OkStatus();
}

Status ServerSession::AddDroppedPairKeys(std::vector<std::pair<SecretBytes, MaskOp>>* keys) {
  for (SiteId u : dropped_after_sharing_) {
    std::vector<SiteId> affected;  // surviving neighbours that masked with u
    for (SiteId v : survivors_) {
      if (graph_.Adjacent(u, v)) affected.push_back(v);
    }
    if (affected.empty()) continue;
    Site& site = sites_[u];
    if (site.key_shares.size() < static_cast<size_t>(params_.threshold)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "only ", site.key_shares.size(), " shares of dropped site ", u,
          "'s mask key arrived; threshold is ", params_.threshold, "; the round must be retried"));
    }
    X25519KeyPair key;
    ASSIGN_OR_RETURN(key.private_key, ShamirReconstruct(site.key_shares, params_.threshold));
    ASSIGN_OR_RETURN(key.public_key, X25519PublicFromPrivate(key.private_key));
    if (key.public_key != site.keys.mask_key) {
      return absl::DataLossError(absl::StrCat(
          "the mask key reconstructed for dropped site ", u,
          " does not match its advertised key: some neighbour revealed a wrong share"));
    }
    for (SiteId v : affected) {
      ASSIGN_OR_RETURN(SecretBytes pair,
                       PairwiseMaskKey(key, sites_[v].keys.mask_key, session_id_));
      keys->emplace_back(std::move(pair), Inverse(PairwiseOp(v, u)));
    }
  }
  return absl::OkStatus();
}

Status ApplyMasksOnCpu(const std::vector<MaskStream>& streams, RingVector* sum) {
  return ApplyStreams(streams, 0, sum, MaskThreads());
}

StatusOr<SecAggResult> ServerSession::Finish() { return Finish(ApplyMasksOnCpu); }

StatusOr<SecAggResult> ServerSession::Finish(const MaskApplier& apply) {
  RETURN_IF_ERROR(ExpectStage(Stage::kUnmask, "Finish"));
  std::vector<std::pair<SecretBytes, MaskOp>> keys;
  Status st = AddSelfMaskKeys(&keys);
  if (st.ok()) st = AddDroppedPairKeys(&keys);
  if (st.ok()) {
    std::vector<MaskStream> streams;
    streams.reserve(keys.size());
    for (const auto& [key, op] : keys) streams.push_back(MaskStream{&key, ChaCha20Nonce{}, op});
    st = apply(streams, &sum_);
  }
  if (!st.ok()) return Fail(st);
  stage_ = Stage::kDone;
  SecAggResult result{std::move(sum_), survivors_};
  sites_.clear();
  return result;
}

}  // namespace hansa
