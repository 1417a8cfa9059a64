// Small file helpers with the durability rules of design.md: state and checkpoints are written
// to a temporary file, fsynced, renamed, and the directory fsynced.
//
// The file seam (as leveldb's fault-injection Env): every writer of state (WriteFileAtomically,
// SyncDir, the audit log and the egress ledger) writes and fsyncs through WriteAll and
// SyncFile, which consult one process-wide injected fault first, so tests can make the Nth write
// or fsync fail with ENOSPC or EIO. Nothing is injected outside tests; the cost is then one
// atomic load per call.
//
// Errors name the file and the errno text; ENOSPC, EDQUOT and EFBIG (the disk or a limit is
// full) are ResourceExhausted, ENOENT NotFound, EACCES/EPERM PermissionDenied, others Internal.
//
// Thread-safe: any thread may call any function.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status/status.h"

namespace hansa {

// The failed call's errno as a Status mapped as above: "<what> <path>: <errno text>".
Status ErrnoStatus(const char* what, const std::string& path);

// Writes `bytes` to `path` atomically: a reader sees the old file or the whole new one.
// `mode` applies to the new file (e.g. 0600 for keys).
Status WriteFileAtomically(const std::string& path, std::string_view bytes, int mode = 0644);

// Reads a whole file; NotFound when absent, InvalidArgument when larger than `max_bytes`.
StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = size_t{1} << 30);

// Creates a directory and its parents (mode 0700 for new ones unless given).
Status MakeDirs(const std::string& path, int mode = 0700);

// fsync of a directory, so a rename inside it is durable.
Status SyncDir(const std::string& dir);

// Writes all of `bytes` at `fd`'s offset, restarting after EINTR and short writes; `path` names
// the file in errors ("writing <path>: No space left on device"). On error some prefix of
// `bytes` may have been written: the caller restores the file.
Status WriteAll(int fd, std::string_view bytes, const std::string& path);
// fsync(fd); `path` names the file in errors ("fsync of <path>: Input/output error").
Status SyncFile(int fd, const std::string& path);

// The seam. The calls of WriteAll (op kWrite) and SyncFile/SyncDir (op kSync) on a path that
// contains `path_contains` are counted; the one after `skip` of them fails with `error`, and
// with `sticky` every later one too (a full disk), until ClearFileFault(). A failing write
// first writes half of its bytes, as a file system that fills in the middle of a write does.
enum class FileOp { kWrite, kSync };
struct FileFault {
  FileOp op = FileOp::kWrite;
  int error = ENOSPC;
  int64_t skip = 0;
  bool sticky = false;
  std::string path_contains;  // empty: every path
};
// Replaces the injected fault (and its count).
void InjectFileFault(FileFault fault);
void ClearFileFault();
// Calls the injected fault failed since InjectFileFault.
int64_t InjectedFileFailures();

}  // namespace hansa
