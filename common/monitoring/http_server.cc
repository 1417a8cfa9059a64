#include "common/monitoring/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <elf.h>
#include <link.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace hansa {

// Largest request head (request line and headers) accepted; the server takes no bodies.
constexpr int kMaxRequestBytes = 8192;

struct HttpServer::Impl {
  HttpServerOptions options;
  std::optional<Certificate> ca;  // with TLS
  mg_context* ctx = nullptr;
  int port = 0;
  absl::Mutex mu;
  std::map<std::string, HttpHandler, std::less<>> handlers ABSL_GUARDED_BY(mu);

  ~Impl() {
    if (ctx != nullptr) mg_stop(ctx);
  }
};

namespace {

struct ListenAddress {
  std::string host;  // without brackets
  int port = 0;
};

StatusOr<ListenAddress> ParseListen(const std::string& listen) {
  const auto bad = [&listen](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("monitoring listen address '", listen, "' ", std::string(why),
                     ": write it as IP:PORT, e.g. \"127.0.0.1:9464\" or \"[::1]:9464\""));
  };
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("has no port");
  ListenAddress out;
  out.host = listen.substr(0, colon);
  if (out.host.front() == '[') {
    if (out.host.size() < 3 || out.host.back() != ']') return bad("has an unclosed '['");
    out.host = out.host.substr(1, out.host.size() - 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, out.host.c_str(), &a6) != 1) return bad("is not an IPv6 address");
  } else {
    in_addr a4;
    if (inet_pton(AF_INET, out.host.c_str(), &a4) != 1) {
      return bad("is not a numeric IPv4 address (host names are not bound)");
    }
  }
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &out.port) || out.port < 0 || out.port > 65535) {
    return bad("has no port number between 0 and 65535");
  }
  return out;
}

bool HasLineBreak(const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; }

void SendResponse(mg_connection* conn, const HttpRequest& request, const HttpResponse& response) {
  std::string head = absl::StrCat("HTTP/1.1 ", response.status, " ",
                                  mg_get_response_code_text(conn, response.status), "\r\n");
  const std::string content_type =
      HasLineBreak(response.content_type) ? "text/plain" : response.content_type;
  absl::StrAppend(
      &head, "Content-Type: ", content_type, "\r\n", "Content-Length: ", response.body.size(),
      "\r\n", "X-Content-Type-Options: nosniff\r\n", "Cache-Control: no-store\r\n",
      "Referrer-Policy: no-referrer\r\n", "X-Frame-Options: DENY\r\n", "Connection: close\r\n");
  if (content_type.rfind("text/html", 0) == 0) {
    const std::string& csp =
        response.content_security_policy.empty() || HasLineBreak(response.content_security_policy)
            ? std::string(kStrictContentSecurityPolicy)
            : response.content_security_policy;
    absl::StrAppend(&head, "Content-Security-Policy: ", csp, "\r\n");
  }
  if (response.status == 405) absl::StrAppend(&head, "Allow: GET, HEAD\r\n");
  head += "\r\n";
  mg_write(conn, head.data(), head.size());
  if (request.method != "HEAD" && !response.body.empty()) {
    mg_write(conn, response.body.data(), response.body.size());
  }
}

