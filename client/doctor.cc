#include "client/doctor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/link/proxy_url.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/model/task.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"

namespace hansa {
namespace {

namespace fs = std::filesystem;

CheckResult Ok(std::string check, std::string detail) {
  return {CheckLevel::kOk, std::move(check), std::move(detail), ""};
}
CheckResult Warn(std::string check, std::string detail, std::string fix) {
  return {CheckLevel::kWarn, std::move(check), std::move(detail), std::move(fix)};
}
CheckResult Fail(std::string check, std::string detail, std::string fix) {
  return {CheckLevel::kFail, std::move(check), std::move(detail), std::move(fix)};
}

std::string Bytes(uint64_t n) {
  char buf[32];
  if (n >= 1000000) {
    std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(n) / 1e6);
  } else if (n >= 1000) {
    std::snprintf(buf, sizeof buf, "%.1f kB", static_cast<double>(n) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(n));
  }
  return buf;
}

std::string Days(absl::Duration d) { return absl::StrCat(absl::ToInt64Hours(d) / 24, " days"); }

// ---- network helpers ----

// A socket closed on scope exit.
struct Socket {
  int fd = -1;
  Socket() = default;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  Socket(Socket&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  ~Socket() {
    if (fd >= 0) close(fd);
  }
};

// host and port of a gRPC target "host:port", "[v6]:port" or "dns:///host:port".
bool SplitHostPort(const std::string& target, std::string* host, std::string* port) {
  absl::string_view t = target;
  absl::ConsumePrefix(&t, "dns:///");
  const size_t colon = t.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 || colon + 1 == t.size()) return false;
  *host = std::string(t.substr(0, colon));
  *port = std::string(t.substr(colon + 1));
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return true;
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

using AddrInfoPtr = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

StatusOr<AddrInfoPtr> Resolve(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::NotFoundError(absl::StrCat("'", host, "' does not resolve: ", gai_strerror(rc)));
  }
  return AddrInfoPtr(found, freeaddrinfo);
}

std::string AddressList(const addrinfo* list) {
  std::vector<std::string> seen;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    std::string text = AddressText(a->ai_addr);
    if (std::find(seen.begin(), seen.end(), text) == seen.end()) seen.push_back(std::move(text));
  }
  return absl::StrJoin(seen, ", ");
}

// A TCP connection to host:port within `timeout`, trying each address in turn. Unavailable
// naming the last address's error ("Connection refused", "no answer within 10s").
StatusOr<Socket> ConnectTcp(const std::string& host, const std::string& port,
                            absl::Duration timeout, std::string* address) {
  ASSIGN_OR_RETURN(AddrInfoPtr list, Resolve(host, port));
  std::string last = "no address";
  for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
    Socket s;
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
    // Back to blocking, with timeouts, for the proxy conversation.
    fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) & ~O_NONBLOCK);
    timeval limit{static_cast<time_t>(absl::ToInt64Seconds(timeout)), 0};
    setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
    setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    return s;
  }
  return absl::UnavailableError(last);
}

