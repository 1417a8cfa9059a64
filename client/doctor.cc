// hansa doctor: the config, certificate and clock checks, and the order of all checks. The data
// checks are in doctor_data.cc, the network ones in doctor_network.cc.
#include "client/doctor.h"

#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/internal/doctor_checks.h"
#include "common/fileio/fileio.h"
#include "common/pki/certificate.h"
#include "common/pki/key.h"

namespace hansa {
namespace doctor_internal {

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

std::string Who(const Certificate& cert) {
  const SubjectName s = cert.Subject();
  return absl::StrCat("'", s.common_name, "' (O=", s.organization, ", C=", s.country, ")");
}

}  // namespace doctor_internal

namespace {

using doctor_internal::Bytes;
using doctor_internal::Days;
using doctor_internal::Fail;
using doctor_internal::Ok;
using doctor_internal::Warn;
using doctor_internal::Who;

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
