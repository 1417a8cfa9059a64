#include "client/link/tcp_tunnel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hansa {

TcpSocket::TcpSocket(TcpSocket&& o) noexcept : fd(std::exchange(o.fd, -1)) {}

TcpSocket::~TcpSocket() {
  if (fd >= 0) close(fd);
}

StatusOr<AddrInfoPtr> ResolveTcp(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::NotFoundError(absl::StrCat("'", host, "' does not resolve: ", gai_strerror(rc)));
  }
  return AddrInfoPtr(found, freeaddrinfo);
}

std::string AddressText(const sockaddr* addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, text, sizeof text);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, text, sizeof text);
  }
  return text;
}

StatusOr<TcpSocket> ConnectTcp(const std::string& host, const std::string& port,
                               absl::Duration timeout, std::string* address) {
  ASSIGN_OR_RETURN(AddrInfoPtr list, ResolveTcp(host, port));
  std::string last = "no address";
  for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
    TcpSocket s;
    s.fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (s.fd < 0) {
      last = absl::StrCat("socket: ", std::strerror(errno));
      continue;
    }
    *address = AddressText(a->ai_addr);
    if (connect(s.fd, a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = absl::StrCat(*address, ": ", std::strerror(errno));
        continue;
      }
      pollfd p{s.fd, POLLOUT, 0};
      const int ready = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
      if (ready == 0) {
        last = absl::StrCat(*address, ": no answer within ", absl::FormatDuration(timeout));
        continue;
      }
      int error = 0;
      socklen_t len = sizeof error;
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (ready < 0 || error != 0) {
        last = absl::StrCat(*address, ": ", std::strerror(ready < 0 ? errno : error));
        continue;
      }
    }
    // Back to blocking, with timeouts, for the conversation that follows.
    fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) & ~O_NONBLOCK);
    timeval limit{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
    setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    return s;
  }
  return absl::UnavailableError(last);
}

StatusOr<std::string> AskProxyForTunnel(const TcpSocket& s, const std::string& target) {
  const std::string request =
      absl::StrCat("CONNECT ", target, " HTTP/1.1\r\nHost: ", target, "\r\n\r\n");
  if (send(s.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return absl::UnavailableError(absl::StrCat("sending CONNECT: ", std::strerror(errno)));
  }
  std::string answer;
  char byte;
  // Byte by byte up to the end of the headers: the tunnel's bytes start right after them.
  while (answer.find("\r\n\r\n") == std::string::npos && answer.size() < 4096) {
    const ssize_t n = recv(s.fd, &byte, 1, 0);
    if (n <= 0) break;
    answer.push_back(byte);
  }
  const size_t end = answer.find_first_of("\r\n");
  if (end == std::string::npos || end == 0) {
    return absl::UnavailableError("it closed the connection or did not answer the CONNECT");
  }
  return answer.substr(0, end);
}

bool TunnelOpened(const std::string& answer) {
  const size_t space = answer.find(' ');
  return space != std::string::npos && answer.compare(space + 1, 3, "200") == 0;
}

}  // namespace hansa