// The first line of an HTTP proxy's answer to CONNECT `target` over `s`.
StatusOr<std::string> AskForTunnel(const Socket& s, const std::string& target) {
  const std::string request =
      absl::StrCat("CONNECT ", target, " HTTP/1.1\r\nHost: ", target, "\r\n\r\n");
  if (send(s.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return absl::UnavailableError(absl::StrCat("sending CONNECT: ", std::strerror(errno)));
  }
  std::string answer;
  char buffer[1];
  // Up to the end of the headers, and no further: TLS may follow on this socket.
  while (answer.find("\r\n\r\n") == std::string::npos && answer.size() < 4096) {
    const ssize_t n = recv(s.fd, buffer, 1, 0);  // byte by byte: the tunnel starts after
    if (n <= 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  const size_t end = answer.find_first_of("\r\n");
  if (end == std::string::npos || end == 0) {
    return absl::UnavailableError("it closed the connection or did not answer the CONNECT");
  }
  return answer.substr(0, end);
}

// True when `host` matches a no_proxy-style list ("a.org,.b.org,10.0.0.1", "*" for all).
bool ListedInNoProxy(const std::string& host, const std::string& list) {
  for (absl::string_view entry : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry == "*") return true;
    absl::ConsumePrefix(&entry, ".");
    if (host == entry || absl::EndsWith(host, absl::StrCat(".", std::string(entry)))) return true;
  }
  return false;
}

std::string Who(const Certificate& cert) {
  const SubjectName s = cert.Subject();
  return absl::StrCat("'", s.common_name, "' (O=", s.organization, ", C=", s.country, ")");
}

// A TCP connection to the coordinator, directly or through an HTTP CONNECT tunnel.
StatusOr<Socket> OpenTunnel(const SiteConfig& config, const std::string& proxy,
                            absl::Duration timeout) {
  std::string host, port, address;
  if (!SplitHostPort(config.coordinator, &host, &port)) {
    return absl::InvalidArgumentError("site.coordinator is not host:port");
  }
  if (proxy.empty()) return ConnectTcp(host, port, timeout, &address);
  std::string proxy_host, proxy_port;
  if (!SplitProxyUrl(proxy, &proxy_host, &proxy_port)) {
    return absl::InvalidArgumentError("bad proxy URL");
  }
  ASSIGN_OR_RETURN(Socket s, ConnectTcp(proxy_host, proxy_port, timeout, &address));
  ASSIGN_OR_RETURN(std::string answer, AskForTunnel(s, config.coordinator));
  const size_t space = answer.find(' ');
  if (space == std::string::npos || answer.compare(space + 1, 3, "200") != 0) {
    return absl::UnavailableError(absl::StrCat("the proxy answered \"", answer, "\""));
  }
  return s;
}

struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The reason of OpenSSL's last error ("sslv3 alert bad certificate"), or `otherwise`.
std::string OpensslReason(const std::string& otherwise) {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  const char* reason = last != 0 ? ERR_reason_error_string(last) : nullptr;
  return reason != nullptr ? reason : otherwise;
}

struct TlsDiagnosis {
  std::string why;  // empty: nothing found
  std::string fix;
};

// Why the handshake fails, seen by a plain OpenSSL TLS 1.3 client with the site's certificate
// that accepts any server certificate and then judges it itself: the coordinator's certificate
// against ca.pem and the host name, then the coordinator's verdict on the site's certificate
// (in TLS 1.3 it arrives as an alert after the client's side of the handshake).
TlsDiagnosis DiagnoseTls(const SiteConfig& config, const TlsFiles& files, const std::string& proxy,
                         const DoctorOptions& options) {
  StatusOr<Socket> s = OpenTunnel(config, proxy, options.network_timeout);
  if (!s.ok()) return {};
  std::string host, port;
  SplitHostPort(config.coordinator, &host, &port);
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return {};
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  std::unique_ptr<X509, X509Free> cert(
      PEM_read_bio_X509(MemoryBio(files.certificate_pem).get(), nullptr, nullptr, nullptr));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(MemoryBio(files.private_key_pem).get(), nullptr, nullptr, nullptr));
  if (!cert || !key || SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) {
    return {};
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), s->fd);
  if (!IsIpAddress(host)) SSL_set_tlsext_host_name(ssl.get(), host.c_str());
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_set_alpn_protos(ssl.get(), kAlpn, sizeof kAlpn);
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    return {absl::StrCat("a plain TLS 1.3 handshake with it failed too: ",
                         OpensslReason("the connection closed")),
            "something at this address does not speak TLS 1.3 with this site: the coordinator "
            "refused the site's certificate, or another service or a TLS-inspecting proxy "
            "answers there (ask the network team to exempt this destination from inspection)"};
  }
  std::unique_ptr<X509, X509Free> peer(SSL_get1_peer_certificate(ssl.get()));
  if (!peer) return {};
  StatusOr<Certificate> coordinator = Certificate::FromPem([&] {
    std::unique_ptr<BIO, BioFree> out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(out.get(), peer.get());
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<size_t>(n));
  }());
  StatusOr<Certificate> ca = Certificate::FromPem(files.ca_certificate_pem);
  if (!coordinator.ok() || !ca.ok()) return {};
  const std::string who = absl::StrCat("the coordinator's certificate (", Who(*coordinator),
                                       ", sha256 ", coordinator->Sha256Fingerprint(), ")");
  if (Status st = VerifyCertificate(*coordinator, *ca, options.now, CertificateUsage::kTlsServer);
      !st.ok()) {
    return {absl::StrCat("this site does not accept ", who, ": ", st.message()),
            absl::StrCat("if ", config.ca_certificate,
                         " is not the federation's CA, ask the federation operator for it; if "
                         "the coordinator's certificate expired, its operator must renew it; "
                         "check that site.coordinator is the federation's address")};
  }
  const std::vector<std::string> names = coordinator->SubjectAltNames();
  const std::string name = absl::StrCat(IsIpAddress(host) ? "IP:" : "DNS:", host);
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    return {absl::StrCat(who, " does not name '", host, "'; it names ", absl::StrJoin(names, ", ")),
            "set site.coordinator to one of the names the certificate holds, or ask the "
            "federation operator to issue the coordinator a certificate with this name"};
  }
  // TLS 1.3: the coordinator judges this site's certificate after the client's side of the
  // handshake ended; a refusal arrives as an alert on the first read, acceptance as HTTP/2.
  char byte = 0;
  ERR_clear_error();
  if (const int n = SSL_read(ssl.get(), &byte, 1); n <= 0) {
    // Silence until the socket's timeout is no verdict (a gRPC server speaks first).
    if (SSL_get_error(ssl.get(), n) == SSL_ERROR_SYSCALL &&
        (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return {};
    }
    return {absl::StrCat("the coordinator refused this site's certificate: ",
                         OpensslReason("it closed the connection after the handshake")),
            "ask the federation operator why (the coordinator's log names the reason): this "
            "site's certificate may be revoked, expired by the coordinator's clock, or from "
            "another federation"};
  }
  return {};
}

// ---- certificates ----

