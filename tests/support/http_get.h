// A minimal HTTP/1.0 GET over a loopback TCP socket, for tests of the processes' own pages: no
// TLS, no redirects, the whole answer read until the server closes. Thread-safe (no state).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status/status.h"

namespace hansa::testing {

struct HttpAnswer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
};

// GET `path` from 127.0.0.1:`port`; every wait is bounded by `timeout_ms`.
inline StatusOr<HttpAnswer> LoopbackHttpGet(int port, const std::string& path,
                                            int timeout_ms = 30000) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(absl::StrCat("nothing listens on 127.0.0.1:", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return absl::UnavailableError("could not send the request");
  }
  std::string answer;
  char buffer[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("no answer to GET ", path, " within ", timeout_ms, " ms"));
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0) return absl::UnavailableError("recv() failed");
    if (n == 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  const size_t split = answer.find("\r\n\r\n");
  if (answer.compare(0, 5, "HTTP/") != 0 || split == std::string::npos) {
    return absl::DataLossError(absl::StrCat("not an HTTP answer: ", answer.substr(0, 80)));
  }
  HttpAnswer out;
  out.head = answer.substr(0, split);
  out.body = answer.substr(split + 4);
  out.status = std::atoi(answer.c_str() + answer.find(' ') + 1);
  return out;
}

}  // namespace hansa::testing
