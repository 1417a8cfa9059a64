#include "common/secagg/client.h"

#include <algorithm>
#include <set>

#include "common/crypto/aes_gcm.h"
#include "common/crypto/random.h"
#include "common/secagg/graph.h"
#include "common/secagg/internal/protocol.h"
#include "common/secagg/shamir.h"

namespace hansa {

using namespace secagg_internal;  // NOLINT(build/namespaces): internal helpers of this module

struct ClientSession::Secrets {
  X25519KeyPair encryption;
  X25519KeyPair mask;
  SecretBytes self_seed;
  // Shares held for neighbours: owner -> (self-mask-seed share, mask-key share).
  std::map<SiteId, std::pair<SecretBytes, SecretBytes>> held;
  // This site's own share of its self-mask seed (evaluation point = its id). Without the
  // malicious-coordinator checks it is revealed with the neighbours' shares when the site
  // survives, so that its seed needs t - 1 of them, not t (see SecAggParams::threshold).
  SecretBytes own_seed_share;
  // The mask streams' keys, self mask first, then one per masking peer.
  std::vector<std::pair<SecretBytes, MaskOp>> mask_keys;
};

ClientSession::ClientSession(const SecAggParams& params, SiteId self,
                             const Ed25519PrivateKey* signing_key)
    : params_(params),
      self_(self),
      signing_key_(signing_key),
      secrets_(std::make_unique<Secrets>()) {}

ClientSession::~ClientSession() = default;

StatusOr<std::unique_ptr<ClientSession>> ClientSession::Create(
    const SecAggParams& params, SiteId self, const Ed25519PrivateKey* signing_key) {
  ASSIGN_OR_RETURN(SecAggParams p, ResolveParams(params));
  if (self < 1 || self > p.num_sites) {
    return absl::InvalidArgumentError(
        absl::StrCat("site id ", self, " is outside the cohort 1..", p.num_sites));
  }
  if (p.malicious) {
    if (signing_key == nullptr) {
      return absl::InvalidArgumentError("malicious-coordinator mode needs the site's signing key");
    }
    if (signing_key->public_key() != p.signing_keys[self - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "signing key does not match the key listed for site ", self, " in the round plan"));
    }
  }
  // The neighbours are known only from the key directory on: the graph's seed is drawn
  // jointly with the coordinator and every site that advertises (graph.h).
  return std::unique_ptr<ClientSession>(new ClientSession(p, self, signing_key));
}

Status ClientSession::Abort(Status status) {
  if (stage_ != Stage::kAborted) {
    stage_ = Stage::kAborted;
    abort_status_ = status;
    secrets_.reset();
  }
  return status;
}

Status ClientSession::Expect(Stage stage, uint64_t round, const char* message) {
  if (stage_ == Stage::kAborted) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SecAgg session of site ", self_, " aborted earlier: ", abort_status_.message()));
  }
  if (round != params_.round) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(message, " is for round ", round,
                                                         ", this session is round ", params_.round,
                                                         " (replayed or misrouted message)")));
  }
  if (stage_ != stage) {
    return Abort(absl::PermissionDeniedError(
        absl::StrCat(message, " arrived out of order (stage ", static_cast<int>(stage_),
                     "); a replayed or reordered message aborts the round")));
  }
  return absl::OkStatus();
}

StatusOr<AdvertiseKeys> ClientSession::Start() {
  RETURN_IF_ERROR(Expect(Stage::kNew, params_.round, "Start"));
  auto enc = GenerateX25519KeyPair();
  auto mask = GenerateX25519KeyPair();
  if (!enc.ok()) return Abort(enc.status());
  if (!mask.ok()) return Abort(mask.status());
  secrets_->encryption = std::move(*enc);
  secrets_->mask = std::move(*mask);
  AdvertiseKeys m;
  m.round = params_.round;
  m.sender = self_;
  m.encryption_key = secrets_->encryption.public_key;
  m.mask_key = secrets_->mask.public_key;
  if (Status st = RandBytes(m.graph_contribution.data(), m.graph_contribution.size()); !st.ok()) {
    return Abort(st);
  }
  graph_contribution_ = m.graph_contribution;
  if (params_.malicious) {
    auto sig = signing_key_->Sign(AdvertiseStatement(params_, m));
    if (!sig.ok()) return Abort(sig.status());
    m.signature = *sig;
  }
  stage_ = Stage::kAdvertised;
  return m;
}