CheckResult ValidityLine(const std::string& check, const Certificate& cert,
                         const DoctorOptions& options, const std::string& renew) {
  Status st = CheckCertificateTime(cert, options.now);
  if (absl::IsPermissionDenied(st)) return Fail(check, std::string(st.message()), renew);
  if (!st.ok()) {
    return Fail(check, std::string(st.message()),
                "check this machine's clock (timedatectl); if it is right, the certificate was "
                "issued for a later date: ask the federation operator");
  }
  const absl::Duration left = cert.NotAfter() - options.now;
  const std::string until = absl::StrCat("valid from ", FormatCertificateTime(cert.NotBefore()),
                                         " until ", FormatCertificateTime(cert.NotAfter()));
  if (left < options.expiry_warning) {
    return Warn(check, absl::StrCat(until, ": expires in ", Days(left)), renew);
  }
  return Ok(check, absl::StrCat(until, " (", Days(left), " left)"));
}

void CheckKeyFile(const SiteConfig& config, const std::optional<Certificate>& cert,
                  std::vector<CheckResult>* out) {
  const std::string& path = config.private_key;
  StatusOr<std::string> pem = ReadFile(path, 1 << 20);
  if (!pem.ok()) {
    out->push_back(Fail("private key", std::string(pem.status().message()),
                        "site.private_key must name the key `hansa enroll` wrote beside the "
                        "certificate request, readable by the user that runs hansa-client"));
    return;
  }
  StatusOr<PrivateKey> key = PrivateKey::FromPem(*pem);
  OPENSSL_cleanse(pem->data(), pem->size());
  if (!key.ok()) {
    out->push_back(Fail("private key", absl::StrCat(path, ": ", key.status().message()),
                        "site.private_key must be the unencrypted PEM key `hansa enroll` wrote"));
  } else if (cert.has_value()) {
    if (Status st = cert->CheckPrivateKeyMatches(*key); !st.ok()) {
      out->push_back(
          Fail("private key",
               absl::StrCat(path, " is not the key of ", config.certificate, ": ", st.message()),
               "use the key made with this certificate's request (`hansa enroll`), or "
               "enroll again and have the new request signed"));
    } else {
      out->push_back(Ok("private key", absl::StrCat(path, ": ", KeyTypeName(key->type()),
                                                    ", matches the certificate")));
    }
  }
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) return;
  const unsigned mode = info.st_mode & 07777;
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", mode);
  if ((mode & 077) != 0) {
    out->push_back(Warn("key file mode",
                        absl::StrCat(path, " has mode ", octal,
                                     ": other users of this machine may read the site's key"),
                        absl::StrCat("chmod 600 ", path)));
  } else {
    out->push_back(Ok("key file mode", absl::StrCat(path, " has mode ", octal)));
  }
}

// ---- data ----

constexpr char kDataFix[] =
    "check the path in site.toml's [data] (relative paths are from site.toml's folder) and that "
    "the user running hansa-client may read it";

// Size of a readable regular file, or why not.
StatusOr<uint64_t> ReadableFileSize(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  if (!fs::is_regular_file(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  if (access(path.c_str(), R_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is not readable: ", std::strerror(errno)));
  }
  return static_cast<uint64_t>(fs::file_size(path, ec));
}

struct IdxHeader {
  std::vector<int64_t> dims;
  uint64_t payload_bytes = 0;  // what the header promises after itself
};

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// The first `want` bytes of `path`, inflated when it is gzip. *gzip says which; for gzip,
// *isize holds the trailer's uncompressed size (mod 2^32).
StatusOr<std::string> ReadHead(const std::string& path, size_t want, bool* gzip, uint32_t* isize) {
  std::ifstream in(path, std::ios::binary);
  std::string raw(64 << 10, '\0');
  in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  raw.resize(static_cast<size_t>(in.gcount()));
  *gzip = raw.size() >= 2 && static_cast<unsigned char>(raw[0]) == 0x1f &&
          static_cast<unsigned char>(raw[1]) == 0x8b;
  if (!*gzip) return raw.substr(0, std::min(want, raw.size()));
  std::ifstream tail(path, std::ios::binary | std::ios::ate);
  unsigned char trailer[4] = {};
  tail.seekg(-4, std::ios::end);
  tail.read(reinterpret_cast<char*>(trailer), 4);
  *isize = uint32_t{trailer[0]} | (uint32_t{trailer[1]} << 8) | (uint32_t{trailer[2]} << 16) |
           (uint32_t{trailer[3]} << 24);
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("zlib init failed");
  std::string out(want, '\0');
  z.next_in = reinterpret_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_SYNC_FLUSH);
  const size_t got = want - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_OK && rc != Z_STREAM_END) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": corrupt gzip stream"));
  }
  out.resize(got);
  return out;
}

// An IDX file's header: magic (uint8 elements), `ndims` dimensions, and a size that agrees.
StatusOr<IdxHeader> ReadIdxHeader(const std::string& path, int ndims, uint64_t file_size) {
  bool gzip = false;
  uint32_t isize = 0;
  ASSIGN_OR_RETURN(std::string head,
                   ReadHead(path, 4 + 4 * static_cast<size_t>(ndims), &gzip, &isize));
  const auto* p = reinterpret_cast<const unsigned char*>(head.data());
  if (head.size() < 4 || p[0] != 0 || p[1] != 0 || p[2] != 0x08) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not an IDX file of bytes (bad magic number)"));
  }
  if (p[3] != ndims || head.size() < 4 + 4 * static_cast<size_t>(ndims)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has ", int{p[3]}, " dimensions; expected ", ndims));
  }
  IdxHeader header;
  header.payload_bytes = 1;
  for (int i = 0; i < ndims; ++i) {
    header.dims.push_back(BigEndian32(p + 4 + 4 * i));
    header.payload_bytes *= static_cast<uint64_t>(header.dims.back());
  }
  const uint64_t total = header.payload_bytes + 4 + 4 * static_cast<uint64_t>(ndims);
  const uint64_t have = gzip ? isize : file_size;
  if ((gzip ? (total & 0xffffffffu) : total) != have) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the header promises ", total, " bytes but the file holds ", have,
                     gzip ? " (uncompressed, mod 2^32)" : "", ": truncated or not the file meant"));
  }
  return header;
}

