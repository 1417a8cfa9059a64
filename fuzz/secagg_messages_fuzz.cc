// The SecAgg+ messages' binary decoders (common/secagg/messages.h), which read what peers and
// the coordinator send: each input is tried as every message; an accepted one re-encodes to
// the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/secagg/messages.h"

namespace {

template <typename Message>
void Try(std::string_view bytes) {
  auto m = Message::Parse(bytes);
  if (!m.ok()) return;
  if (m->Serialize() != bytes) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Try<hansa::AdvertiseKeys>(bytes);
  Try<hansa::KeyDirectory>(bytes);
  Try<hansa::ShareKeys>(bytes);
  Try<hansa::ShareDelivery>(bytes);
  Try<hansa::MaskedInputChunk>(bytes);
  Try<hansa::SurvivorList>(bytes);
  Try<hansa::ConsistencySignature>(bytes);
  Try<hansa::UnmaskRequest>(bytes);
  Try<hansa::UnmaskResponse>(bytes);
  return 0;
}
