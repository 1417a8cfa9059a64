// The SecAgg+ messages, as plain structs with a compact binary form (for `bytes` fields of
// the gRPC wire contract). Every encoding starts with a type byte and a version byte; Parse
// checks every length before use and rejects trailing bytes.
//
// Flow of one round (S = coordinator, C = each site):
//   C->S AdvertiseKeys         S->C KeyDirectory (all advertised keys, the coordinator's
//                                   graph seed revealed)
//   C->S ShareKeys             S->C ShareDelivery (the ciphertexts addressed to that site)
//   C->S MaskedInputChunk...   S->C SurvivorList            (malicious mode:
//   C->S ConsistencySignature                                 consistency check)
//                              S->C UnmaskRequest
//   C->S UnmaskResponse
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/ed25519.h"
#include "common/crypto/x25519.h"
#include "common/secagg/params.h"
#include "common/secagg/ring.h"

namespace hansa {

struct AdvertiseKeys {
  uint64_t round = 0;
  SiteId sender = 0;
  X25519PublicKey encryption_key{};  // for the share ciphertexts
  X25519PublicKey mask_key{};        // for the pairwise masks
  // Malicious mode: by the site's certificate key, over AdvertiseStatement (the attempt's
  // round, round_seed and graph-seed commitment, the keys and the contribution).
  std::optional<Ed25519Signature> signature;
  // Fresh random bytes of the site's own for the neighbour-graph seed (graph.h).
  std::array<uint8_t, 32> graph_contribution{};

  std::string Serialize() const;
  static StatusOr<AdvertiseKeys> Parse(std::string_view bytes);
};

struct KeyDirectory {
  uint64_t round = 0;
  std::vector<AdvertiseKeys> entries;  // ascending sender
  // The coordinator's graph seed, revealed: it must match the plan's commitment.
  std::array<uint8_t, 32> graph_seed{};

  std::string Serialize() const;
  static StatusOr<KeyDirectory> Parse(std::string_view bytes);
};

struct EncryptedShare {
  SiteId peer = 0;         // the receiver in ShareKeys, the sender in ShareDelivery
  std::string ciphertext;  // AES-256-GCM sealed pair of Shamir shares
};

struct ShareKeys {
  uint64_t round = 0;
  SiteId sender = 0;
  std::vector<EncryptedShare> shares;

  std::string Serialize() const;
  static StatusOr<ShareKeys> Parse(std::string_view bytes);
};

struct ShareDelivery {
  uint64_t round = 0;
  SiteId receiver = 0;
  std::vector<EncryptedShare> shares;

  std::string Serialize() const;
  static StatusOr<ShareDelivery> Parse(std::string_view bytes);
};

// Elements [offset, offset + data.size()) of a site's masked input.
struct MaskedInputChunk {
  uint64_t round = 0;
  SiteId sender = 0;
  uint64_t offset = 0;
  RingVector data;

  std::string Serialize() const;
  static StatusOr<MaskedInputChunk> Parse(std::string_view bytes);
};

// The sites whose masked input the coordinator received (ascending): the consistency check's
// question in malicious mode.
struct SurvivorList {
  uint64_t round = 0;
  std::vector<SiteId> survivors;

  std::string Serialize() const;
  static StatusOr<SurvivorList> Parse(std::string_view bytes);
};

struct ConsistencySignature {
  uint64_t round = 0;
  SiteId sender = 0;
  Ed25519Signature signature{};  // over the session id, round and survivor list

  std::string Serialize() const;
  static StatusOr<ConsistencySignature> Parse(std::string_view bytes);
};

struct UnmaskRequest {
  uint64_t round = 0;
  std::vector<SiteId> survivors;  // ascending
  // Malicious mode: at least t consistency signatures over `survivors`.
  std::vector<ConsistencySignature> signatures;

  std::string Serialize() const;
  static StatusOr<UnmaskRequest> Parse(std::string_view bytes);
};

enum class ShareKind : uint8_t { kSelfMaskSeed = 1, kMaskKey = 2 };

struct RevealedShare {
  SiteId owner = 0;  // whose secret this is a share of
  ShareKind kind = ShareKind::kSelfMaskSeed;
  SecretBytes share;  // serialized ShamirShare
};

struct UnmaskResponse {
  uint64_t round = 0;
  SiteId sender = 0;
  std::vector<RevealedShare> shares;

  std::string Serialize() const;
  static StatusOr<UnmaskResponse> Parse(std::string_view bytes);
};

}  // namespace hansa
