#include "coordinator/upload_sink.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/tensor/safetensors.h"

namespace hansa {
// ---------------------------------------------------------------------------------------------
// UploadSink

UploadSink::UploadSink(UploadOwner* owner, std::string site, int64_t round, int64_t attempt,
                       v1::TransferHeader header, uint32_t max_chunk_bytes,
                       std::unique_ptr<UpdateFolder> folder)
    : owner_(owner),
      site_(std::move(site)),
      round_(round),
      attempt_(attempt),
      header_(std::move(header)),
      max_chunk_bytes_(max_chunk_bytes),
      folder_(std::move(folder)) {}

UploadSink::~UploadSink() {
  bool registered;
  {
    absl::MutexLock lock(&mu_);
    registered = registered_;
  }
  // A committed sink goes away without the owner's lock, which the round's server step may
  // hold for seconds: the site's reply does not wait for it.
  if (registered) owner_->Unregister(this);
  absl::MutexLock lock(&mu_);
  if (folder_) folder_->Abort();
}

void UploadSink::Cancel(const std::string& why) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  if (folder_) folder_->Abort();
  folder_.reset();
  cancelled_ = absl::DeadlineExceededError(why);
}

Status UpdateFolder::FoldPieces(const std::vector<std::string_view>& pieces, uint64_t bytes) {
  if (pieces.size() == 1) return Fold(pieces[0]);
  std::string joined;
  joined.reserve(bytes);
  for (std::string_view piece : pieces) joined.append(piece);
  return Fold(joined);
}

Status UploadSink::Write(uint64_t offset, std::string_view data) {
  return Write(offset, std::vector<std::string_view>{data});
}

Status UploadSink::Write(uint64_t offset, const std::vector<std::string_view>& pieces) {
  uint64_t bytes = 0;
  for (std::string_view piece : pieces) bytes += piece.size();
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(cancelled_);
  if (finished_) return absl::FailedPreconditionError("upload already finished");
  if (bytes > max_chunk_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk of ", bytes, " bytes exceeds the cap of ", max_chunk_bytes_));
  }
  if (offset != received_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk at offset ", offset, " but ", received_, " bytes arrived so far"));
  }
  if (bytes > header_.total_bytes() - received_) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload is longer than the announced ", header_.total_bytes(), " bytes"));
  }
  for (std::string_view piece : pieces) hasher_.Update(piece);
  received_ += bytes;
  return Annotate(folder_->FoldPieces(pieces, bytes), absl::StrCat("update from ", site_));
}

StatusOr<v1::UploadReply> UploadSink::Finish() {
  uint64_t bytes;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(cancelled_);
    if (received_ != header_.total_bytes()) {
      return absl::DataLossError(absl::StrCat("upload from ", site_, " ended after ", received_,
                                              " of ", header_.total_bytes(),
                                              " bytes (truncated stream)"));
    }
    RETURN_IF_ERROR(Annotate(folder_->Complete(), absl::StrCat("update from ", site_)));
    std::string digest = ToHex(hasher_.Finish());
    if (digest != header_.sha256()) {
      return absl::DataLossError(absl::StrCat("update from ", site_, " has SHA-256 ", digest,
                                              " but its header announced ", header_.sha256(),
                                              "; the payload was corrupted in transit"));
    }
    bytes = received_;
  }
  RETURN_IF_ERROR(owner_->CommitUpload(this, bytes));
  v1::UploadReply reply;
  reply.set_bytes(bytes);
  reply.set_sha256(header_.sha256());
  return reply;
}

// ---------------------------------------------------------------------------------------------
// RoundUploads

bool RoundUploads::InProgress(const std::string& site, int64_t attempt) const {
  // Finished sinks are committed already, and refused as such before this is asked.
  for (const UploadSink* open : sinks_) {
    if (open->site_ == site && open->attempt_ == attempt) return true;
  }
  return false;
}

std::unique_ptr<UploadSink> RoundUploads::Open(UploadOwner* owner, const std::string& site,
                                               int64_t round, int64_t attempt,
                                               const v1::TransferHeader& header,
                                               uint32_t max_chunk_bytes,
                                               std::unique_ptr<UpdateFolder> folder) {
  std::unique_ptr<UploadSink> sink(
      new UploadSink(owner, site, round, attempt, header, max_chunk_bytes, std::move(folder)));
  sinks_.insert(sink.get());
  return sink;
}

Status RoundUploads::Commit(UploadSink* sink, bool open, int64_t open_attempt,
                            const std::function<Status(const UploadSink&)>& record) {
  absl::MutexLock sink_lock(&sink->mu_);
  RETURN_IF_ERROR(sink->cancelled_);
  if (!open || open_attempt != sink->attempt_ || !sink->folder_) {
    return absl::DeadlineExceededError(
        absl::StrCat("round ", sink->round_, " closed before the upload finished"));
  }
  if (committed_.count(sink->site_)) {  // the sink's destructor withdraws what it folded
    return absl::AlreadyExistsError(absl::StrCat(
        "site '", sink->site_, "' already committed its update for round ", sink->round_));
  }
  RETURN_IF_ERROR(record(*sink));
  RETURN_IF_ERROR(sink->folder_->Commit());
  sink->folder_.reset();
  sink->finished_ = true;
  sink->registered_ = false;
  sinks_.erase(sink);
  committed_[sink->site_] = sink->header_;
  return absl::OkStatus();
}

