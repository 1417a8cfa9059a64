// The CA certificate (public part only) of the federation whose real logs, certificates and
// configs seed the corpora of audit_fuzz and pki_fuzz: a federation provisioned by the
// integration tests (Ed25519, valid 2026-12-05 to 2036-12-04). enrollment_fuzz reads revocation
// lists against it; to enrollment_reply_fuzz it is another federation's CA. Header-only;
// FederationCa() loads it once per process (single-threaded like libFuzzer).
#pragma once

#include <cstdlib>
#include <utility>

#include "common/pki/certificate.h"

namespace hansa::fuzz {

inline constexpr char kFederationCa[] = R"(-----BEGIN CERTIFICATE-----
MIIBdDCCASagAwIBAgIQEbouMd8BEHWQkpmk2Yv0TTAFBgMrZXAwOjELMAkGA1UE
BhMCREUxGTAXBgNVBAoMEFRlc3QgQ29vcmRpbmF0b3IxEDAOBgNVBAMMB3Rlc3Qg
Q0EwHhcNMjYxMjA1MDY1NTI5WhcNMzYxMjA0MDc1NTI5WjA6MQswCQYDVQQGEwJE
RTEZMBcGA1UECgwQVGVzdCBDb29yZGluYXRvcjEQMA4GA1UEAwwHdGVzdCBDQTAq
MAUGAytlcAMhABSLCKKMnk8liGw13N5FFppkqW01PZzMJjuwUHqjb2EPo0IwQDAP
BgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUVKL4VUv/
BJognRABtFgnAvXdIXgwBQYDK2VwA0EAWEN289vcG41tXp0ZmloZipVNWyJfjNPx
ZIRY28bJzpfxvX3A3rVuxL5nBXUJ0nr3RgPtOJ9b4VU195mlaEaOCg==
-----END CERTIFICATE-----
)";

// kFederationCa, parsed on first use; aborts if it does not parse.
inline const Certificate& FederationCa() {
  static const Certificate* ca = [] {
    auto ca = Certificate::FromPem(kFederationCa);
    if (!ca.ok()) abort();
    return new Certificate(*std::move(ca));
  }();
  return *ca;
}

}  // namespace hansa::fuzz
