// Derivations both sides of SecAgg+ must compute identically: session id, signed statements,
// share AAD, and the keys of the share cipher and of the masks. Internal to common/secagg.
#pragma once

#include <string>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/crypto/sha256.h"
#include "common/crypto/x25519.h"
#include "common/secagg/messages.h"

namespace hansa::secagg_internal {

// Labels keep every derived key and signed statement in its own domain.
inline constexpr char kShareKeyLabel[] = "hansa/secagg/v1/share-encryption-key";
inline constexpr char kPairMaskLabel[] = "hansa/secagg/v1/pairwise-mask-key";
inline constexpr char kSelfMaskLabel[] = "hansa/secagg/v1/self-mask-key";

// SHA-256 over the round parameters (the attempt's round seed and graph-seed commitment
// among them), every advertised key and graph contribution (ascending sender) and the
// revealed graph seed.
Sha256Digest SessionId(const SecAggParams& params, const KeyDirectory& directory);

// What a site signs in AdvertiseKeys (malicious mode): its keys and graph contribution bound
// to the attempt (round, round_seed, graph-seed commitment), so that a signed advertisement
// does not verify in any other attempt, not even a retry of the same round.
std::string AdvertiseStatement(const SecAggParams& params, const AdvertiseKeys& m);
// What a site signs in the consistency check.
std::string ConsistencyStatement(const Sha256Digest& session, uint64_t round,
                                 const std::vector<SiteId>& survivors);
// Associated data of the share ciphertext from `sender` to `receiver`.
std::string ShareAad(const Sha256Digest& session, uint64_t round, SiteId sender, SiteId receiver);

// AES-256-GCM key for shares between two sites (symmetric in the two). `own` is a whole key
// pair (X25519SharedSecret).
StatusOr<SecretBytes> ShareKey(const X25519KeyPair& own, const X25519PublicKey& peer_public,
                               const Sha256Digest& session);
// ChaCha20 key of the pairwise mask between two sites (symmetric in the two); zero nonce.
StatusOr<SecretBytes> PairwiseMaskKey(const X25519KeyPair& own, const X25519PublicKey& peer_public,
                                      const Sha256Digest& session);
// ChaCha20 key of a site's self mask; zero nonce.
StatusOr<SecretBytes> SelfMaskKey(const SecretBytes& seed, const Sha256Digest& session);
// The PRGs of those keys.
StatusOr<ChaCha20Prg> PairwiseMaskPrg(const X25519KeyPair& own, const X25519PublicKey& peer_public,
                                      const Sha256Digest& session);
StatusOr<ChaCha20Prg> SelfMaskPrg(const SecretBytes& seed, const Sha256Digest& session);

// The sign with which site `self` adds its pairwise mask with `peer`: the lower id adds.
inline MaskOp PairwiseOp(SiteId self, SiteId peer) {
  return self < peer ? MaskOp::kAdd : MaskOp::kSubtract;
}
inline MaskOp Inverse(MaskOp op) { return op == MaskOp::kAdd ? MaskOp::kSubtract : MaskOp::kAdd; }

// Applies every stream to elements [offset, offset + v->size()) (ApplyMaskStreams).
Status ApplyStreams(const std::vector<MaskStream>& streams, uint64_t offset, RingVector* v,
                    int threads);

// True when `ids` is strictly ascending within 1..n.
bool AscendingIds(const std::vector<SiteId>& ids, uint32_t n);

}  // namespace hansa::secagg_internal