CheckResult CheckIdxPair(const std::string& split, const std::string& images,
                         const std::string& labels) {
  const std::string check = absl::StrCat("data ", split);
  StatusOr<uint64_t> image_size = ReadableFileSize(images);
  if (!image_size.ok()) return Fail(check, std::string(image_size.status().message()), kDataFix);
  StatusOr<uint64_t> label_size = ReadableFileSize(labels);
  if (!label_size.ok()) return Fail(check, std::string(label_size.status().message()), kDataFix);
  StatusOr<IdxHeader> ih = ReadIdxHeader(images, 3, *image_size);
  if (!ih.ok()) return Fail(check, std::string(ih.status().message()), kDataFix);
  StatusOr<IdxHeader> lh = ReadIdxHeader(labels, 1, *label_size);
  if (!lh.ok()) return Fail(check, std::string(lh.status().message()), kDataFix);
  if (ih->dims[0] != lh->dims[0]) {
    return Fail(check,
                absl::StrCat(images, " holds ", ih->dims[0], " images but ", labels, " ",
                             lh->dims[0], " labels"),
                "data.*_images and data.*_labels must be the two files of one IDX data set");
  }
  return Ok(check, absl::StrCat(images, " (", ih->dims[0], " images ", ih->dims[1], "x",
                                ih->dims[2], ", ", Bytes(*image_size), "), ", labels, " (",
                                Bytes(*label_size), "): IDX headers read, counts agree"));
}

CheckResult CheckCsvFile(const std::string& split, const std::string& path, const CsvSchema& csv) {
  const std::string check = absl::StrCat("data ", split);
  StatusOr<uint64_t> size = ReadableFileSize(path);
  if (!size.ok()) return Fail(check, std::string(size.status().message()), kDataFix);
  if (!csv.columns.empty()) {
    return Ok(check, absl::StrCat(path, " (", Bytes(*size), "; columns named in site.toml)"));
  }
  std::ifstream in(path);
  std::string line;
  for (int i = 0; i <= csv.skip_lines; ++i) std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::vector<std::string> columns;
  for (absl::string_view c : absl::StrSplit(line, ',')) {
    c = absl::StripAsciiWhitespace(c);
    if (c.size() >= 2 && c.front() == '"' && c.back() == '"') c = c.substr(1, c.size() - 2);
    columns.emplace_back(c);
  }
  std::vector<std::string> wanted = csv.features;
  wanted.push_back(csv.label);
  for (const std::string& w : wanted) {
    if (std::find(columns.begin(), columns.end(), w) == columns.end()) {
      return Fail(check,
                  absl::StrCat(path, ": the header row has no column '", w, "' (it has ",
                               columns.size(), " columns)"),
                  "data.csv.label and data.csv.features must name columns of the header row");
    }
  }
  return Ok(check, absl::StrCat(path, " (", Bytes(*size), "): header row has ", columns.size(),
                                " columns, label '", csv.label, "' among them"));
}

CheckResult CheckDataFolder(const std::string& split, const std::string& dir,
                            const SiteConfig& config) {
  const std::string check = absl::StrCat("data ", split);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Fail(check, absl::StrCat(dir, " is not a directory"), kDataFix);
  }
  if (access(dir.c_str(), R_OK | X_OK) != 0) {
    return Fail(check, absl::StrCat(dir, " is not readable: ", std::strerror(errno)), kDataFix);
  }
  std::string manifest = config.manifest;
  if (manifest.empty() && config.format == "dicom_folder") manifest = "labels.csv";
  if (!manifest.empty()) {
    StatusOr<uint64_t> size = ReadableFileSize(dir + "/" + manifest);
    if (!size.ok()) {
      return Fail(check, std::string(size.status().message()),
                  "each of data.train_dir and data.test_dir needs its label manifest "
                  "(data.manifest)");
    }
  }
  int folders = 0;
  uint64_t files = 0, bytes = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) {
      if (it.depth() == 0) ++folders;
    } else if (it->is_regular_file(ec)) {
      ++files;
      bytes += it->file_size(ec);
    }
  }
  for (const std::string& c : config.classes) {
    if (manifest.empty() && !fs::is_directory(fs::path(dir) / c, ec)) {
      return Fail(check, absl::StrCat(dir, " has no folder for class '", c, "'"),
                  "data.classes must name class folders of data.train_dir and data.test_dir");
    }
  }
  if (files == 0) return Fail(check, absl::StrCat(dir, " holds no files"), kDataFix);
  return Ok(check, absl::StrCat(dir, ": ", folders, " folders, ", files, " files, ", Bytes(bytes),
                                manifest.empty() ? "" : absl::StrCat(", manifest ", manifest)));
}

// ---- clock ----

