// Secure aggregation's bulk work on the GPU. A site's masked input made on the GPU, for an update
// that is already in device memory (a site training on CUDA): quantized into the ring there
// (Quantize), masked there with the secure-aggregation session's mask streams (ApplyMasks), and
// only the masked words come to the host, chunk by chunk, through two pinned buffers, so that the
// device masks and copies chunk i+1 while the host serializes chunk i. The update itself never
// reaches host memory.
//
// The chunks are those of MaskUpdate (common/secagg/masked_upload.h) for an Encoder with the
// same rounding seed, bit for bit: what goes on the wire does not depend on the path.
//
// Without CUDA, or without a device, it returns Unavailable before touching the session, so
// the caller can take the CPU path instead.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/crypto/secret.h"
#include "common/secagg/client.h"
#include "common/secagg/encoding.h"
#include "common/status/status.h"

namespace hansa {

// What MaskUpdateOnDevice measured: the update's L2 norm, and where the time went, in seconds
// (wall clock on the host).
struct DeviceMaskStats {
  double update_norm = 0;
  double quantize = 0;   // norm, quantization and weight element, until the device is done
  double wait = 0;       // waiting for the device to mask and copy chunks
  double serialize = 0;  // host: wrapping the copied words into wire chunks
  double total = 0;
};

// The serialized chunks of the masked input for `device_values` (n floats in device memory on
// the calling thread's current device) with `weight` in [0, 1], at most `values_per_chunk`
// ring elements each. `session` must be in its masking stage with the ring that `params`
// chooses; `rounding_seed` (32 bytes) seeds the stochastic rounding, as
// Encoder::CreateWithSeed. InvalidArgument for an update holding NaN or infinity (which the
// CPU path refuses too), bad parameters or a session that does not fit; Unavailable without a
// device;
// Internal, naming the CUDA call, when the device fails (after the first chunk was taken the
// session cannot finish this round's input). `stats`, when given, receives the measurements.
StatusOr<std::vector<std::string>> MaskUpdateOnDevice(ClientSession& session,
                                                      const EncodingParams& params,
                                                      const SecretBytes& rounding_seed,
                                                      const float* device_values, size_t n,
                                                      double weight, size_t values_per_chunk,
                                                      DeviceMaskStats* stats = nullptr);

// The coordinator's side: subtracts (or adds) `streams`, from element 0, from `sum` on the
// GPU: one copy to the device, up to 16 streams expanded per pass over the data, one copy back
// (ServerSession::Finish's MaskApplier). The result equals the CPU PRG's bit for bit.
// Unavailable without a device (`sum` untouched); Internal naming the CUDA call on failure.
Status ApplyMasksOnDevice(const std::vector<MaskStream>& streams, RingVector* sum);

}  // namespace hansa