HttpResponse Plain(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

StatusOr<Certificate> PeerCertificate(const mg_request_info* info) {
  if (info->client_cert == nullptr || info->client_cert->peer_cert == nullptr) {
    return absl::PermissionDeniedError("no client certificate was presented");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio ||
      PEM_write_bio_X509(bio.get(), static_cast<X509*>(info->client_cert->peer_cert)) != 1) {
    return absl::InternalError("could not encode the client certificate");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return Certificate::FromPem(std::string_view(data, static_cast<size_t>(n)));
}

int BeginRequest(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  auto* impl = static_cast<HttpServer::Impl*>(info->user_data);
  HttpRequest request;
  request.method = info->request_method != nullptr ? info->request_method : "";
  request.path = info->local_uri != nullptr ? info->local_uri : "";
  request.query = info->query_string != nullptr ? info->query_string : "";
  if (impl->ca.has_value()) {
    StatusOr<Certificate> client = PeerCertificate(info);
    Status allowed = client.status();
    if (allowed.ok()) {
      // The handshake checked it already; check again so no path serves a certificate that
      // slipped past (a session resumed after it expired).
      allowed = CheckClientCertificate(client->ToPem(), *impl->ca, absl::Now());
    }
    if (allowed.ok() && impl->options.authorize) allowed = impl->options.authorize(*client);
    if (!allowed.ok()) {
      spdlog::warn("monitoring: refused {} {}: {}", request.method, request.path,
                   std::string(allowed.message()));
      SendResponse(conn, request,
                   Plain(403, absl::StrCat("forbidden: ", std::string(allowed.message()), "\n")));
      return 403;
    }
    request.client_common_name = client->Subject().common_name;
  }
  if (request.method != "GET" && request.method != "HEAD") {
    SendResponse(conn, request, Plain(405, "method not allowed: only GET and HEAD\n"));
    return 405;
  }
  HttpHandler handler;
  {
    absl::MutexLock lock(&impl->mu);
    auto it = impl->handlers.find(request.path);
    if (it != impl->handlers.end()) handler = it->second;
  }
  if (!handler) {
    SendResponse(conn, request, Plain(404, "not found\n"));
    return 404;
  }
  HttpResponse response;
  try {
    response = handler(request);
  } catch (const std::exception& e) {
    spdlog::error("monitoring: the handler of {} failed: {}", request.path, e.what());
    response = Plain(500, "internal error\n");
  }
  SendResponse(conn, request, response);
  return response.status;
}

int LogMessage(const mg_connection*, const char* message) {
  spdlog::debug("monitoring (civetweb): {}", message);
  return 1;
}

int LogAccess(const mg_connection*, const char*) { return 1; }

// Checks the client's certificate in the handshake with the project's own rule, as the
// coordinator's gRPC server does (CheckClientCertificate), instead of OpenSSL's chain check.
int VerifyClient(X509_STORE_CTX* store, void* arg) {
  auto* impl = static_cast<HttpServer::Impl*>(arg);
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  if (leaf == nullptr) return 0;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_X509(bio.get(), leaf) != 1) return 0;
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  const Status ok = CheckClientCertificate(std::string_view(data, static_cast<size_t>(n)),
                                           *impl->ca, absl::Now());
  if (!ok.ok()) {
    spdlog::warn("monitoring: refused a TLS client: {}", std::string(ok.message()));
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  return 1;
}

int InitSsl(void* ssl_ctx, void* user_data) {
  auto* impl = static_cast<HttpServer::Impl*>(user_data);
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  const TlsFiles& files = *impl->options.tls;
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_bio(
      BIO_new_mem_buf(files.certificate_pem.data(), static_cast<int>(files.certificate_pem.size())),
      BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(files.private_key_pem.data(), static_cast<int>(files.private_key_pem.size())),
      BIO_free);
  if (!cert_bio || !key_bio) return -1;
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr), X509_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!cert || !key || SSL_CTX_use_certificate(ctx, cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1 ||
      SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
    spdlog::error("monitoring: could not set up TLS with the participant's certificate and key");
    return -1;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, VerifyClient, impl);
  // Tell clients which CA to pick a certificate for.
  X509_NAME* ca_name = X509_NAME_dup(X509_get_subject_name(impl->ca->get()));
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  if (ca_name != nullptr && names != nullptr) {
    sk_X509_NAME_push(names, ca_name);
    SSL_CTX_set_client_CA_list(ctx, names);
  } else {
    X509_NAME_free(ca_name);
    sk_X509_NAME_free(names);
  }
  return 1;
}

// Debian 12's civetweb (1.15) loads OpenSSL with dlopen and looks its functions up by their 1.1
// names; OpenSSL 3 renamed SSL_get_peer_certificate to SSL_get1_peer_certificate (same
// semantics: a new reference), so the lookup leaves a null pointer that civetweb calls after
// every TLS handshake and the worker crashes. civetweb keeps the looked-up functions in a table
// of {name, [flag,] function} entries in its writable data; this finds the entry by its name
// and fills it. It learns the entry's layout from the entry of SSL_new, whose function it knows.
// Returns false when the table could not be found (then TLS is refused, see Start).
struct LoadedSegment {
  uintptr_t begin, end;
  bool writable;
};

int CollectCivetwebSegments(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name == nullptr || std::strstr(info->dlpi_name, "libcivetweb.so") == nullptr) {
    return 0;
  }
  auto* out = static_cast<std::vector<LoadedSegment>*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
    out->push_back({begin, begin + ph.p_memsz, (ph.p_flags & PF_W) != 0});
  }
  return 1;
}

