// The site's side of one SecAgg+ round (Bell et al. CCS 2020 over Bonawitz et al. CCS 2017):
// a state machine that consumes the coordinator's messages and produces the site's replies.
// It does no I/O and starts no threads.
//
// Ownership and threads: one ClientSession per site per round, owned by the site's round
// driver; not thread-safe (call it from one thread, or under the caller's lock). Keys and
// shares live only in memory and are wiped when the session ends or is destroyed.
//
// Any error aborts the session for good (every later call returns FailedPrecondition naming
// the first error): the site then simply stops taking part, which the protocol tolerates as a
// dropout. Errors caused by the coordinator (replayed or out-of-order messages, repeated keys,
// bad signatures, inconsistent survivor sets) are PermissionDenied or InvalidArgument.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/crypto/ed25519.h"
#include "common/crypto/sha256.h"
#include "common/secagg/messages.h"

namespace hansa {

class ClientSession {
 public:
  enum class Stage {
    kNew,         // Start() next
    kAdvertised,  // waiting for the KeyDirectory
    kSharesSent,  // waiting for the ShareDelivery
    kMasking,     // MaskChunk() until the whole vector is sent
    kMasked,      // waiting for SurvivorList (malicious) or UnmaskRequest
    kSigned,      // malicious: waiting for UnmaskRequest
    kDone,
    kAborted,
  };

  // `signing_key` (the site's certificate key) is required in malicious mode and must outlive
  // the session. `params` must be the same at every site and the coordinator.
  static StatusOr<std::unique_ptr<ClientSession>> Create(const SecAggParams& params, SiteId self,
                                                         const Ed25519PrivateKey* signing_key);
  ~ClientSession();

  // Stage 0: fresh key pairs for share encryption and for masking, and 32 fresh random bytes
  // for the neighbour-graph seed (graph.h).
  StatusOr<AdvertiseKeys> Start();
  // Stage 1: checks the directory (in malicious mode every entry's signature) and the
  // coordinator's revealed graph seed against the plan's commitment (PermissionDenied),
  // builds the neighbour graph, draws the self-mask seed, shares it and the mask key among
  // the neighbours, and encrypts each pair of shares to its holder.
  StatusOr<ShareKeys> OnKeyDirectory(const KeyDirectory& directory);
  // Stage 2: decrypts the shares held for neighbours; fixes the set of masking peers.
  Status OnShareDelivery(const ShareDelivery& delivery);
  // Stage 2 (cont.): masks elements [offset, offset + values.size()) of the encoded input.
  // Chunks must come in order and cover 0..vector_length exactly. `values` is masked in
  // place and moved into the message.
  StatusOr<MaskedInputChunk> MaskChunk(uint64_t offset, RingVector values);
  // Threads MaskChunk may use (ApplyMaskStreams); 1 until set. The result does not depend on it.
  void set_mask_threads(int threads) { mask_threads_ = threads; }
  // Stage 2, masking done elsewhere (a GPU): the ChaCha20 streams MaskChunk applies to every
  // element (the self mask, then one per masking peer with the pair's sign), to be applied
  // there with the same result. The keys stay valid until the last chunk is taken, when the
  // session wipes them with its other masking secrets. FailedPrecondition outside stage 2.
  StatusOr<std::vector<MaskStream>> MaskStreams() const;
  // MaskChunk for words already masked with MaskStreams(): the same checks, the same message.
  StatusOr<MaskedInputChunk> TakeMaskedChunk(uint64_t offset, RingVector masked);
  // Stage 3 (malicious mode): signs the survivor set it was shown.
  StatusOr<ConsistencySignature> OnSurvivorList(const SurvivorList& list);
  // Stage 4: reveals, per neighbour, the self-mask-seed share when it survived or the mask-key
  // share when it dropped; never both, and only once. In malicious mode only for the survivor
  // list it signed, with at least t valid signatures over it from its own neighbours.
  StatusOr<UnmaskResponse> OnUnmaskRequest(const UnmaskRequest& request);

  Stage stage() const { return stage_; }
  SiteId self() const { return self_; }
  // Valid from OnKeyDirectory on.
  const Sha256Digest& session_id() const { return session_id_; }
  // The neighbours this site masked with (those whose shares it holds).
  std::vector<SiteId> masking_peers() const;

 private:
  struct Secrets;
  ClientSession(const SecAggParams& params, SiteId self, const Ed25519PrivateKey* signing_key);
  Status Expect(Stage stage, uint64_t round, const char* message);
  Status Abort(Status status);
  Status BuildShares(const KeyDirectory& directory, ShareKeys* out);
  Status CheckUnmaskRequest(const UnmaskRequest& request);
  // PermissionDenied naming the first survivor that is not in the key directory or, being a
  // neighbour of this site, never gave it shares: its input cannot be in the sum, and
  // counting it would let a sum of fewer sites pass the plan's minimum. REQUIRES: secrets_.
  Status CheckSurvivorsTookPart(const std::vector<SiteId>& survivors) const;
  Status CheckChunk(uint64_t offset, const RingVector& values);
  MaskedInputChunk EmitChunk(uint64_t offset, RingVector masked);

  SecAggParams params_;
  SiteId self_;
  const Ed25519PrivateKey* signing_key_;
  Stage stage_ = Stage::kNew;
  Status abort_status_;
  std::array<uint8_t, 32> graph_contribution_{};
  std::vector<SiteId> advertised_;                  // the directory's sites, from OnKeyDirectory on
  std::vector<SiteId> neighbours_;                  // from OnKeyDirectory on
  std::map<SiteId, AdvertiseKeys> neighbour_keys_;  // neighbours that advertised
  Sha256Digest session_id_{};
  std::vector<SiteId> signed_survivors_;
  uint64_t next_offset_ = 0;
  int mask_threads_ = 1;
  std::unique_ptr<Secrets> secrets_;
};

}  // namespace hansa
