#include "common/secagg/internal/protocol.h"

#include "common/crypto/hkdf.h"

namespace hansa::secagg_internal {

namespace {

void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutBytes(std::string* s, const std::array<uint8_t, 32>& b) {
  s->append(reinterpret_cast<const char*>(b.data()), b.size());
}
std::string_view View(const Sha256Digest& d) {
  return std::string_view(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace

Sha256Digest SessionId(const SecAggParams& p, const KeyDirectory& directory) {
  std::string s = "hansa/secagg/v1/session";
  PutU64(&s, p.round);
  PutU32(&s, p.num_sites);
  PutU32(&s, static_cast<uint32_t>(p.degree));
  PutU32(&s, static_cast<uint32_t>(p.threshold));
  s.push_back(static_cast<char>(p.ring));
  s.push_back(p.malicious ? 1 : 0);
  PutU64(&s, p.vector_length);
  PutU32(&s, p.min_survivors);
  PutBytes(&s, p.round_seed);
  PutBytes(&s, p.graph_seed_commitment);
  for (const AdvertiseKeys& e : directory.entries) {
    PutU32(&s, e.sender);
    PutBytes(&s, e.encryption_key);
    PutBytes(&s, e.mask_key);
    PutBytes(&s, e.graph_contribution);
  }
  PutBytes(&s, directory.graph_seed);
  return Sha256(s);
}

std::string AdvertiseStatement(const SecAggParams& p, const AdvertiseKeys& m) {
  std::string s = "hansa/secagg/v2/advertise";
  PutU64(&s, m.round);
  PutBytes(&s, p.round_seed);
  PutBytes(&s, p.graph_seed_commitment);
  PutU32(&s, m.sender);
  PutBytes(&s, m.encryption_key);
  PutBytes(&s, m.mask_key);
  PutBytes(&s, m.graph_contribution);
  return s;
}

std::string ConsistencyStatement(const Sha256Digest& session, uint64_t round,
                                 const std::vector<SiteId>& survivors) {
  std::string s = "hansa/secagg/v1/consistency";
  s.append(View(session));
  PutU64(&s, round);
  PutU32(&s, static_cast<uint32_t>(survivors.size()));
  for (SiteId id : survivors) PutU32(&s, id);
  return s;
}

std::string ShareAad(const Sha256Digest& session, uint64_t round, SiteId sender, SiteId receiver) {
  std::string s = "hansa/secagg/v1/share";
  s.append(View(session));
  PutU64(&s, round);
  PutU32(&s, sender);
  PutU32(&s, receiver);
  return s;
}

StatusOr<SecretBytes> ShareKey(const X25519KeyPair& own, const X25519PublicKey& peer_public,
                               const Sha256Digest& session) {
  ASSIGN_OR_RETURN(SecretBytes shared, X25519SharedSecret(own, peer_public));
  return HkdfSha256(shared, View(session), kShareKeyLabel, 32);
}

StatusOr<SecretBytes> PairwiseMaskKey(const X25519KeyPair& own, const X25519PublicKey& peer_public,
                                      const Sha256Digest& session) {
  ASSIGN_OR_RETURN(SecretBytes shared, X25519SharedSecret(own, peer_public));
  return HkdfSha256(shared, View(session), kPairMaskLabel, 32);
}

StatusOr<SecretBytes> SelfMaskKey(const SecretBytes& seed, const Sha256Digest& session) {
  return HkdfSha256(seed, View(session), kSelfMaskLabel, 32);
}

StatusOr<ChaCha20Prg> PairwiseMaskPrg(const X25519KeyPair& own, const X25519PublicKey& peer_public,
                                      const Sha256Digest& session) {
  ASSIGN_OR_RETURN(SecretBytes key, PairwiseMaskKey(own, peer_public, session));
  return ChaCha20Prg::Create(key, ChaCha20Nonce{});
}

StatusOr<ChaCha20Prg> SelfMaskPrg(const SecretBytes& seed, const Sha256Digest& session) {
  ASSIGN_OR_RETURN(SecretBytes key, SelfMaskKey(seed, session));
  return ChaCha20Prg::Create(key, ChaCha20Nonce{});
}

Status ApplyStreams(const std::vector<MaskStream>& streams, uint64_t offset, RingVector* v,
                    int threads) {
  if (v->width == RingWidth::k32) {
    return ApplyMaskStreams(streams, offset, v->w32.data(), v->w32.size(), threads);
  }
  return ApplyMaskStreams(streams, offset, v->w64.data(), v->w64.size(), threads);
}

bool AscendingIds(const std::vector<SiteId>& ids, uint32_t n) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 1 || ids[i] > n || (i > 0 && ids[i] <= ids[i - 1])) return false;
  }
  return true;
}

}  // namespace hansa::secagg_internal
