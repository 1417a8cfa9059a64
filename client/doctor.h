// `hansa doctor site.toml`: the checks a site's IT staff run on the site machine before (or
// instead of) starting hansa-client, each ending in OK, WARN or FAIL and, for the last two, what
// to fix. The config, the certificate and key, the data files, the clock, DNS, the TCP route to
// the coordinator (directly or through the HTTP CONNECT proxy) and the mutual TLS 1.3 handshake
// with the pinned fingerprint.
//
// The doctor never joins the federation: it opens a TLS connection and closes it without a call,
// so the coordinator's audit log gets no record of it. Each check is a plain function over a
// SiteConfig so that tests can run it alone against temporary files and loopback sockets.
// Everything here runs on the caller's thread; every network step has a timeout.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/site_config.h"
#include "common/status/status.h"

namespace hansa {

enum class CheckLevel { kOk, kWarn, kFail };

// "OK", "WARN" or "FAIL".
const char* CheckLevelName(CheckLevel level);

// One line of the doctor's output.
struct CheckResult {
  CheckLevel level = CheckLevel::kOk;
  std::string check;   // "certificate", "data", "route", ...
  std::string detail;  // what was found
  std::string fix;     // what to do; empty for OK
};

// "OK    certificate: ..." and, for WARN and FAIL, a second line "      fix: ...".
std::string FormatCheck(const CheckResult& result);

struct DoctorOptions {
  absl::Time now = absl::Now();
  // A certificate that expires sooner than this is a WARN.
  absl::Duration expiry_warning = absl::Hours(24 * 30);
  // Each of the TCP connection, the proxy's answer and the TLS handshake.
  absl::Duration network_timeout = absl::Seconds(10);
  // Whether this machine's clock is synchronised (NTP): true/false, or an error saying why it
  // cannot tell (then the clock check notes that it skipped this part). Default:
  // `timedatectl show -p NTPSynchronized --value`.
  std::function<StatusOr<bool>()> clock_synchronized;
  // The environment variable lookup (getenv by default), for the proxy variables.
  std::function<std::optional<std::string>(const std::string& name)> getenv;
};

// The config: it parses. On success *config holds it.
CheckResult CheckConfig(const std::string& path, SiteConfig* config);

// The certificate, the CA certificate and the private key: readable, the certificate issued by
// the CA, valid now, not expiring within options.expiry_warning (WARN), allowed for TLS client
// authentication, matching the key; the key file's mode 0600 or stricter (WARN otherwise).
std::vector<CheckResult> CheckCertificates(const SiteConfig& config, const DoctorOptions& options);

// The data files for config.format exist and are readable, with their sizes; IDX headers are
// parsed (magic number, dimensions, images and labels agreeing in count), a CSV's header row
// is read for the label column, image and DICOM folders are listed (class folders, files, the
// manifest). Model files ([model] files) are hashed against [policy] allowed_models (WARN).
// The data are not decoded: hansa-client does that when it starts.
std::vector<CheckResult> CheckDataFiles(const SiteConfig& config);

// This machine's clock: inside the site's and the CA's certificate validity, and synchronised
// (options.clock_synchronized; a note when it cannot be told).
CheckResult CheckClock(const SiteConfig& config, const DoctorOptions& options);

// The HTTP CONNECT proxy the site uses: [network] proxy, else grpc_proxy, https_proxy or
// http_proxy from the environment (as gRPC reads them), as "http://host:port"; empty for none.
// *source names where it came from.
std::string EffectiveProxy(const SiteConfig& config, const DoctorOptions& options,
                           std::string* source);

// DNS: the coordinator's host resolves (or is an IP address); with a proxy, the proxy's host
// must resolve and the coordinator's need not (the proxy resolves it: a WARN at most).
std::vector<CheckResult> CheckDns(const SiteConfig& config, const std::string& proxy);

// The route: a TCP connection to the coordinator's host:port, or to the proxy and an HTTP
// CONNECT to the coordinator through it (the proxy's status line is reported).
CheckResult CheckRoute(const SiteConfig& config, const std::string& proxy,
                       const DoctorOptions& options);

// The TLS handshake: a gRPC channel with the site's certificate, the federation CA and the
// pinned coordinator fingerprint, waited on until connected (no call is made). On failure says
// whether the pin refused the coordinator's certificate or, when the TLS failed otherwise, what
// a plain OpenSSL handshake through the same route (`proxy`, EffectiveProxy's) shows: the
// coordinator's certificate not signed by ca.pem, expired or not naming the host, or the
// coordinator refusing this site's certificate. WARN when no fingerprint is pinned, or when
// the pinned certificate expires within options.expiry_warning. Not attempted (a FAIL) when
// `route_ok` is false: the TCP route had already failed.
CheckResult CheckTlsHandshake(const SiteConfig& config, const std::string& proxy, bool route_ok,
                              const DoctorOptions& options);

// All of the above in order; stops after the config when it does not parse. Makes this process
// accept TLS 1.3 only (EnforceTls13Only) before the handshake.
std::vector<CheckResult> RunDoctor(const std::string& site_toml, const DoctorOptions& options);

// True when some result is a FAIL.
bool AnyFailed(const std::vector<CheckResult>& results);

}  // namespace hansa
