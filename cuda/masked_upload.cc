#include "cuda/masked_upload.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "cuda/device.h"
#include "cuda/mask_kernels.h"

namespace hansa {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <typename W>
std::vector<W>& WordsOf(RingVector& v);
template <>
std::vector<uint32_t>& WordsOf<uint32_t>(RingVector& v) {
  return v.w32;
}
template <>
std::vector<uint64_t>& WordsOf<uint64_t>(RingVector& v) {
  return v.w64;
}

template <typename W>
StatusOr<std::vector<std::string>> MaskOnDevice(ClientSession& session,
                                                const EncodingParams& params, RingWidth ring,
                                                const SecretBytes& rounding_seed,
                                                const float* device_values, size_t n, double weight,
                                                size_t values_per_chunk, DeviceMaskStats* stats) {
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(CudaStream stream, CudaStream::Create());
  const size_t total = Encoder::EncodedSize(n);
  ASSIGN_OR_RETURN(DeviceBuffer<W> words, DeviceBuffer<W>::Allocate(total));
  ASSIGN_OR_RETURN(stats->update_norm, L2Norm(device_values, n, stream));
  if (!std::isfinite(stats->update_norm)) {
    return absl::InvalidArgumentError(absl::StrCat("the update holds NaN or infinity (L2 norm ",
                                                   stats->update_norm, "); training diverged"));
  }
  // The values, then the weight element from the next rounding word, as Encoder::Encode.
  const QuantizeParams quantize{params.clip, params.bits, weight, &rounding_seed, 0};
  RETURN_IF_ERROR(Quantize(device_values, n, quantize, words.data(), stream));
  ASSIGN_OR_RETURN(Encoder encoder, Encoder::CreateWithSeed(params, rounding_seed));
  encoder.SkipValues(n);
  ASSIGN_OR_RETURN(uint64_t weight_element, encoder.EncodeWeight(weight));
  const W weight_word = static_cast<W>(weight_element);
  RETURN_IF_ERROR(words.CopyFromHost(&weight_word, 1, stream, n));
  RETURN_IF_ERROR(stream.Synchronize());
  stats->quantize = SecondsSince(start);

  // Two pinned slots: chunk i is copied into slot i % 2, and chunk i + 2 is queued into that
  // slot only once the host has taken chunk i out of it.
  ASSIGN_OR_RETURN(std::vector<MaskStream> streams, session.MaskStreams());
  const size_t chunks = (total + values_per_chunk - 1) / values_per_chunk;
  const size_t slot_size = std::min(values_per_chunk, total);
  PinnedHostBuffer<W> slots[2];
  CudaEvent copied[2];
  for (int s = 0; s < 2; ++s) {
    ASSIGN_OR_RETURN(slots[s], PinnedHostBuffer<W>::Allocate(slot_size));
    ASSIGN_OR_RETURN(copied[s], CudaEvent::Create());
  }
  auto range = [&](size_t i) {
    const size_t offset = i * values_per_chunk;
    return std::make_pair(offset, std::min(values_per_chunk, total - offset));
  };
  auto enqueue = [&](size_t i) -> Status {
    const auto [offset, count] = range(i);
    RETURN_IF_ERROR(ApplyMasks(streams, offset, words.data() + offset, count, stream));
    RETURN_IF_ERROR(words.CopyToHost(slots[i % 2].data(), count, stream, offset));
    return copied[i % 2].Record(stream);
  };
  for (size_t i = 0; i < std::min<size_t>(2, chunks); ++i) RETURN_IF_ERROR(enqueue(i));

  std::vector<std::string> out;
  out.reserve(chunks);
  for (size_t i = 0; i < chunks; ++i) {
    const Clock::time_point waiting = Clock::now();
    RETURN_IF_ERROR(copied[i % 2].Synchronize());
    stats->wait += SecondsSince(waiting);
    const Clock::time_point host = Clock::now();
    const auto [offset, count] = range(i);
    RingVector part = RingVector::Zeros(ring, count);
    std::memcpy(WordsOf<W>(part).data(), slots[i % 2].data(), count * sizeof(W));
    // Queued before the chunk is taken: the last take wipes the session's keys.
    if (i + 2 < chunks) RETURN_IF_ERROR(enqueue(i + 2));
    ASSIGN_OR_RETURN(MaskedInputChunk masked, session.TakeMaskedChunk(offset, std::move(part)));
    out.push_back(masked.Serialize());
    stats->serialize += SecondsSince(host);
  }
  stats->total = SecondsSince(start);
  return out;
}

template <typename W>
Status ApplyOnDevice(const std::vector<MaskStream>& streams, std::vector<W>& words) {
  ASSIGN_OR_RETURN(CudaStream stream, CudaStream::Create());
  ASSIGN_OR_RETURN(DeviceBuffer<W> device, DeviceBuffer<W>::Allocate(words.size()));
  RETURN_IF_ERROR(device.CopyFromHost(words.data(), words.size(), stream));
  RETURN_IF_ERROR(ApplyMasks(streams, 0, device.data(), words.size(), stream));
  RETURN_IF_ERROR(device.CopyToHost(words.data(), words.size(), stream));
  return stream.Synchronize();
}

}  // namespace

Status ApplyMasksOnDevice(const std::vector<MaskStream>& streams, RingVector* sum) {
  if (!CudaDeviceAvailable()) {
    return absl::UnavailableError("no CUDA device: the masks are removed on the CPU");
  }
  if (sum->width == RingWidth::k32) return ApplyOnDevice(streams, sum->w32);
  return ApplyOnDevice(streams, sum->w64);
}

StatusOr<std::vector<std::string>> MaskUpdateOnDevice(ClientSession& session,
                                                      const EncodingParams& params,
                                                      const SecretBytes& rounding_seed,
                                                      const float* device_values, size_t n,
                                                      double weight, size_t values_per_chunk,
                                                      DeviceMaskStats* stats) {
  if (!CudaDeviceAvailable()) {
    return absl::UnavailableError("no CUDA device: the update is masked on the CPU");
  }
  if (values_per_chunk == 0) return absl::InvalidArgumentError("chunks of 0 values");
  if (device_values == nullptr && n > 0) return absl::InvalidArgumentError("no update values");
  ASSIGN_OR_RETURN(RingWidth ring, ChooseRing(params));
  DeviceMaskStats ignored;
  DeviceMaskStats* t = stats != nullptr ? stats : &ignored;
  *t = DeviceMaskStats{};
  if (ring == RingWidth::k32) {
    return MaskOnDevice<uint32_t>(session, params, ring, rounding_seed, device_values, n, weight,
                                  values_per_chunk, t);
  }
  return MaskOnDevice<uint64_t>(session, params, ring, rounding_seed, device_values, n, weight,
                                values_per_chunk, t);
}

}  // namespace hansa