StatusOr<bool> TimedatectlSynchronized() {
  if (access("/usr/bin/timedatectl", X_OK) != 0 && access("/bin/timedatectl", X_OK) != 0) {
    return absl::UnavailableError("timedatectl is not installed (no systemd)");
  }
  FILE* pipe = popen("timeout 5 timedatectl show -p NTPSynchronized --value 2>/dev/null", "r");
  if (pipe == nullptr) return absl::UnavailableError("cannot run timedatectl");
  char buf[64] = {};
  const size_t n = fread(buf, 1, sizeof buf - 1, pipe);
  const int rc = pclose(pipe);
  const std::string answer(absl::StripAsciiWhitespace(absl::string_view(buf, n)));
  if (rc != 0 || (answer != "yes" && answer != "no")) {
    return absl::UnavailableError(
        "timedatectl gave no answer (systemd not running here, e.g. in a container)");
  }
  return answer == "yes";
}

}  // namespace

const char* CheckLevelName(CheckLevel level) {
  switch (level) {
    case CheckLevel::kOk:
      return "OK";
    case CheckLevel::kWarn:
      return "WARN";
    case CheckLevel::kFail:
      return "FAIL";
  }
  return "?";
}

std::string FormatCheck(const CheckResult& r) {
  char level[8];
  std::snprintf(level, sizeof level, "%-5s", CheckLevelName(r.level));
  std::string line = absl::StrCat(level, " ", r.check, ": ", r.detail, "\n");
  if (!r.fix.empty()) absl::StrAppend(&line, "      fix: ", r.fix, "\n");
  return line;
}

bool AnyFailed(const std::vector<CheckResult>& results) {
  return std::any_of(results.begin(), results.end(),
                     [](const CheckResult& r) { return r.level == CheckLevel::kFail; });
}

CheckResult CheckConfig(const std::string& path, SiteConfig* config) {
  StatusOr<SiteConfig> loaded = LoadSiteConfig(path);
  if (!loaded.ok()) {
    return Fail("config", std::string(loaded.status().message()),
                "correct site.toml as the message says (docs/operations.md lists its keys); "
                "nothing else was checked");
  }
  *config = std::move(*loaded);
  return Ok("config", absl::StrCat(path, " parses: site '", config->name, "', coordinator ",
                                   config->coordinator, ", data format ", config->format));
}

std::vector<CheckResult> CheckCertificates(const SiteConfig& config, const DoctorOptions& options) {
  std::vector<CheckResult> out;
  const std::string renew_site =
      "have it renewed before then: `hansa enroll` a new request and send it to the federation "
      "operator for `hansa ca sign`";
  const std::string renew_ca = "the federation operator must renew the CA; ask for the new ca.pem";
  std::optional<Certificate> cert, ca;
  if (StatusOr<Certificate> c = Certificate::FromFile(config.certificate); c.ok()) {
    cert = std::move(*c);
    out.push_back(Ok("certificate", absl::StrCat(config.certificate, ": ", Who(*cert), ", sha256 ",
                                                 cert->Sha256Fingerprint())));
  } else {
    out.push_back(Fail("certificate", std::string(c.status().message()),
                       "site.certificate must name this site's certificate (the cert.pem the "
                       "federation operator sent back), readable by hansa-client's user"));
  }
  if (StatusOr<Certificate> c = Certificate::FromFile(config.ca_certificate); !c.ok()) {
    out.push_back(Fail("CA certificate", std::string(c.status().message()),
                       "site.ca_certificate must name the federation's ca.pem"));
  } else if (!c->IsCa()) {
    out.push_back(Fail(
        "CA certificate",
        absl::StrCat(config.ca_certificate, " holds ", Who(*c), ", which is not a CA certificate"),
        "site.ca_certificate must name the federation's ca.pem"));
  } else {
    ca = std::move(*c);
    out.push_back(Ok("CA certificate", absl::StrCat(config.ca_certificate, ": ", Who(*ca))));
  }
  if (cert && ca) {
    // The signature and names alone: at a moment both certificates are valid, if there is one.
    absl::Time at = std::max(cert->NotBefore(), ca->NotBefore());
    if (at > std::min(cert->NotAfter(), ca->NotAfter())) at = options.now;
    if (Status st = VerifyCertificate(*cert, *ca, at); !st.ok()) {
      out.push_back(Fail("certificate issuer", std::string(st.message()),
                         "this certificate is from another federation or CA: ask the operator "
                         "for the certificate signed by this federation's CA, or the CA that "
                         "signed it"));
    } else {
      out.push_back(
          Ok("certificate issuer", absl::StrCat("signed by '", ca->Subject().common_name, "'")));
      if (Status usage = VerifyCertificate(*cert, *ca, at, CertificateUsage::kTlsClient);
          !usage.ok()) {
        out.push_back(Fail("certificate usage", std::string(usage.message()),
                           "the certificate must allow TLS client authentication "
                           "(extendedKeyUsage clientAuth): have the request signed by `hansa ca "
                           "sign`, which sets it"));
      } else {
        out.push_back(Ok("certificate usage", "allowed for TLS client authentication"));
      }
    }
  }
  if (cert) out.push_back(ValidityLine("certificate validity", *cert, options, renew_site));
  if (ca) out.push_back(ValidityLine("CA validity", *ca, options, renew_ca));
  CheckKeyFile(config, cert, &out);
  return out;
}

