// The one place where a site cuts its uploads into chunks and checks the chunks of a
// download, whichever link carries them (site_link.h).
//
// Threading: a ModelReceiver belongs to one download on one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/sha256.h"
#include "common/fileio/shared_bytes.h"
#include "common/status/status.h"
#include "common/tensor/safetensors.h"
#include "common/tensor/tensor.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// The default wire chunk when a plan names none.
inline constexpr uint32_t kDefaultChunkBytes = 1 << 20;

// `payload` as views of at most min(plan_chunk_bytes or 1 MiB, max_chunk_bytes) bytes each,
// in order (none for an empty payload). The views point into `payload`.
std::vector<std::string_view> CutChunks(std::string_view payload, uint32_t plan_chunk_bytes,
                                        uint32_t max_chunk_bytes);
// Views of `chunks`, for Upload.
std::vector<std::string_view> ViewsOf(const std::vector<std::string>& chunks);

// Receives the global model a plan names, chunk by chunk, checking as it goes, and decodes it
// as it arrives: each chunk's values are written once, where the model keeps them, so a site
// never holds the encoded payload and the model side by side. The model is handed out only
// once the whole payload has matched the plan's digest.
class ModelReceiver {
 public:
  // `max_chunk_bytes`: the largest chunk the link allows; `max_model_bytes`: the site's limit.
  ModelReceiver(const v1::RoundPlan& plan, uint32_t max_chunk_bytes, uint64_t max_model_bytes);
  // The download's header: DataLoss when its size or digest is not the plan's, InvalidArgument
  // when the size is over max_model_bytes (nothing is reserved then).
  Status Header(const v1::TransferHeader& header);
  // The next chunk: DataLoss when it is over max_chunk_bytes, not at the next offset, or past
  // the declared size. REQUIRES: Header() was OK.
  Status Chunk(uint64_t offset, std::string_view data);
  // The same for a chunk that arrived as `pieces` (chunk_wire.h's ParseChunk): checked whole,
  // then hashed and decoded where they lie.
  Status Chunk(uint64_t offset, const std::vector<std::string_view>& pieces);
  // The global model: DataLoss when the payload ended short or its SHA-256 is not the plan's;
  // then (the payload being the one the plan names) InvalidArgument when it is not a
  // safetensors file of F32 tensors whose values are all finite.
  StatusOr<Model> Finish();
  // A payload that arrived whole (in process): the same checks as Header, chunks and Finish.
  // A mapped payload's pages go back to its file as they are decoded.
  StatusOr<Model> Whole(const SharedBytes& payload);

 private:
  const v1::RoundPlan& plan_;
  const uint32_t max_chunk_bytes_;
  const uint64_t max_model_bytes_;
  uint64_t total_ = 0;
  uint64_t received_ = 0;
  Sha256Hasher hasher_;
  std::optional<SafetensorsModelDecoder> decoder_;
  // The first decoding error: reported after the digest, so that bytes damaged on the way are
  // DataLoss whichever byte was hit; nothing more is decoded after it.
  Status decoded_;
};

}  // namespace hansa
