#include "common/net/rpc.h"

#include <grpc/grpc.h>
#include <openssl/crypto.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace hansa {

Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return Status(static_cast<absl::StatusCode>(status.error_code()),
                absl::StrCat(what, ": ", status.error_message()));
}

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(double seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  return ctx;
}

Status CheckDeclaredBytes(uint64_t declared, uint64_t limit, const std::string& what) {
  if (declared <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " declares ", declared,
                                                 " bytes, more than the limit of ", limit,
                                                 " bytes; refused before receiving it"));
}

void KeepOpenSslUntilExit() { OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr); }

GrpcRuntime::GrpcRuntime() {
  KeepOpenSslUntilExit();
  grpc_init();
}

// Blocking: where nothing else holds gRPC, its clean-up runs here, not on a thread of its own.
GrpcRuntime::~GrpcRuntime() { grpc_shutdown_blocking(); }

grpc::ChannelArguments SiteChannelArguments(uint32_t max_chunk_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(max_chunk_bytes) + kMessageFraming);
  args.SetMaxSendMessageSize(static_cast<int>(max_chunk_bytes) + kMessageFraming);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

}  // namespace hansa