std::vector<CheckResult> CheckDataFiles(const SiteConfig& config) {
  std::vector<CheckResult> out;
  if (config.format == "idx") {
    out.push_back(CheckIdxPair("train", config.train_images, config.train_labels));
    out.push_back(CheckIdxPair("test", config.test_images, config.test_labels));
  } else if (config.format == "csv") {
    out.push_back(CheckCsvFile("train", config.train_file, config.csv));
    if (!config.test_file.empty()) {
      out.push_back(CheckCsvFile("test", config.test_file, config.csv));
    }
  } else {
    out.push_back(CheckDataFolder("train", config.train_dir, config));
    out.push_back(CheckDataFolder("test", config.test_dir, config));
  }
  for (const std::string& file : config.model_files) {
    StatusOr<std::string> bytes = ReadFile(file, config.policy.max_model_bytes);
    if (!bytes.ok()) {
      out.push_back(Fail("model file", std::string(bytes.status().message()),
                         "[model] files must name readable TorchScript files within "
                         "policy.max_model_bytes"));
      continue;
    }
    const std::string name = ScriptModelName(ToHex(Sha256(*bytes)));
    const auto& allowed = config.policy.allowed_models;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      out.push_back(Warn("model file",
                         absl::StrCat(file, " is ", name,
                                      ", which [policy] allowed_models does "
                                      "not list: the site will not load it"),
                         "if the site's data-protection officer approved this model, add its "
                         "hash to [policy] allowed_models"));
    } else {
      out.push_back(Ok("model file", absl::StrCat(file, " (", Bytes(bytes->size()), ") is ", name,
                                                  ", allowed by the policy")));
    }
  }
  std::error_code ec;
  const std::string& state = config.state_dir;
  const std::string parent = fs::path(state).parent_path().string();
  if (fs::is_directory(state, ec) ? access(state.c_str(), W_OK | X_OK) != 0
                                  : access(parent.empty() ? "." : parent.c_str(), W_OK) != 0) {
    out.push_back(Fail("state directory",
                       absl::StrCat(state, " is not writable (nor can it be created)"),
                       "site.state_dir must be writable by the user that runs hansa-client"));
  } else {
    out.push_back(
        Ok("state directory",
           absl::StrCat(state, fs::exists(state, ec) ? " is writable" : " will be created")));
  }
  return out;
}

CheckResult CheckClock(const SiteConfig& config, const DoctorOptions& options) {
  std::vector<std::string> inside;
  const std::pair<const char*, const std::string*> certificates[] = {
      {"the site certificate", &config.certificate},
      {"the CA certificate", &config.ca_certificate}};
  for (const auto& [what, path] : certificates) {
    StatusOr<Certificate> cert = Certificate::FromFile(*path);
    if (!cert.ok()) continue;  // named by the certificate checks
    if (options.now < cert->NotBefore() || options.now > cert->NotAfter()) {
      return Fail(
          "clock",
          absl::StrCat("this machine's time ", FormatCertificateTime(options.now), " lies outside ",
                       what, "'s validity (", FormatCertificateTime(cert->NotBefore()), " to ",
                       FormatCertificateTime(cert->NotAfter()), ")"),
          "if the clock is wrong, synchronise it (timedatectl set-ntp true); if it is "
          "right, the certificate must be renewed");
    }
    inside.push_back(what);
  }
  std::string detail = absl::StrCat(FormatCertificateTime(options.now));
  if (!inside.empty()) absl::StrAppend(&detail, ", within ", absl::StrJoin(inside, " and "));
  StatusOr<bool> synced =
      options.clock_synchronized ? options.clock_synchronized() : TimedatectlSynchronized();
  if (!synced.ok()) {
    return Ok("clock",
              absl::StrCat(detail, "; synchronisation not checked: ", synced.status().message()));
  }
  if (!*synced) {
    return Warn("clock", absl::StrCat(detail, "; not synchronised (NTPSynchronized=no)"),
                "enable time synchronisation (timedatectl set-ntp true, or chrony): "
                "certificates and round deadlines depend on the clock");
  }
  return Ok("clock", absl::StrCat(detail, "; synchronised (NTP)"));
}

std::string EffectiveProxy(const SiteConfig& config, const DoctorOptions& options,
                           std::string* source) {
  if (!config.proxy.empty()) {
    *source = "[network] proxy";
    return config.proxy;
  }
  auto env = [&](const std::string& name) -> std::optional<std::string> {
    if (options.getenv) return options.getenv(name);
    const char* v = std::getenv(name.c_str());
    return v == nullptr ? std::nullopt : std::optional<std::string>(v);
  };
  for (const char* name : {"grpc_proxy", "https_proxy", "http_proxy"}) {
    std::optional<std::string> value = env(name);
    if (!value || value->empty()) continue;
    std::string host, port;
    SplitHostPort(config.coordinator, &host, &port);
    for (const char* no : {"no_grpc_proxy", "no_proxy"}) {
      if (std::optional<std::string> list = env(no); list && ListedInNoProxy(host, *list)) {
        *source = absl::StrCat("none: ", no, " lists ", host);
        return "";
      }
    }
    *source = absl::StrCat("environment variable ", name);
    return absl::StrContains(*value, "://") ? *value : absl::StrCat("http://", *value);
  }
  *source = "no [network] proxy, no grpc_proxy, https_proxy or http_proxy";
  return "";
}

