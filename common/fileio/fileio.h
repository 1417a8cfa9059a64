// Small file helpers with the durability rules of design.md: state and checkpoints are written
// to a temporary file, fsynced, renamed, and the directory fsynced.
#pragma once

#include <string>
#include <string_view>

#include "common/status/status.h"

namespace hansa {

// Writes `bytes` to `path` atomically: a reader sees the old file or the whole new one.
// `mode` applies to the new file (e.g. 0600 for keys).
Status WriteFileAtomically(const std::string& path, std::string_view bytes, int mode = 0644);

// Reads a whole file; NotFound when absent, InvalidArgument when larger than `max_bytes`.
StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = size_t{1} << 30);

// Creates a directory and its parents (mode 0700 for new ones unless given).
Status MakeDirs(const std::string& path, int mode = 0700);

// fsync of a directory, so a rename inside it is durable.
Status SyncDir(const std::string& dir);

}  // namespace hansa
