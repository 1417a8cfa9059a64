// A small embedded HTTP(S) server for a process's own read-only pages: Prometheus metrics, the
// coordinator's dashboard, a site's page. Built on Debian's civetweb; serves only the exact paths
// registered with Handle (GET and HEAD), never files or directory listings.
//
// Access: a loopback `listen` serves plain HTTP. Any other address is refused unless `tls` is
// given, in which case the server speaks HTTPS (TLS 1.3 only) and requires a client certificate
// issued by the federation CA (CheckClientCertificate, inside the handshake), then asks
// `authorize` (e.g. for an operator role) before each request; a refusal there is a 403 naming
// why.
//
// Threading: civetweb runs its own worker threads, which call handlers concurrently; handlers
// must be thread-safe. Handle may be called from any thread, before or after Start. The
// destructor stops the server and joins its threads; no handler runs after it returns.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/net/tls.h"
#include "common/pki/certificate.h"
#include "common/status/status.h"

namespace hansa {

struct HttpRequest {
  std::string method;   // "GET" or "HEAD"
  std::string path;     // decoded, without the query: "/metrics"
  std::string query{};  // raw, without '?'; empty when absent
  // CN of the TLS client certificate; empty without TLS.
  std::string client_common_name{};
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Only for text/html: the Content-Security-Policy to send; empty: kStrictContentSecurityPolicy.
  // A page with inline scripts names their hashes here ("script-src 'sha256-...'"), never
  // 'unsafe-inline'.
  std::string content_security_policy;
};

// What an HTML page gets unless its response names another policy: its own origin only.
inline constexpr char kStrictContentSecurityPolicy[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string listen;  // "127.0.0.1:9464", "[::1]:9464"; "" = off. Port 0 picks a free one.
  // Required when `listen` is not a loopback address: HTTPS with a client certificate issued by
  // the federation CA, checked by `authorize` (e.g. the operator role); without it a
  // non-loopback listen is refused with a clear message.
  std::optional<TlsFiles> tls;  // common/net/tls.h
  // Called per request with the client's certificate (already checked against the CA); an error
  // is answered 403 with its message. Null: any certificate of the CA.
  std::function<Status(const Certificate& client)> authorize;
  // Worker threads (concurrent requests).
  int threads = 4;
};

// Whether `host` (the part of a listen address before the port, without brackets) is a loopback
// address: 127.0.0.0/8 or ::1.
bool IsLoopbackHost(const std::string& host);

class HttpServer {
 public:
  // Binds exactly `options.listen` and starts serving. InvalidArgument for a malformed address
  // or a non-loopback one without TLS; Unavailable when the address cannot be bound (in use).
  // With options.listen empty: FailedPrecondition (the caller checks "off" first).
  static StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);

  // Serves `handler` at exactly `path` ("/metrics"); replaces an earlier handler of that path.
  // Thread-safe, may be called after Start.
  void Handle(std::string path, HttpHandler handler);

  // The bound port (listen "127.0.0.1:0" picks one).
  int port() const;
  // True when serving HTTPS.
  bool tls() const;

  // Stops and joins civetweb's threads.
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hansa
