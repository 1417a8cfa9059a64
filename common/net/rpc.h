// The gRPC edges shared by hansa-client, the coordinator's service, the simulator's loopback
// sites and the benchmarks: Status conversion both ways, call deadlines and the arguments of a
// site's channel.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/net/chunk_limits.h"
#include "common/status/status.h"

namespace hansa {

// Initialises OpenSSL without its exit handler (OPENSSL_INIT_NO_ATEXIT), so that it stays whole
// until the process ends and its memory goes back with the process. gRPC's threads outlive main:
// gRPC 1.51 (Debian 12) keeps itself initialised for the life of the process once its default
// event engine exists, and a channel's subchannels are torn down later on its own threads. So
// when main returns, a gRPC thread may still be retrying a connection and build a TLS context in
// OpenSSL while exit() runs the exit handlers; OpenSSL's handler frees its locks, and that thread
// then crashed (SIGSEGV in CRYPTO_THREAD_write_lock): a site that gave up on a coordinator it
// could not reach after 30 s exited that way in 10 of 36 exits measured. Takes effect only when
// called before anything else uses OpenSSL: first thing in main of every program that opens
// gRPC channels or servers. Main thread only.
void KeepOpenSslUntilExit();

// The gRPC library held for a program's main: constructed first (after a SignalWatcher, which
// must precede every thread) and before anything uses OpenSSL, it calls KeepOpenSslUntilExit and
// initialises gRPC; its destructor, which runs after every other gRPC object of main is gone,
// releases gRPC (grpc_shutdown_blocking), which shuts it down only where nothing else holds it
// (see above: its threads may outlive main). Main thread only.
class GrpcRuntime {
 public:
  GrpcRuntime();
  ~GrpcRuntime();
  GrpcRuntime(const GrpcRuntime&) = delete;
  GrpcRuntime& operator=(const GrpcRuntime&) = delete;
};

// The gRPC status as a Status of the same code, its message prefixed with `what` ("joining").
Status FromGrpc(const grpc::Status& status, const std::string& what);
// The Status as a gRPC status of the same code and message.
grpc::Status ToGrpcStatus(const Status& status);

// A client context whose call fails with DEADLINE_EXCEEDED `seconds` from now.
std::unique_ptr<grpc::ClientContext> ContextWithDeadline(double seconds);

// A site's channel to the coordinator: messages up to `max_chunk_bytes` plus framing (what
// the coordinator's server accepts, see StartServer), keepalive pings, reconnect backoff from
// 0.5 s to 5 s, and a TCP connection of its own.
grpc::ChannelArguments SiteChannelArguments(uint32_t max_chunk_bytes);

// The largest model a download may declare unless a site sets its own limit: what the
// safetensors reader accepts (SafetensorsLimits::max_data_bytes).
inline constexpr uint64_t kDefaultMaxModelBytes = uint64_t{8} << 30;

// A size a peer declares before sending (a model download's header) is checked against the
// receiver's limit before anything is reserved for it: InvalidArgument naming `what`, the
// declared size and the limit when it is larger.
Status CheckDeclaredBytes(uint64_t declared, uint64_t limit, const std::string& what);

// The framing allowed on top of a chunk in one gRPC message.
inline constexpr int kMessageFraming = 64 << 10;
// Keepalive pings on idle connections, the same on both ends: one every 20 s, and a
// connection whose ping goes unanswered for 10 s is closed.
inline constexpr int kKeepaliveTimeMs = 20000;
inline constexpr int kKeepaliveTimeoutMs = 10000;

}  // namespace hansa
