// hansa doctor: the proxy, DNS, the TCP route and the TLS handshake (doctor.h), and why a
// handshake fails, seen by a plain OpenSSL client.
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
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/doctor.h"
#include "client/internal/doctor_checks.h"
#include "client/link/proxy_url.h"
#include "client/link/tcp_tunnel.h"
#include "common/net/rpc.h"
#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "common/pki/certificate.h"

namespace hansa {
namespace {

using doctor_internal::Bytes;
using doctor_internal::Days;
using doctor_internal::Fail;
using doctor_internal::Ok;
using doctor_internal::Warn;
using doctor_internal::Who;

// ---- network helpers ----

using Socket = TcpSocket;

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

std::string AddressList(const addrinfo* list) {
  std::vector<std::string> seen;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    std::string text = AddressText(a->ai_addr);
    if (std::find(seen.begin(), seen.end(), text) == seen.end()) seen.push_back(std::move(text));
  }
  return absl::StrJoin(seen, ", ");
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
  ASSIGN_OR_RETURN(std::string answer, AskProxyForTunnel(s, config.coordinator));
  if (!TunnelOpened(answer)) {
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

// A TLS 1.3 client context presenting the site's certificate and key, accepting any server
// certificate (DiagnoseTls judges it itself); null when the material does not load.
std::unique_ptr<SSL_CTX, SslCtxFree> SiteTlsContext(const TlsFiles& files) {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return nullptr;
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  std::unique_ptr<X509, X509Free> cert(
      PEM_read_bio_X509(MemoryBio(files.certificate_pem).get(), nullptr, nullptr, nullptr));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(MemoryBio(files.private_key_pem).get(), nullptr, nullptr, nullptr));
  if (!cert || !key || SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) {
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  return ctx;
}

// The coordinator's certificate `peer` as this site's gRPC channel judges it: issued by ca.pem,
// valid now, for TLS servers, naming `host`. Empty `why` when it passes.
TlsDiagnosis JudgeCoordinatorCertificate(const SiteConfig& config, const TlsFiles& files,
                                         X509* peer, const std::string& host,
                                         const DoctorOptions& options) {
  StatusOr<Certificate> coordinator = Certificate::FromPem([&] {
    std::unique_ptr<BIO, BioFree> out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(out.get(), peer);
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
  return {};
}

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
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx = SiteTlsContext(files);
  if (!ctx) return {};
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
  if (TlsDiagnosis judged = JudgeCoordinatorCertificate(config, files, peer.get(), host, options);
      !judged.why.empty()) {
    return judged;
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

// Wipes a secret string when the scope ends.
struct WipeOnExit {
  std::string* secret;
  ~WipeOnExit() { OPENSSL_cleanse(secret->data(), secret->size()); }
};

// Opens a gRPC channel with the site's credentials and `pin` (and [network] proxy; gRPC reads
// the environment's proxy variables itself) and waits until it is connected, the pin refused
// the coordinator's certificate, or `timeout` passed. No call is made. True when connected.
StatusOr<bool> ConnectOnce(const SiteConfig& config, const TlsFiles& files,
                           const std::shared_ptr<CertificatePin>& pin, absl::Duration timeout) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                   MakeClientCredentials(files, pin));
  grpc::ChannelArguments args = SiteChannelArguments(4 << 20);
  if (!config.proxy.empty()) args.SetString(GRPC_ARG_HTTP_PROXY, config.proxy);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(config.coordinator, creds, args);
  const auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
  for (;;) {
    const grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return true;
    if (pin && !pin->last_refused().empty()) return false;
    const auto now = std::chrono::system_clock::now();
    if (now >= deadline) return false;
    channel->WaitForStateChange(state, std::min(deadline, now + std::chrono::milliseconds(200)));
  }
}

// The TLS line once the handshake passed: WARN without a pin or when the pinned certificate
// expires soon.
CheckResult HandshakePassed(const SiteConfig& config, const CertificatePin* pin,
                            const DoctorOptions& options) {
  if (!pin) {
    return Warn("TLS",
                absl::StrCat("mutual TLS 1.3 with ", config.coordinator,
                             " established; no coordinator fingerprint is pinned, so any "
                             "certificate the federation CA signed is trusted"),
                "set [policy] coordinator_fingerprint to the fingerprint the federation "
                "operator sent with the certificate");
  }
  const std::string established =
      absl::StrCat("mutual TLS 1.3 with ", config.coordinator,
                   " established; the coordinator's certificate is the pinned one (sha256 ",
                   pin->fingerprint(), ")");
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

}  // namespace

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
  } else if (StatusOr<AddrInfoPtr> found = ResolveTcp(host, port); found.ok()) {
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
    if (StatusOr<AddrInfoPtr> found = ResolveTcp(proxy_host, proxy_port); found.ok()) {
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
  StatusOr<std::string> answer = AskProxyForTunnel(*s, config.coordinator);
  if (!answer.ok()) {
    return Fail("route",
                absl::StrCat("the proxy ", proxy, " gave no tunnel to ", config.coordinator, ": ",
                             answer.status().message()),
                "is it an HTTP proxy that supports CONNECT? ask the network team");
  }
  const size_t space = answer->find(' ');
  const std::string code = space == std::string::npos ? "" : answer->substr(space + 1, 3);
  if (TunnelOpened(*answer)) {
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
  const WipeOnExit wipe{&files->private_key_pem};
  if (Status st = EnforceTls13Only(); !st.ok()) {
    return Fail("TLS", absl::StrCat("not attempted: ", st.message()), "report this as a bug");
  }
  std::shared_ptr<CertificatePin> pin;
  const std::string& pinned = config.policy.coordinator_fingerprint;
  if (!pinned.empty()) pin = std::make_shared<CertificatePin>(pinned);
  StatusOr<bool> ready = ConnectOnce(config, *files, pin, options.network_timeout);
  if (!ready.ok()) {
    return Fail("TLS", absl::StrCat("not attempted: ", ready.status().message()),
                "fix the certificate checks above first");
  }
  if (*ready) return HandshakePassed(config, pin.get(), options);
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

}  // namespace hansa