std::vector<CheckResult> CheckDns(const SiteConfig& config, const std::string& proxy) {
  std::vector<CheckResult> out;
  std::string host, port;
  if (!SplitHostPort(config.coordinator, &host, &port)) {
    out.push_back(Fail("DNS",
                       absl::StrCat("site.coordinator '", config.coordinator, "' is not host:port"),
                       "set site.coordinator to the host:port the federation operator gave"));
    return out;
  }
  if (IsIpAddress(host)) {
    out.push_back(Ok("DNS", absl::StrCat(host, " is an IP address: nothing to resolve")));
  } else if (StatusOr<AddrInfoPtr> found = Resolve(host, port); found.ok()) {
    out.push_back(Ok("DNS", absl::StrCat(host, " resolves to ", AddressList(found->get()))));
  } else if (!proxy.empty()) {
    out.push_back(Warn("DNS",
                       absl::StrCat(found.status().message(),
                                    " on this machine; the proxy resolves it for the tunnel"),
                       "nothing if the route check below passes; otherwise ask the network team "
                       "whether the proxy can resolve it"));
  } else {
    out.push_back(Fail("DNS", std::string(found.status().message()),
                       absl::StrCat("check the name in site.coordinator and this machine's DNS "
                                    "(/etc/resolv.conf); behind a proxy set [network] proxy")));
  }
  std::string proxy_host, proxy_port;
  if (!proxy.empty() && SplitProxyUrl(proxy, &proxy_host, &proxy_port) &&
      !IsIpAddress(proxy_host)) {
    if (StatusOr<AddrInfoPtr> found = Resolve(proxy_host, proxy_port); found.ok()) {
      out.push_back(Ok(
          "DNS", absl::StrCat("proxy ", proxy_host, " resolves to ", AddressList(found->get()))));
    } else {
      out.push_back(Fail("DNS", absl::StrCat("proxy ", found.status().message()),
                         "check the proxy's name with the network team"));
    }
  }
  return out;
}

CheckResult CheckRoute(const SiteConfig& config, const std::string& proxy,
                       const DoctorOptions& options) {
  std::string host, port, address;
  if (!SplitHostPort(config.coordinator, &host, &port)) {
    return Fail("route",
                absl::StrCat("site.coordinator '", config.coordinator, "' is not host:port"),
                "set site.coordinator to the host:port the federation operator gave");
  }
  if (proxy.empty()) {
    StatusOr<Socket> s = ConnectTcp(host, port, options.network_timeout, &address);
    if (s.ok()) {
      return Ok("route", absl::StrCat("TCP connection to ", config.coordinator, " (", address,
                                      "), no proxy"));
    }
    const std::string why(s.status().message());
    return Fail(
        "route", absl::StrCat("no TCP connection to ", config.coordinator, ": ", why),
        absl::StrContains(why, "refused")
            ? "nothing listens there: is the coordinator running, and is the port right?"
            : "a firewall may drop it: ask the network team for outbound TCP to this host and "
              "port, or for the HTTP CONNECT proxy to use ([network] proxy)");
  }
  if (Status st = ValidateProxyUrl(proxy); !st.ok()) {
    return Fail("route", std::string(st.message()),
                "give the proxy as http://host:port ([network] proxy or https_proxy)");
  }
  std::string proxy_host, proxy_port;
  SplitProxyUrl(proxy, &proxy_host, &proxy_port);
  StatusOr<Socket> s = ConnectTcp(proxy_host, proxy_port, options.network_timeout, &address);
  if (!s.ok()) {
    return Fail("route",
                absl::StrCat("no TCP connection to the proxy ", proxy, ": ", s.status().message()),
                "check the proxy's address and port with the network team");
  }
  StatusOr<std::string> answer = AskForTunnel(*s, config.coordinator);
  if (!answer.ok()) {
    return Fail("route",
                absl::StrCat("the proxy ", proxy, " gave no tunnel to ", config.coordinator, ": ",
                             answer.status().message()),
                "is it an HTTP proxy that supports CONNECT? ask the network team");
  }
  const size_t space = answer->find(' ');
  const std::string code = space == std::string::npos ? "" : answer->substr(space + 1, 3);
  if (code == "200") {
    return Ok("route", absl::StrCat("the proxy ", proxy, " answered \"", *answer, "\" to CONNECT ",
                                    config.coordinator));
  }
  std::string fix =
      "ask the network team to allow CONNECT from this host to the coordinator's host and port";
  if (code == "407")
    fix =
        "the proxy wants a password, which Hansa does not send: ask for a rule "
        "that lets this host CONNECT without one";
  if (!code.empty() && code[0] == '5') {
    fix =
        "the proxy could not reach the coordinator: check site.coordinator, and ask the "
        "network team whether the proxy may reach it";
  }
  return Fail("route",
              absl::StrCat("the proxy ", proxy, " refused the CONNECT to ", config.coordinator,
                           ": it answered \"", *answer, "\""),
              fix);
}

