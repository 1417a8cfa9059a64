// Streamed transfers, both ends: the coordinator's upload path (coordinator/upload_sink.h:
// CheckUploadHeader on the header a site announces, an UploadSink folding a plaintext
// safetensors update chunk by chunk into a StreamingAggregator, its end and commit) and the
// site's download path (client/link/chunks.h: ModelReceiver).
//
// Input: flags, piece size, header length L, L bytes of a v1::TransferHeader, the payload.
//   flags bit 0: the header is rewritten to announce the payload as it is (size, SHA-256), so
//                that the stream gets past the digest and into the safetensors decoder;
//   bit 1:       a clip norm of 1 (client-level privacy) on the update;
//   bit 2:       one chunk is sent at a wrong offset;
//   bit 3:       the payload is also downloaded through a ModelReceiver whose plan names it,
//                which decodes what the whole-payload decoder decodes, or nothing.
// The update layout is a 2 x 3 matrix "w" and a 3-vector "b" (float32); spill files go to a
// folder of its own under TMPDIR, removed at exit.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "client/link/chunks.h"
#include "common/crypto/sha256.h"
#include "common/tensor/safetensors.h"
#include "coordinator/aggregator.h"
#include "coordinator/upload_sink.h"
#include "fuzz/scratch_folder.h"
#include "google/protobuf/stubs/logging.h"

namespace {

const std::string& Folder() { return hansa::fuzz::ScratchFolder("hansa-transfer-fuzz"); }

const hansa::ModelLayout& Layout() {
  static const auto* layout =
      new hansa::ModelLayout({{"w", hansa::DType::kF32, {2, 3}}, {"b", hansa::DType::kF32, {3}}});
  return *layout;
}

// The round's side of one upload, as the engine is (without its lock: one thread here).
class Owner : public hansa::UploadOwner {
 public:
  hansa::RoundUploads uploads;
  hansa::Status CommitUpload(hansa::UploadSink* sink, uint64_t) override {
    return uploads.Commit(sink, true, 1, [](const hansa::UploadSink&) { return absl::OkStatus(); });
  }
  void Unregister(hansa::UploadSink* sink) override { uploads.Unregister(sink); }
};

void Upload(const hansa::v1::TransferHeader& header, std::string_view payload, size_t piece,
            uint8_t flags) {
  static auto* aggregator =
      new hansa::StreamingAggregator(Layout().TotalElements(), Folder() + "/spill");
  hansa::UploadLimits limits;
  limits.model_bytes = 1 << 12;
  limits.max_examples = 1000;
  if (!hansa::CheckUploadHeader(header, limits).ok()) return;
  auto contribution = aggregator->Begin("a", static_cast<double>(header.num_examples()));
  if (!contribution.ok()) return;
  Owner owner;
  auto sink = owner.uploads.Open(
      &owner, "a", 1, 1, header, 64,
      hansa::MakePlaintextFolder(*std::move(contribution), Layout(), (flags & 2) ? 1.0 : 0.0));
  uint64_t offset = 0;
  bool skewed = false;
  for (size_t at = 0; at < payload.size(); at += piece) {
    const std::string_view chunk = payload.substr(at, piece);
    const bool skew = (flags & 4) && !skewed && at > 0;
    skewed |= skew;
    if (!sink->Write(skew ? offset + 1 : offset, chunk).ok()) return;
    offset += chunk.size();
  }
  (void)sink->Finish();
}

void Download(const hansa::v1::TransferHeader& header, std::string_view payload, size_t piece) {
  hansa::v1::RoundPlan plan;
  plan.set_round(1);
  plan.set_global_model_bytes(payload.size());
  plan.set_global_model_sha256(hansa::ToHex(hansa::Sha256(payload)));
  hansa::ModelReceiver receiver(plan, 64, 1 << 12);
  if (!receiver.Header(header).ok()) return;
  for (size_t at = 0; at < payload.size(); at += piece) {
    if (!receiver.Chunk(at, payload.substr(at, piece)).ok()) return;
  }
  // What arrived piece by piece decodes as the whole payload does, or not at all.
  auto model = receiver.Finish();
  if (model.ok()) {
    auto whole = hansa::DecodeSafetensors(payload);
    if (!whole.ok() || whole->values.size() != model->values.size() ||
        std::memcmp(whole->values.data(), model->values.data(),
                    model->values.size() * sizeof(float)) != 0) {
      abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {  // fuzzed strings are often not UTF-8; protobuf says so
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  if (size < 3) return 0;
  const uint8_t flags = data[0];
  const size_t piece = 1 + data[1] % 80;  // over the sink's cap of 64 now and then
  const size_t header_bytes = std::min<size_t>(data[2], size - 3);
  hansa::v1::TransferHeader header;
  (void)header.ParseFromArray(data + 3, static_cast<int>(header_bytes));
  const std::string_view payload(reinterpret_cast<const char*>(data + 3 + header_bytes),
                                 size - 3 - header_bytes);
  hansa::UploadLimits secure;
  secure.secure = true;
  secure.vector_length = 10;
  (void)hansa::CheckUploadHeader(header, secure);
  if (flags & 1) {
    header.set_total_bytes(payload.size());
    header.set_sha256(hansa::ToHex(hansa::Sha256(payload)));
  }
  Upload(header, payload, piece, flags);
  if (flags & 8) Download(header, payload, piece);
  return 0;
}
