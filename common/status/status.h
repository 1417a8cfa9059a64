// Status and StatusOr for everything that can fail, and the project's propagation macros.
//
// Errors are absl::Status values whose message says what failed, on which input, and what to
// do. Exceptions from LibTorch or the standard library are caught at a module boundary and
// converted with the helpers below; they never cross a public header.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace hansa {

using absl::Status;
using absl::StatusOr;

// Prepends context to an error, keeping its code and payloads: "loading site.toml: <original
// message>".
inline Status Annotate(const Status& status, absl::string_view context) {
  if (status.ok()) return status;
  Status out(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

// Errors of this process's own storage: a write or fsync of its state failed (a full disk, an
// I/O error). Not the peer's fault nor the network's, and no retry helps until an operator
// frees space or fixes the disk, so the process stops with the error (and resumes from its
// last good state when restarted). The mark is a payload: Annotate keeps it.
inline constexpr char kStorageErrorUrl[] = "hansa/storage-error";
inline Status MarkStorageError(Status status) {
  if (!status.ok()) status.SetPayload(kStorageErrorUrl, absl::Cord("1"));
  return status;
}
inline bool IsStorageError(const Status& status) {
  return status.GetPayload(kStorageErrorUrl).has_value();
}

}  // namespace hansa

#define HANSA_STATUS_CONCAT_INNER_(a, b) a##b
#define HANSA_STATUS_CONCAT_(a, b) HANSA_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status hansa_status_ = (expr);         \
    if (!hansa_status_.ok()) return hansa_status_; \
  } while (0)

// Evaluates `rexpr` (a StatusOr<T>); on error returns its status, else moves the value into
// `lhs`, which may be a declaration: ASSIGN_OR_RETURN(auto x, Compute());
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  HANSA_ASSIGN_OR_RETURN_IMPL_(HANSA_STATUS_CONCAT_(hansa_statusor_, __LINE__), lhs, rexpr)

#define HANSA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