CheckResult CheckTlsHandshake(const SiteConfig& config, const std::string& proxy, bool route_ok,
                              const DoctorOptions& options) {
  if (!route_ok) {
    return Fail(
        "TLS",
        absl::StrCat("not attempted: the TCP route to ", config.coordinator, " failed (see route)"),
        "fix the route first");
  }
  StatusOr<TlsFiles> files =
      LoadTlsFiles(config.certificate, config.private_key, config.ca_certificate);
  if (!files.ok()) {
    return Fail("TLS", absl::StrCat("not attempted: ", files.status().message()),
                "fix the certificate checks above first");
  }
  if (Status st = EnforceTls13Only(); !st.ok()) {
    return Fail("TLS", absl::StrCat("not attempted: ", st.message()), "report this as a bug");
  }
  std::shared_ptr<CertificatePin> pin;
  const std::string& pinned = config.policy.coordinator_fingerprint;
  if (!pinned.empty()) pin = std::make_shared<CertificatePin>(pinned);
  StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeClientCredentials(*files, pin);
  if (!creds.ok()) {
    return Fail("TLS", absl::StrCat("not attempted: ", creds.status().message()),
                "fix the certificate checks above first");
  }
  grpc::ChannelArguments args = SiteChannelArguments(4 << 20);
  if (!config.proxy.empty()) args.SetString(GRPC_ARG_HTTP_PROXY, config.proxy);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(config.coordinator, *creds, args);
  const auto deadline =
      std::chrono::system_clock::now() + absl::ToChronoMilliseconds(options.network_timeout);
  bool ready = false;
  for (;;) {
    const grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) {
      ready = true;
      break;
    }
    if (pin && !pin->last_refused().empty()) break;
    const auto now = std::chrono::system_clock::now();
    if (now >= deadline) break;
    channel->WaitForStateChange(state, std::min(deadline, now + std::chrono::milliseconds(200)));
  }
  if (ready) {
    if (!pin) {
      return Warn("TLS",
                  absl::StrCat("mutual TLS 1.3 with ", config.coordinator,
                               " established; no coordinator fingerprint is pinned, so any "
                               "certificate the federation CA signed is trusted"),
                  "set [policy] coordinator_fingerprint to the fingerprint the federation "
                  "operator sent with the certificate");
    }
    const std::string established = absl::StrCat(
        "mutual TLS 1.3 with ", config.coordinator,
        " established; the coordinator's certificate is the pinned one (sha256 ", pinned, ")");
    // The pinned certificate's end, as the handshake showed it: the day this site stops
    // reaching the coordinator unless its operator renews the certificate in time.
    const absl::Time until = pin->pinned_not_after();
    if (until != absl::InfiniteFuture() && until - options.now < options.expiry_warning) {
      return Warn("TLS",
                  absl::StrCat(established, " but it expires on ", FormatCertificateTime(until),
                               " (in ", Days(until - options.now), ")"),
                  "ask the federation operator when the coordinator's certificate will be "
                  "renewed and for the new fingerprint; this site must pin it then");
    }
    return Ok("TLS", absl::StrCat(established, ", valid until ", FormatCertificateTime(until),
                                  "; not joined"));
  }
  if (pin && !pin->last_refused().empty()) {
    return Fail("TLS",
                absl::StrCat("the coordinator presents certificate ", pin->last_refused(),
                             " but site.toml pins ", pinned),
                "ask the federation operator for the current fingerprint and set [policy] "
                "coordinator_fingerprint to it (if the operator did not renew the "
                "coordinator's certificate, something else answers at this address: do not "
                "change the pin)");
  }
  const std::string failed =
      absl::StrCat("the TCP route is open but no TLS 1.3 handshake with ", config.coordinator,
                   " completed within ", absl::FormatDuration(options.network_timeout));
  TlsDiagnosis diagnosis = DiagnoseTls(config, *files, proxy, options);
  OPENSSL_cleanse(files->private_key_pem.data(), files->private_key_pem.size());
  if (!diagnosis.why.empty()) {
    return Fail("TLS", absl::StrCat(failed, ": ", diagnosis.why), std::move(diagnosis.fix));
  }
  return Fail(
      "TLS", failed,
      "the coordinator's certificate may come from another CA or not name the host in "
      "site.coordinator; the coordinator may refuse this site's certificate (revoked, or from "
      "another federation: its log says which); a TLS-inspecting proxy breaks mutual TLS (ask "
      "the network team to exempt this destination from inspection)");
}

std::vector<CheckResult> RunDoctor(const std::string& site_toml, const DoctorOptions& options) {
  std::vector<CheckResult> out;
  SiteConfig config;
  out.push_back(CheckConfig(site_toml, &config));
  if (out.back().level == CheckLevel::kFail) return out;
  auto append = [&out](std::vector<CheckResult> more) {
    for (CheckResult& r : more) out.push_back(std::move(r));
  };
  append(CheckCertificates(config, options));
  append(CheckDataFiles(config));
  out.push_back(CheckClock(config, options));
  std::string source;
  const std::string proxy = EffectiveProxy(config, options, &source);
  out.push_back(Ok("proxy", proxy.empty() ? absl::StrCat("none: direct (", source, ")")
                                          : absl::StrCat(proxy, " (", source, ")")));
  append(CheckDns(config, proxy));
  out.push_back(CheckRoute(config, proxy, options));
  out.push_back(CheckTlsHandshake(config, proxy, out.back().level != CheckLevel::kFail, options));
  return out;
}

}  // namespace hansa
