// Plain TCP to a host, and an HTTP CONNECT tunnel through a site's outbound proxy: what the gRPC
// link asks a proxy when a connection through it fails (to name the proxy's answer), and what
// `hansa doctor` checks the route with. No gRPC, no TLS. Functions block for at most their
// timeout per step; any thread.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/status/status.h"

namespace hansa {

// A connected socket, closed when it goes. Move-only.
struct TcpSocket {
  int fd = -1;
  TcpSocket() = default;
  TcpSocket(const TcpSocket&) = delete;
  TcpSocket& operator=(const TcpSocket&) = delete;
  TcpSocket(TcpSocket&& o) noexcept;
  TcpSocket& operator=(TcpSocket&&) = delete;
  ~TcpSocket();
};

using AddrInfoPtr = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// The addresses of host:port for a TCP connection; NotFound "'host' does not resolve: ...".
StatusOr<AddrInfoPtr> ResolveTcp(const std::string& host, const std::string& port);
// "192.0.2.1" or "2001:db8::1" of an IPv4 or IPv6 socket address; "?" for another family.
std::string AddressText(const sockaddr* addr);

// A TCP connection to host:port within `timeout`, trying each address in turn; `address` gets
// the one tried last (connected, on success). The socket is blocking afterwards, with send and
// receive timeouts of `timeout`. NotFound when the host does not resolve; Unavailable naming
// the last address's error ("Connection refused", "no answer within 5s") otherwise.
StatusOr<TcpSocket> ConnectTcp(const std::string& host, const std::string& port,
                               absl::Duration timeout, std::string* address);

// Sends "CONNECT target" to the HTTP proxy at the other end of `s` and returns the first line of
// its answer ("HTTP/1.1 200 Connection established"). Reads up to the end of the answer's
// headers and no further, so that the tunnel's own bytes (TLS) can follow on `s`. Unavailable
// when the request cannot be sent or the proxy closes without an answer.
StatusOr<std::string> AskProxyForTunnel(const TcpSocket& s, const std::string& target);

// True when a proxy's answer line opened the tunnel ("HTTP/1.x 200 ...").
bool TunnelOpened(const std::string& answer);

}  // namespace hansa