void RoundUploads::CancelAll(const std::string& why) {
  for (UploadSink* sink : sinks_) sink->Cancel(why);
}

// ---------------------------------------------------------------------------------------------
// Header checks and the plaintext folder

Status CheckUploadHeader(const v1::TransferHeader& header, const UploadLimits& limits) {
  if (limits.secure) {
    // The weight travels inside the masked vector; a count in the clear would reveal it.
    if (header.num_examples() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "masked update header claims ", header.num_examples(),
          " examples; in secure aggregation a site's count must not travel in the clear"));
    }
  } else if (header.num_examples() == 0 ||
             header.num_examples() > static_cast<uint64_t>(limits.max_examples)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update header claims ", header.num_examples(), " examples"));
  }
  // A masked upload carries ring words (up to 8 bytes) and a small header per chunk.
  const uint64_t max_bytes = limits.secure ? limits.vector_length * 8 + (uint64_t{1} << 20)
                                           : limits.model_bytes + (64 << 10);
  if (header.total_bytes() == 0 || header.total_bytes() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("update of ", header.total_bytes(),
                                                   " bytes announced; the global model is ",
                                                   limits.model_bytes, " bytes"));
  }
  if (!Sha256FromHex(header.sha256()).ok()) {
    return absl::InvalidArgumentError("update header has no valid SHA-256");
  }
  return absl::OkStatus();
}

namespace {

class PlaintextFolder : public UpdateFolder {
 public:
  PlaintextFolder(std::unique_ptr<StreamingAggregator::Contribution> contribution,
                  const ModelLayout& expected, double clip_norm)
      : contribution_(std::move(contribution)), clip_norm_(clip_norm) {
    StreamingAggregator::Contribution* c = contribution_.get();
    double* squares = &squares_;
    std::vector<float>* aligned = &aligned_;
    decoder_ = std::make_unique<SafetensorsStreamDecoder>(
        [expected](const ModelLayout& layout, const TensorMetadata&) {
          return Annotate(layout.CheckSameAs(expected),
                          "update does not match the global model's tensors");
        },
        [c, squares, aligned](int64_t first, const uint8_t* bytes, size_t count) {
          // A chunk that ends inside a value leaves the next chunk's values at an offset that
          // is not a multiple of 4 (a site may cut its stream anywhere): copy those.
          const float* values = reinterpret_cast<const float*>(bytes);
          if (reinterpret_cast<uintptr_t>(bytes) % alignof(float) != 0) {
            aligned->resize(count);
            std::memcpy(aligned->data(), bytes, count * sizeof(float));
            values = aligned->data();
          }
          for (size_t i = 0; i < count; ++i) *squares += double{values[i]} * values[i];
          return c->Fold(first, values, count);
        },
        SafetensorsLimits{.max_header_bytes = kMaxTransferHeaderBytes,
                          .max_tensors = expected.size(),
                          .max_data_bytes = static_cast<uint64_t>(expected.TotalElements()) * 4});
  }
  Status Fold(std::string_view bytes) override { return decoder_->Feed(bytes); }
  // The safetensors stream may be cut anywhere: no need to join the pieces.
  Status FoldPieces(const std::vector<std::string_view>& pieces, uint64_t) override {
    for (std::string_view piece : pieces) RETURN_IF_ERROR(decoder_->Feed(piece));
    return absl::OkStatus();
  }
  Status Complete() override {
    RETURN_IF_ERROR(decoder_->Finish());
    const double norm = std::sqrt(squares_);
    if (clip_norm_ > 0 && norm > clip_norm_ * (1 + 1e-5)) {
      return absl::InvalidArgumentError(
          absl::StrCat("update has L2 norm ", norm, " but the plan clips updates to ", clip_norm_,
                       " (client-level privacy); clip before uploading"));
    }
    return absl::OkStatus();
  }
  Status Commit() override { return contribution_->Commit(); }
  void Abort() override { contribution_->Abort(); }

 private:
  std::unique_ptr<StreamingAggregator::Contribution> contribution_;
  std::unique_ptr<SafetensorsStreamDecoder> decoder_;
  const double clip_norm_;
  double squares_ = 0;
  std::vector<float> aligned_;  // values of a chunk that arrived at an unaligned offset
};

}  // namespace

std::unique_ptr<UpdateFolder> MakePlaintextFolder(
    std::unique_ptr<StreamingAggregator::Contribution> contribution, const ModelLayout& expected,
    double clip_norm) {
  return std::make_unique<PlaintextFolder>(std::move(contribution), expected, clip_norm);
}

}  // namespace hansa