bool RepairCivetwebOpenSsl3() {
  std::vector<LoadedSegment> segments;
  dl_iterate_phdr(CollectCivetwebSegments, &segments);
  const auto names = [&segments](uintptr_t p, const char* name) {
    const size_t len = std::strlen(name) + 1;
    for (const LoadedSegment& s : segments) {
      if (p >= s.begin && p + len <= s.end)
        return std::memcmp(reinterpret_cast<void*>(p), name, len) == 0;
    }
    return false;
  };
  const auto find_entry = [&](const char* name) -> uintptr_t* {
    for (const LoadedSegment& s : segments) {
      if (!s.writable) continue;
      for (uintptr_t p = (s.begin + 7) & ~uintptr_t{7}; p + 8 <= s.end; p += 8) {
        if (names(*reinterpret_cast<uintptr_t*>(p), name)) return reinterpret_cast<uintptr_t*>(p);
      }
    }
    return nullptr;
  };
  uintptr_t* ssl_new = find_entry("SSL_new");
  uintptr_t* peer = find_entry("SSL_get_peer_certificate");
  if (ssl_new == nullptr || peer == nullptr) return false;
  for (int slot = 1; slot <= 2; ++slot) {
    if (ssl_new[slot] == reinterpret_cast<uintptr_t>(&SSL_new)) {
      if (peer[slot] == 0) peer[slot] = reinterpret_cast<uintptr_t>(&SSL_get1_peer_certificate);
      return peer[slot] != 0;
    }
  }
  return false;
}

bool InitLibraryOnce(bool tls) {
  static std::once_flag plain_once, tls_once;
  std::call_once(plain_once, [] { mg_init_library(0); });
  // Loads OpenSSL into civetweb only when a server uses TLS: a loopback-only process needs no
  // more than the plain server.
  static bool tls_ready = false;
  if (tls) {
    std::call_once(tls_once, [] {
      // mg_init_library answers without the TLS bit on Debian 12, having loaded everything
      // but the renamed function; civetweb's TLS works once that one is filled in.
      mg_init_library(MG_FEATURES_TLS);
      tls_ready = RepairCivetwebOpenSsl3();
    });
    return tls_ready;
  }
  return true;
}

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;
  }
  in6_addr a6;
  return inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() = default;

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (options.listen.empty()) {
    return absl::FailedPreconditionError("monitoring is off: no listen address was given");
  }
  ASSIGN_OR_RETURN(ListenAddress address, ParseListen(options.listen));
  const bool tls = options.tls.has_value();
  if (!tls && !IsLoopbackHost(address.host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to serve monitoring on ", options.listen,
        " without TLS: a non-loopback address needs HTTPS with client certificates from the "
        "federation CA ([monitoring] certificate and private_key); listen on 127.0.0.1 and "
        "reach it through an SSH tunnel, or configure TLS"));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  if (tls) {
    StatusOr<Certificate> ca = Certificate::FromPem(impl->options.tls->ca_certificate_pem);
    if (!ca.ok()) return Annotate(ca.status(), "monitoring TLS: the federation CA");
    impl->ca = *std::move(ca);
  }
  if (!InitLibraryOnce(tls)) {
    return absl::UnavailableError(
        "monitoring over TLS is unavailable: civetweb could not load OpenSSL 3 (is libssl-dev "
        "installed? civetweb opens libssl.so by that name)");
  }

  const std::string ports = absl::StrCat(impl->options.listen, tls ? "s" : "");
  const std::string threads = absl::StrCat(std::max(1, impl->options.threads));
  const std::string max_request = absl::StrCat(kMaxRequestBytes);
  std::vector<const char*> config = {"listening_ports",
                                     ports.c_str(),
                                     "num_threads",
                                     threads.c_str(),
                                     "max_request_size",
                                     max_request.c_str(),
                                     "request_timeout_ms",
                                     "10000",
                                     "enable_directory_listing",
                                     "no",
                                     "enable_keep_alive",
                                     "no",
                                     "decode_url",
                                     "yes"};
  if (tls) {
    config.insert(config.end(), {"ssl_protocol_version", "4"});
  }
  config.push_back(nullptr);

  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.begin_request = BeginRequest;
  callbacks.log_message = LogMessage;
  callbacks.log_access = LogAccess;
  if (tls) callbacks.init_ssl = InitSsl;
  mg_init_data init;
  init.callbacks = &callbacks;
  init.user_data = impl.get();
  init.configuration_options = config.data();
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error;
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  impl->ctx = mg_start2(&init, &error);
  if (impl->ctx == nullptr) {
    return absl::UnavailableError(absl::StrCat("could not start monitoring on ",
                                               impl->options.listen, ": ", error_text,
                                               " (is the address in use or not local?)"));
  }
  mg_server_port bound[4];
  std::memset(bound, 0, sizeof(bound));
  const int n = mg_get_server_ports(impl->ctx, 4, bound);
  if (n < 1) return absl::InternalError("monitoring: civetweb reports no bound port");
  impl->port = bound[0].port;
  spdlog::info("monitoring: serving {}://{} (port {})", tls ? "https" : "http",
               impl->options.listen, impl->port);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Handle(std::string path, HttpHandler handler) {
  absl::MutexLock lock(&impl_->mu);
  impl_->handlers[std::move(path)] = std::move(handler);
}

int HttpServer::port() const { return impl_->port; }

bool HttpServer::tls() const { return impl_->ca.has_value(); }

}  // namespace hansa
