// The coordinator's side of one SecAgg+ round: collects the sites' messages stage by stage,
// folds masked chunks into a running sum as they arrive (memory O(vector_length), not
// O(sites x vector_length)), and at the end reconstructs only the secrets it needs and
// expands only the mask streams it must remove. It does no I/O and starts no threads.
//
// Ownership and threads: one ServerSession per round, owned by the round engine; not
// thread-safe (call it under the engine's lock). The caller closes each stage (On* for each
// message received before the stage's deadline, then Close*); sites that sent nothing by then
// count as dropped.
//
// Errors: a bad message returns InvalidArgument/PermissionDenied and is ignored (the session
// continues; the sender is treated as a dropout). A Close* or Finish that cannot proceed
// returns FailedPrecondition ("... the round must be retried") and the session is aborted.
// The transport must check that `sender` fields match the authenticated peer (mTLS).
//
// A site that stops in the middle of its masked upload (some chunks folded, not all) must be
// withdrawn by the caller, who replays the folded chunks (newest first) to
// WithdrawMaskedChunk; ring arithmetic makes the removal exact. A partial upload left in the
// sum makes CloseMaskedInput abort the round.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/crypto/sha256.h"
#include "common/secagg/graph.h"
#include "common/secagg/messages.h"

namespace hansa {

struct SecAggResult {
  RingVector sum;                 // exact ring sum of the survivors' encoded inputs
  std::vector<SiteId> survivors;  // whose inputs are in the sum
};

// Who took part in each stage, for the coordinator's records.
struct SecAggParticipants {
  std::vector<SiteId> advertised, shared, masked, signed_consistency, unmasked;
};

// Applies each stream, from element 0, to the whole of `sum` with the CPU PRG, on all of the
// machine's cores (MaskThreads): what ServerSession::Finish() removes the masks with.
Status ApplyMasksOnCpu(const std::vector<MaskStream>& streams, RingVector* sum);

class ServerSession {
 public:
  // Draws the coordinator's secret share of the neighbour-graph seed (graph.h); whatever
  // params.graph_seed_commitment held is replaced by the commitment to it.
  static StatusOr<std::unique_ptr<ServerSession>> Create(const SecAggParams& params);
  ~ServerSession();

  // The resolved parameters, with the commitment the plan must carry to the sites.
  const SecAggParams& params() const { return params_; }

  Status OnAdvertiseKeys(const AdvertiseKeys& m);
  // The directory reveals the coordinator's graph seed; the graph is fixed from here on.
  StatusOr<KeyDirectory> CloseAdvertiseKeys();

  Status OnShareKeys(const ShareKeys& m);
  // One delivery per site that shared keys.
  StatusOr<std::vector<ShareDelivery>> CloseShareKeys();

  Status OnMaskedInputChunk(const MaskedInputChunk& m);
  // Subtracts a chunk folded before; it must be the last one still folded for its sender.
  Status WithdrawMaskedChunk(const MaskedInputChunk& m);
  // The survivor list: sent to survivors as the consistency check (malicious mode); in
  // either mode StartUnmask follows.
  StatusOr<SurvivorList> CloseMaskedInput();

  // Malicious mode only.
  Status OnConsistencySignature(const ConsistencySignature& m);

  // Closes the consistency check (malicious mode) and returns the request for the survivors.
  // In malicious mode a site reveals only with t signatures from its own neighbours, so the
  // round is aborted here (nothing revealed yet) unless enough sites can answer to rebuild
  // every secret the sum needs.
  StatusOr<UnmaskRequest> StartUnmask();
  Status OnUnmaskResponse(const UnmaskResponse& m);
  // Removes the masks; the result is the exact ring sum of the survivors' inputs.
  StatusOr<SecAggResult> Finish();
  // The same, with the masks (ChaCha20 streams from element 0 over the whole sum) removed by
  // `apply` instead of the CPU PRG, e.g. on a GPU (cuda/masked_upload.h). `apply` must leave
  // exactly what the CPU would; its failure fails the round.
  using MaskApplier = std::function<Status(const std::vector<MaskStream>& streams, RingVector*)>;
  StatusOr<SecAggResult> Finish(const MaskApplier& apply);

  const SecAggParticipants& participants() const { return participants_; }

 private:
  enum class Stage { kAdvertise, kShare, kMask, kConsistency, kUnmask, kDone, kAborted };
  struct Site;
  ServerSession(const SecAggParams& params, const GraphSeed& graph_seed);
  Status ExpectStage(Stage stage, const char* what);
  Status Expect(Stage stage, uint64_t round, SiteId sender, const char* what);
  Status Fail(Status status);
  Status FoldMaskedChunk(const MaskedInputChunk& m, bool withdraw);
  // The keys and signs of the streams that remove the survivors' self masks and the dropped
  // sites' pairwise masks: reconstructed from the shares (FailedPrecondition below the
  // threshold, DataLoss for a mask key that does not match its advertisement).
  Status AddSelfMaskKeys(std::vector<std::pair<SecretBytes, MaskOp>>* keys);
  Status AddDroppedPairKeys(std::vector<std::pair<SecretBytes, MaskOp>>* keys);
  // Malicious mode: OK when every survivor's self-mask seed and every needed mask key of a
  // dropped site has t holders that will answer (signers with t signing neighbours).
  Status CheckSignersCanUnmask() const;

  SecAggParams params_;
  GraphSeed graph_seed_;  // secret until CloseAdvertiseKeys reveals it
  NeighbourGraph graph_;  // from CloseAdvertiseKeys on
  Stage stage_ = Stage::kAdvertise;
  Status abort_status_;
  std::map<SiteId, Site> sites_;
  KeyDirectory directory_;
  Sha256Digest session_id_{};
  RingVector sum_;
  std::vector<SiteId> survivors_;
  std::vector<SiteId> dropped_after_sharing_;
  UnmaskRequest request_;
  SecAggParticipants participants_;
};

}  // namespace hansa
