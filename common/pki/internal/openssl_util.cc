#include "common/pki/internal/openssl_util.h"

#include <cctype>
#include <climits>

#include "common/status/check.h"

namespace hansa::pki_internal {

Status OpenSslError(std::string_view what) {
  unsigned long code = ERR_peek_last_error();
  std::string detail = "no OpenSSL error detail";
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    detail = buf;
  }
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(std::string(what), ": ", detail));
}

BioPtr MemoryBio(std::string_view data) {
  HANSA_CHECK(data.size() <= static_cast<size_t>(INT_MAX));
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  if (size <= 0 || data == nullptr) return std::string();
  return std::string(data, static_cast<size_t>(size));
}

std::string SerialToHex(const ASN1_INTEGER* serial) {
  BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  HANSA_CHECK(bn != nullptr);
  char* hex = BN_bn2hex(bn.get());
  std::string out(hex);
  OPENSSL_free(hex);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace hansa::pki_internal
