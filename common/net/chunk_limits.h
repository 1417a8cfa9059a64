// How large a chunk of a model transfer may be, on both ends: header-only, so that the
// coordinator's configuration and the site's plan check share it without gRPC.
#pragma once

#include <cstdint>

namespace hansa {

// The chunk sizes a federation may use (transfer.chunk_bytes and transfer.max_chunk_bytes in
// coordinator.toml, a plan's chunk_bytes, a join's max_chunk_bytes). A site's channel takes
// messages of the largest. Without the smallest, a coordinator could have a site cut its update
// into pieces of a byte each, with a view and a message per byte; at 1 KiB gRPC's framing of a
// message stays a small part of it.
inline constexpr uint32_t kMinChunkBytes = 1024;
inline constexpr uint32_t kMaxChunkBytes = 64 << 20;

}  // namespace hansa
