// Minimal HTTP clients over loopback sockets, for tests of the processes' own pages and
// endpoints: a request sent as is (malformed ones too) with the raw answer, a parsed HTTP/1.0
// GET, and a GET over TLS 1.3 with or without a client certificate. No redirects; an answer is
// read until the server closes. Header only; thread-safe (no state).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status/status.h"
#include "tests/support/tls_peers.h"

namespace hansa::testing {

// Sends `request` as is to 127.0.0.1:`port` and returns what the server sent until it closed,
// head and body as they came. Unavailable when nothing listens (yet); DeadlineExceeded when the
// server stays silent for `timeout_ms`.
inline StatusOr<std::string> LoopbackSend(int port, const std::string& request,
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
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return absl::UnavailableError("could not send the request");
  }
  std::string answer;
  char buffer[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no answer to ", request.substr(0, request.find('\r')), " within ", timeout_ms, " ms"));
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0) return absl::UnavailableError("recv() failed");
    if (n == 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  return answer;
}

// "`method` `path` HTTP/1.1" with Host 127.0.0.1 and no body.
inline std::string HttpRequestHead(const std::string& path, const std::string& method = "GET") {
  return absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

// `method` `path` over plain HTTP/1.1: the raw answer, empty when nothing listens or nothing
// came back (the servers under test send Connection: close).
inline std::string LoopbackHttp(int port, const std::string& path,
                                const std::string& method = "GET") {
  return LoopbackSend(port, HttpRequestHead(path, method)).value_or(std::string());
}

struct HttpAnswer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
};

// GET `path` from 127.0.0.1:`port` over HTTP/1.0, split into status, head and body; every wait
// is bounded by `timeout_ms`.
inline StatusOr<HttpAnswer> LoopbackHttpGet(int port, const std::string& path,
                                            int timeout_ms = 30000) {
  ASSIGN_OR_RETURN(
      const std::string answer,
      LoopbackSend(port, absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"),
                   timeout_ms));
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

// GET `path` from 127.0.0.1:`port` over TLS 1.3, presenting `client`'s certificate (none when
// null) and checking nothing of the server's. The raw answer; empty when the server sent no
// HTTP answer (a handshake it refused). A connection that fails fails the test; reads give up
// after 30 s.
inline std::string LoopbackHttpsGet(int port, const std::string& path, const Participant* client) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  if (client != nullptr) {
    EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), client->cert.get()), 1);
    auto pem = client->key.ToPem();
    BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), key.get()), 1);
  }
  const int fd = ConnectLoopback(port, absl::Seconds(30));
  SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  std::string out;
  if (SSL_connect(ssl.get()) == 1) {
    const std::string request = HttpRequestHead(path);
    if (SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) > 0) {
      char buf[4096];
      for (int n; (n = SSL_read(ssl.get(), buf, sizeof buf)) > 0;) {
        out.append(buf, static_cast<size_t>(n));
      }
    }
  }
  ssl.reset();
  ::close(fd);
  return out;
}

}  // namespace hansa::testing