StatusOr<ShareKeys> ClientSession::OnKeyDirectory(const KeyDirectory& directory) {
  RETURN_IF_ERROR(Expect(Stage::kAdvertised, directory.round, "KeyDirectory"));
  ShareKeys out;
  Status st = BuildShares(directory, &out);
  if (!st.ok()) return Abort(st);
  stage_ = Stage::kSharesSent;
  return out;
}

Status ClientSession::BuildShares(const KeyDirectory& directory, ShareKeys* out) {
  std::vector<SiteId> ids;
  std::set<X25519PublicKey> keys;
  bool found_self = false;
  for (const AdvertiseKeys& e : directory.entries) {
    ids.push_back(e.sender);
    if (e.round != params_.round) {
      return absl::InvalidArgumentError(
          absl::StrCat("key directory entry of site ", e.sender, " is for round ", e.round));
    }
    if (!keys.insert(e.encryption_key).second || !keys.insert(e.mask_key).second) {
      return absl::PermissionDeniedError(
          absl::StrCat("key directory repeats a public key (at site ", e.sender,
                       "); keys must be fresh per site and round"));
    }
    if (e.sender == self_) {
      found_self = e.encryption_key == secrets_->encryption.public_key &&
                   e.mask_key == secrets_->mask.public_key &&
                   e.graph_contribution == graph_contribution_;
      if (!found_self) {
        return absl::PermissionDeniedError(
            "key directory shows other keys or another graph contribution for this site");
      }
    }
  }
  if (!AscendingIds(ids, params_.num_sites)) {
    return absl::InvalidArgumentError("key directory entries are not ascending site ids in range");
  }
  if (!found_self) return absl::PermissionDeniedError("key directory leaves out this site");
  // Malicious mode: every entry is checked, not only the neighbours', because every graph
  // contribution enters the graph's seed and the coordinator must not be able to choose one.
  for (const AdvertiseKeys& e : directory.entries) {
    if (!params_.malicious) break;
    if (!e.signature) {
      return absl::PermissionDeniedError(
          absl::StrCat("advertised keys of site ", e.sender, " are not signed"));
    }
    Status v = Ed25519Verify(params_.signing_keys[e.sender - 1], AdvertiseStatement(params_, e),
                             *e.signature);
    if (!v.ok()) return Annotate(v, absl::StrCat("advertised keys of site ", e.sender));
  }
  ASSIGN_OR_RETURN(NeighbourGraph graph, NeighbourGraph::ForDirectory(params_, directory));
  advertised_ = ids;
  neighbours_ = graph.Neighbours(self_);
  neighbour_keys_.clear();
  for (const AdvertiseKeys& e : directory.entries) {
    if (std::binary_search(neighbours_.begin(), neighbours_.end(), e.sender)) {
      neighbour_keys_.emplace(e.sender, e);
    }
  }
  if (neighbour_keys_.size() < static_cast<size_t>(params_.threshold)) {
    return absl::FailedPreconditionError(
        absl::StrCat("only ", neighbour_keys_.size(), " of ", neighbours_.size(),
                     " neighbours advertised keys; threshold is ", params_.threshold));
  }
  session_id_ = SessionId(params_, directory);

  secrets_->self_seed = SecretBytes(32);
  RETURN_IF_ERROR(RandBytes(secrets_->self_seed.data(), 32));
  // The seed is shared among the neighbours and this site itself; the mask key among the
  // neighbours only (this site never reveals anything of its own mask key).
  std::vector<SiteId> holders;
  for (const auto& kv : neighbour_keys_) holders.push_back(kv.first);
  std::vector<SiteId> seed_holders = holders;
  const auto self_at = std::lower_bound(seed_holders.begin(), seed_holders.end(), self_);
  const size_t own = static_cast<size_t>(self_at - seed_holders.begin());
  seed_holders.insert(self_at, self_);
  ASSIGN_OR_RETURN(auto seed_shares,
                   ShamirSplit(secrets_->self_seed, params_.threshold, seed_holders));
  ASSIGN_OR_RETURN(auto key_shares,
                   ShamirSplit(secrets_->mask.private_key, params_.threshold, holders));
  secrets_->own_seed_share = seed_shares[own].Serialize();
  out->round = params_.round;
  out->sender = self_;
  for (size_t i = 0; i < holders.size(); ++i) {
    const SiteId v = holders[i];
    const size_t seed_index = i < own ? i : i + 1;  // past this site's own point
    SecretBytes a = seed_shares[seed_index].Serialize(), b = key_shares[i].Serialize();
    SecretBytes plain(a.size() + b.size());
    std::copy(a.data(), a.data() + a.size(), plain.data());
    std::copy(b.data(), b.data() + b.size(), plain.data() + a.size());
    ASSIGN_OR_RETURN(SecretBytes key, ShareKey(secrets_->encryption,
                                               neighbour_keys_[v].encryption_key, session_id_));
    ASSIGN_OR_RETURN(std::string ct, Aes256GcmSeal(key, plain.view(),
                                                   ShareAad(session_id_, params_.round, self_, v)));
    out->shares.push_back({v, std::move(ct)});
  }
  return absl::OkStatus();
}

