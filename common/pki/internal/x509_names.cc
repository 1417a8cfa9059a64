#include "common/pki/internal/x509_names.h"

#include <arpa/inet.h>

#include "common/pki/authority.h"

namespace hansa::pki_internal {
namespace {

Status AddNameEntry(X509_NAME* name, const char* field, const std::string& value) {
  if (value.empty()) return absl::OkStatus();
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    return OpenSslError(absl::StrCat("setting ", field, " = '", value, "'"));
  }
  return absl::OkStatus();
}

std::string NameEntry(const X509_NAME* name, int nid) {
  int index = X509_NAME_get_index_by_NID(name, nid, -1);
  if (index < 0) return std::string();
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) {
    ERR_clear_error();
    return std::string();
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

Status PushName(GENERAL_NAMES* names, GeneralNamePtr name) {
  if (sk_GENERAL_NAME_push(names, name.get()) == 0) return OpenSslError("adding a name");
  name.release();  // now owned by `names`
  return absl::OkStatus();
}

}  // namespace

Status AddSubjectName(X509_NAME* name, const SubjectName& subject,
                      const std::string& organizational_unit) {
  RETURN_IF_ERROR(AddNameEntry(name, "C", subject.country));
  RETURN_IF_ERROR(AddNameEntry(name, "O", subject.organization));
  RETURN_IF_ERROR(AddNameEntry(name, "OU", organizational_unit));
  return AddNameEntry(name, "CN", subject.common_name);
}

SubjectName ReadSubjectName(const X509_NAME* name) {
  return SubjectName{NameEntry(name, NID_commonName), NameEntry(name, NID_organizationName),
                     NameEntry(name, NID_countryName)};
}

std::string ReadOrganizationalUnit(const X509_NAME* name) {
  return NameEntry(name, NID_organizationalUnitName);
}

std::string IpToString(const ASN1_OCTET_STRING* ip) {
  char buf[INET6_ADDRSTRLEN] = {0};
  const unsigned char* data = ASN1_STRING_get0_data(ip);
  int len = ASN1_STRING_length(ip);
  if (len == 4) inet_ntop(AF_INET, data, buf, sizeof(buf));
  if (len == 16) inet_ntop(AF_INET6, data, buf, sizeof(buf));
  return buf;
}

StatusOr<GeneralNamesPtr> MakeAltNames(const std::vector<std::string>& dns_names,
                                       const std::vector<std::string>& ip_addresses) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return OpenSslError("allocating subjectAltName");
  for (const std::string& dns : dns_names) {
    RETURN_IF_ERROR(ValidateDnsName(dns));
    GeneralNamePtr name(GENERAL_NAME_new());
    ASN1_IA5STRING* value = ASN1_IA5STRING_new();
    if (!name || value == nullptr ||
        ASN1_STRING_set(value, dns.data(), static_cast<int>(dns.size())) != 1) {
      ASN1_IA5STRING_free(value);
      return OpenSslError("encoding a DNS name");
    }
    GENERAL_NAME_set0_value(name.get(), GEN_DNS, value);
    RETURN_IF_ERROR(PushName(names.get(), std::move(name)));
  }
  for (const std::string& ip : ip_addresses) {
    if (!IsIpAddress(ip)) {
      return absl::InvalidArgumentError(absl::StrCat("'", ip, "' is not an IP address"));
    }
    GeneralNamePtr name(GENERAL_NAME_new());
    ASN1_OCTET_STRING* value = a2i_IPADDRESS(ip.c_str());
    if (!name || value == nullptr) {
      ASN1_OCTET_STRING_free(value);
      return OpenSslError(absl::StrCat("encoding IP address ", ip));
    }
    GENERAL_NAME_set0_value(name.get(), GEN_IPADD, value);
    RETURN_IF_ERROR(PushName(names.get(), std::move(name)));
  }
  return names;
}

}  // namespace hansa::pki_internal
