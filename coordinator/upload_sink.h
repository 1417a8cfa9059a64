// Uploads at the coordinator: one update streaming in (UploadSink), where its bytes go
// (UpdateFolder: the plaintext weighted sum, or the secure-aggregation session), the checks on
// what its header announces, and the uploads of the open attempt (RoundUploads).
//
// Threads and locks: a sink belongs to the transport thread receiving it and has its own mutex.
// RoundUploads is guarded by the round engine's mutex (every method REQUIRES it held), as
// leveldb's VersionSet is by its DB's. Lock order: engine -> UploadSink -> SecAgg session
// (SecureRound); a folder runs under its sink's lock and may take the session's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/crypto/sha256.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/aggregator.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// Where an upload's bytes go: a plaintext update into the weighted sum, or masked chunks into
// the secure-aggregation session. Owned by one UploadSink, called under its lock.
class UpdateFolder {
 public:
  virtual ~UpdateFolder() = default;
  // One wire chunk.
  virtual Status Fold(std::string_view bytes) = 0;
  // One wire chunk of `bytes` bytes that arrived as `pieces` (views into gRPC's slices). This
  // default joins them for Fold; a folder that takes a stream cut anywhere feeds them as they are.
  virtual Status FoldPieces(const std::vector<std::string_view>& pieces, uint64_t bytes);
  // OK when every value arrived.
  virtual Status Complete() = 0;
  virtual Status Commit() = 0;
  // Removes everything folded so far (idempotent).
  virtual void Abort() = 0;
};

// A plaintext update: a safetensors delta in the layout `expected`, folded into `contribution`
// as it streams. `clip_norm` > 0: its L2 norm must not exceed it (client-level privacy).
std::unique_ptr<UpdateFolder> MakePlaintextFolder(
    std::unique_ptr<StreamingAggregator::Contribution> contribution, const ModelLayout& expected,
    double clip_norm);

// What the open plan lets an upload's header announce.
struct UploadLimits {
  bool secure = false;
  uint64_t vector_length = 0;  // secure: ring words in the masked vector
  uint64_t model_bytes = 0;    // the global model's payload
  int64_t max_examples = 0;    // plaintext: a site's example count at most
};
// InvalidArgument for an example count that travels in the clear under secure aggregation, or
// is zero or over the cap in plaintext; a size of zero or beyond the update's; no valid SHA-256.
Status CheckUploadHeader(const v1::TransferHeader& header, const UploadLimits& limits);

class UploadSink;

// The round's side of its uploads, called by a sink from its transport thread without any lock.
class UploadOwner {
 public:
  virtual ~UploadOwner() = default;
  // Makes a finished upload part of the round (RoundUploads::Commit under the owner's lock).
  virtual Status CommitUpload(UploadSink* sink, uint64_t bytes) = 0;
  // The sink is going away without having been committed (a committed sink left the round's
  // list at its commit).
  virtual void Unregister(UploadSink* sink) = 0;
};

// One upload in progress, owned by the transport thread receiving it. Destroying it without a
// successful Finish() removes everything it folded into the round's sum.
class UploadSink {
 public:
  ~UploadSink();
  // `offset` must equal the number of bytes written so far; `data` at most max_chunk_bytes.
  Status Write(uint64_t offset, std::string_view data);
  // The same for one chunk that arrived as `pieces`, hashed and folded where they lie
  // (chunk_wire.h's ParseChunk).
  Status Write(uint64_t offset, const std::vector<std::string_view>& pieces);
  // Checks size and SHA-256, then makes the update part of the round.
  StatusOr<v1::UploadReply> Finish();

  const std::string& site() const { return site_; }
  int64_t round() const { return round_; }
  int64_t attempt() const { return attempt_; }
  const v1::TransferHeader& header() const { return header_; }

 private:
  friend class RoundUploads;
  UploadSink(UploadOwner* owner, std::string site, int64_t round, int64_t attempt,
             v1::TransferHeader header, uint32_t max_chunk_bytes,
             std::unique_ptr<UpdateFolder> folder);
  // The round closed under this upload (RoundUploads::CancelAll).
  void Cancel(const std::string& why);

  UploadOwner* const owner_;
  const std::string site_;
  const int64_t round_;
  const int64_t attempt_;
  const v1::TransferHeader header_;
  const uint32_t max_chunk_bytes_;
  absl::Mutex mu_;
  std::unique_ptr<UpdateFolder> folder_ ABSL_GUARDED_BY(mu_);
  Sha256Hasher hasher_ ABSL_GUARDED_BY(mu_);
  uint64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  Status cancelled_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // On the round's list of sinks; a commit takes it off.
  bool registered_ ABSL_GUARDED_BY(mu_) = true;
};

// The uploads of the open attempt: sinks in progress and the updates committed, by site.
// REQUIRES: the round engine's mutex held for every call.
class RoundUploads {
 public:
  bool Committed(const std::string& site) const { return committed_.count(site) > 0; }
  // True while `site` has an unfinished sink for `attempt`.
  bool InProgress(const std::string& site, int64_t attempt) const;
  // A new sink feeding `folder`, registered until it is destroyed.
  std::unique_ptr<UploadSink> Open(UploadOwner* owner, const std::string& site, int64_t round,
                                   int64_t attempt, const v1::TransferHeader& header,
                                   uint32_t max_chunk_bytes, std::unique_ptr<UpdateFolder> folder);
  // Commits `sink`'s update (taking its lock): the sink's cancellation; DeadlineExceeded when
  // `open_attempt` is not the sink's (or its training stage closed: `open` false); AlreadyExists
  // for a site that committed already; else `record` (nothing committed when it fails), then
  // the folder's Commit, and the sink leaves the list of sinks in progress.
  Status Commit(UploadSink* sink, bool open, int64_t open_attempt,
                const std::function<Status(const UploadSink&)>& record);
  void Unregister(UploadSink* sink) { sinks_.erase(sink); }
  // Cancels every sink in progress (the stage closed under them).
  void CancelAll(const std::string& why);
  // A new attempt: forgets the committed updates.
  void ClearCommitted() { committed_.clear(); }
  const std::map<std::string, v1::TransferHeader>& committed() const { return committed_; }

 private:
  std::set<UploadSink*> sinks_;
  std::map<std::string, v1::TransferHeader> committed_;
};

}  // namespace hansa