Status ClientSession::OnShareDelivery(const ShareDelivery& delivery) {
  RETURN_IF_ERROR(Expect(Stage::kSharesSent, delivery.round, "ShareDelivery"));
  auto fail = [this](Status st) { return Abort(std::move(st)); };
  if (delivery.receiver != self_) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("share delivery for site ", delivery.receiver, " reached site ", self_)));
  }
  for (const EncryptedShare& e : delivery.shares) {
    auto it = neighbour_keys_.find(e.peer);
    if (it == neighbour_keys_.end()) {
      return fail(absl::PermissionDeniedError(
          absl::StrCat("share delivery includes site ", e.peer, ", not an advertised neighbour")));
    }
    if (secrets_->held.count(e.peer) > 0) {
      return fail(
          absl::PermissionDeniedError(absl::StrCat("share delivery repeats site ", e.peer)));
    }
    auto key = ShareKey(secrets_->encryption, it->second.encryption_key, session_id_);
    if (!key.ok()) return fail(key.status());
    auto plain =
        Aes256GcmOpen(*key, e.ciphertext, ShareAad(session_id_, params_.round, e.peer, self_));
    if (!plain.ok())
      return fail(Annotate(plain.status(), absl::StrCat("shares from site ", e.peer)));
    if (plain->size() != 2 * kShamirShareSize) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("shares from site ", e.peer, " have the wrong size")));
    }
    SecretBytes a(plain->data(), kShamirShareSize);
    SecretBytes b(plain->data() + kShamirShareSize, kShamirShareSize);
    auto sa = ShamirShare::Parse(a);
    auto sb = ShamirShare::Parse(b);
    if (!sa.ok() || !sb.ok() || sa->index != self_ || sb->index != self_) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat("shares from site ", e.peer, " are malformed or not for this site")));
    }
    secrets_->held.emplace(e.peer, std::make_pair(std::move(a), std::move(b)));
  }
  if (secrets_->held.size() < static_cast<size_t>(params_.threshold)) {
    return fail(absl::FailedPreconditionError(absl::StrCat("only ", secrets_->held.size(),
                                                           " neighbours shared keys; threshold is ",
                                                           params_.threshold)));
  }
  auto self_key = SelfMaskKey(secrets_->self_seed, session_id_);
  if (!self_key.ok()) return fail(self_key.status());
  secrets_->mask_keys.emplace_back(std::move(*self_key), MaskOp::kAdd);
  for (const auto& kv : secrets_->held) {
    auto key = PairwiseMaskKey(secrets_->mask, neighbour_keys_[kv.first].mask_key, session_id_);
    if (!key.ok()) return fail(key.status());
    secrets_->mask_keys.emplace_back(std::move(*key), PairwiseOp(self_, kv.first));
  }
  stage_ = Stage::kMasking;
  return absl::OkStatus();
}

Status ClientSession::CheckChunk(uint64_t offset, const RingVector& values) {
  RETURN_IF_ERROR(Expect(Stage::kMasking, params_.round, "MaskChunk"));
  if (offset != next_offset_ || values.width != params_.ring || values.size() == 0 ||
      values.size() > params_.vector_length - offset) {
    return Abort(absl::InvalidArgumentError(absl::StrCat(
        "masked chunk [", offset, ", +", values.size(), ") of ", static_cast<int>(values.width),
        "-bit values does not continue at ", next_offset_, " within ", params_.vector_length, " ",
        static_cast<int>(params_.ring), "-bit values")));
  }
  return absl::OkStatus();
}

