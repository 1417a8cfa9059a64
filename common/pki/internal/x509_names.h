// Subject names and subjectAltNames in OpenSSL's form, shared by certificates, the CA and
// signing requests so that each is written and read one way. Not part of the public API.
// Functions only; any thread may call them.
#pragma once

#include <string>
#include <vector>

#include "common/pki/certificate.h"
#include "common/pki/internal/openssl_util.h"
#include "common/status/status.h"

namespace hansa::pki_internal {

// Adds C, O, OU and CN (each when not empty) to `name`.
Status AddSubjectName(X509_NAME* name, const SubjectName& subject,
                      const std::string& organizational_unit = std::string());
// C, O and CN of `name`; absent or undecodable fields are empty.
SubjectName ReadSubjectName(const X509_NAME* name);
// The OU of `name`; empty when absent or undecodable.
std::string ReadOrganizationalUnit(const X509_NAME* name);
// "127.0.0.1", "::1"; empty for an address that is neither 4 nor 16 bytes long.
std::string IpToString(const ASN1_OCTET_STRING* ip);
// subjectAltName entries: the DNS names (checked by ValidateDnsName), then the IP literals.
// InvalidArgument for a bad host name or an IP that does not parse.
StatusOr<GeneralNamesPtr> MakeAltNames(const std::vector<std::string>& dns_names,
                                       const std::vector<std::string>& ip_addresses);

}  // namespace hansa::pki_internal