MaskedInputChunk ClientSession::EmitChunk(uint64_t offset, RingVector masked) {
  next_offset_ += masked.size();
  if (next_offset_ == params_.vector_length) {
    stage_ = Stage::kMasked;
    secrets_->mask_keys.clear();
  }
  MaskedInputChunk m;
  m.round = params_.round;
  m.sender = self_;
  m.offset = offset;
  m.data = std::move(masked);
  return m;
}

StatusOr<MaskedInputChunk> ClientSession::MaskChunk(uint64_t offset, RingVector values) {
  RETURN_IF_ERROR(CheckChunk(offset, values));
  ASSIGN_OR_RETURN(std::vector<MaskStream> streams, MaskStreams());
  Status st = ApplyStreams(streams, offset, &values, mask_threads_);
  if (!st.ok()) return Abort(st);
  return EmitChunk(offset, std::move(values));
}

StatusOr<std::vector<MaskStream>> ClientSession::MaskStreams() const {
  if (stage_ != Stage::kMasking) {
    return absl::FailedPreconditionError(
        absl::StrCat("site ", self_, " has no mask streams at stage ", static_cast<int>(stage_)));
  }
  std::vector<MaskStream> streams;
  streams.reserve(secrets_->mask_keys.size());
  for (const auto& [key, op] : secrets_->mask_keys) {
    streams.push_back(MaskStream{&key, ChaCha20Nonce{}, op});
  }
  return streams;
}

StatusOr<MaskedInputChunk> ClientSession::TakeMaskedChunk(uint64_t offset, RingVector masked) {
  RETURN_IF_ERROR(CheckChunk(offset, masked));
  return EmitChunk(offset, std::move(masked));
}

StatusOr<ConsistencySignature> ClientSession::OnSurvivorList(const SurvivorList& list) {
  RETURN_IF_ERROR(Expect(Stage::kMasked, list.round, "SurvivorList"));
  if (!params_.malicious) {
    return Abort(absl::FailedPreconditionError(
        "SurvivorList arrived but the round is not in malicious-coordinator mode"));
  }
  const auto& s = list.survivors;
  if (!AscendingIds(s, params_.num_sites) || !std::binary_search(s.begin(), s.end(), self_) ||
      s.size() < static_cast<size_t>(params_.threshold)) {
    return Abort(absl::PermissionDeniedError(
        absl::StrCat("survivor list of ", s.size(),
                     " sites is malformed, leaves out this site, or is below "
                     "the threshold ",
                     params_.threshold)));
  }
  if (Status took_part = CheckSurvivorsTookPart(s); !took_part.ok()) return Abort(took_part);
  if (s.size() < params_.min_survivors) {
    return Abort(absl::PermissionDeniedError(
        absl::StrCat("survivor list names ", s.size(), " sites, below the plan's minimum of ",
                     params_.min_survivors, " for an unmasked sum; refusing to sign it")));
  }
  auto sig = signing_key_->Sign(ConsistencyStatement(session_id_, params_.round, s));
  if (!sig.ok()) return Abort(sig.status());
  signed_survivors_ = s;
  stage_ = Stage::kSigned;
  return ConsistencySignature{params_.round, self_, *sig};
}

Status ClientSession::CheckUnmaskRequest(const UnmaskRequest& r) {
  const auto& s = r.survivors;
  if (!AscendingIds(s, params_.num_sites) || !std::binary_search(s.begin(), s.end(), self_)) {
    return absl::PermissionDeniedError(
        "unmask request's survivor list is malformed or leaves out this site, which did upload");
  }
  if (s.size() < static_cast<size_t>(params_.threshold)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "unmask request names ", s.size(), " survivors, below the threshold ", params_.threshold));
  }
  RETURN_IF_ERROR(CheckSurvivorsTookPart(s));
  // A sum over fewer sites than the plan's minimum is never helped into being, whatever the
  // coordinator says: with a later sum over more sites it would reveal the difference.
  if (s.size() < params_.min_survivors) {
    return absl::PermissionDeniedError(
        absl::StrCat("unmask request names ", s.size(), " survivors, below the plan's minimum of ",
                     params_.min_survivors, " for an unmasked sum; refusing to reveal shares"));
  }
  if (!params_.malicious) return absl::OkStatus();
  if (s != signed_survivors_) {
    return absl::PermissionDeniedError(
        "inconsistent views: the unmask request's survivor list differs from the one this site "
        "signed");
  }
  std::string statement = ConsistencyStatement(session_id_, params_.round, s);
  std::set<SiteId> signers;
  size_t neighbour_signers = 0;
  for (const ConsistencySignature& c : r.signatures) {
    if (c.round != params_.round || !std::binary_search(s.begin(), s.end(), c.sender) ||
        !signers.insert(c.sender).second) {
      return absl::PermissionDeniedError(absl::StrCat("consistency signature of site ", c.sender,
                                                      " is repeated, for another round, or "
                                                      "from a non-survivor"));
    }
    Status v = Ed25519Verify(params_.signing_keys[c.sender - 1], statement, c.signature);
    if (!v.ok()) {
      return absl::PermissionDeniedError(
          absl::StrCat("inconsistent views: site ", c.sender,
                       "'s consistency signature is not over the survivor list this site signed"));
    }
    if (std::binary_search(neighbours_.begin(), neighbours_.end(), c.sender)) ++neighbour_signers;
  }
  if (signers.size() < static_cast<size_t>(params_.threshold)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "only ", signers.size(), " consistency signatures; threshold is ", params_.threshold));
  }
  // The shares this site holds belong to its neighbours, whose other holders are near it in
  // the graph: signatures from elsewhere say nothing about what they were shown.
  if (neighbour_signers < static_cast<size_t>(params_.threshold)) {
    return absl::PermissionDeniedError(
        absl::StrCat("only ", neighbour_signers, " of the ", signers.size(),
                     " consistency signatures come from this site's neighbours; threshold is ",
                     params_.threshold));
  }
  return absl::OkStatus();
}

StatusOr<UnmaskResponse> ClientSession::OnUnmaskRequest(const UnmaskRequest& request) {
  RETURN_IF_ERROR(
      Expect(params_.malicious ? Stage::kSigned : Stage::kMasked, request.round, "UnmaskRequest"));
  Status st = CheckUnmaskRequest(request);
  if (!st.ok()) return Abort(st);
  UnmaskResponse out;
  out.round = params_.round;
  out.sender = self_;
  const auto& s = request.survivors;
  // Its own seed share first: this site survived (CheckUnmaskRequest saw it in the list).
  if (!params_.malicious) {
    out.shares.push_back({self_, ShareKind::kSelfMaskSeed, secrets_->own_seed_share});
  }
  for (auto& [owner, shares] : secrets_->held) {
    bool survived = std::binary_search(s.begin(), s.end(), owner);
    RevealedShare r;
    r.owner = owner;
    r.kind = survived ? ShareKind::kSelfMaskSeed : ShareKind::kMaskKey;
    r.share = survived ? shares.first : shares.second;
    out.shares.push_back(std::move(r));
  }
  stage_ = Stage::kDone;
  secrets_.reset();  // wipes keys, seed and every held share
  return out;
}

Status ClientSession::CheckSurvivorsTookPart(const std::vector<SiteId>& survivors) const {
  for (SiteId id : survivors) {
    if (!std::binary_search(advertised_.begin(), advertised_.end(), id)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the survivor list names site ", id,
          ", which advertised no keys in this session: its input cannot be in the sum, and "
          "the sum would be of fewer sites than the list says"));
    }
    if (id != self_ && std::binary_search(neighbours_.begin(), neighbours_.end(), id) &&
        secrets_->held.count(id) == 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the survivor list names site ", id,
          ", a neighbour of this site that never gave it shares: its input cannot be in the "
          "sum, and the sum would be of fewer sites than the list says"));
    }
  }
  return absl::OkStatus();
}

std::vector<SiteId> ClientSession::masking_peers() const {
  std::vector<SiteId> out;
  if (secrets_) {
    for (const auto& kv : secrets_->held) out.push_back(kv.first);
  }
  return out;
}

}  // namespace hansa
