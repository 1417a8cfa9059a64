#include "common/pki/revocation.h"

#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "absl/strings/str_join.h"
#include "common/fileio/fileio.h"
#include "common/pki/internal/openssl_util.h"
#include "common/status/check.h"

namespace hansa {
namespace {

using pki_internal::Asn1IntegerPtr;
using pki_internal::BignumPtr;
using pki_internal::BioContents;
using pki_internal::BioPtr;
using pki_internal::MemoryBio;
using pki_internal::OpenSslError;
using pki_internal::X509ExtensionPtr;

using X509CrlPtr = std::unique_ptr<X509_CRL, pki_internal::Deleter<X509_CRL, X509_CRL_free>>;
using X509RevokedPtr =
    std::unique_ptr<X509_REVOKED, pki_internal::Deleter<X509_REVOKED, X509_REVOKED_free>>;
using Asn1EnumeratedPtr =
    std::unique_ptr<ASN1_ENUMERATED, pki_internal::Deleter<ASN1_ENUMERATED, ASN1_ENUMERATED_free>>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, pki_internal::Deleter<ASN1_TIME, ASN1_TIME_free>>;

constexpr size_t kMaxRevocationFileBytes = 16 << 20;

// RFC 5280 CRLReason codes by name; code 7 is unused.
constexpr const char* kReasonNames[] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", nullptr,
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};
constexpr long kReasonCount = sizeof(kReasonNames) / sizeof(kReasonNames[0]);

// What Issue accepts: the reasons an operator gives for a participant certificate.
bool IsIssuableReason(const std::string& reason, long* code) {
  for (long c : {0L, 1L, 3L, 4L, 5L}) {
    if (reason == kReasonNames[c]) {
      *code = c;
      return true;
    }
  }
  return false;
}

// Lowercase, without leading zeros ("0A1F" and "a1f" name the same serial).
std::string NormalizeSerial(std::string_view hex) {
  size_t start = 0;
  while (start + 1 < hex.size() && hex[start] == '0') ++start;
  std::string out(hex.substr(start));
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
  });
}

StatusOr<absl::Time> ReadTime(const ASN1_TIME* t, const char* what) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("the revocation list's ", what, " cannot be read (a damaged list)"));
  }
  return absl::FromTimeT(timegm(&tm));
}

Status AddEntry(X509_CRL* crl, const RevokedEntry& entry) {
  long code = 0;
  if (!IsIssuableReason(entry.reason, &code)) {
    return absl::InvalidArgumentError(absl::StrCat("revocation reason '", entry.reason,
                                                   "' is not one of ",
                                                   absl::StrJoin(RevocationReasonNames(), ", ")));
  }
  if (!IsHex(entry.serial_hex)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "serial '", entry.serial_hex, "' is not a hexadecimal certificate serial number"));
  }
  BIGNUM* raw_bn = nullptr;
  std::string serial_hex = entry.serial_hex;
  if (BN_hex2bn(&raw_bn, serial_hex.c_str()) == 0) return OpenSslError("decoding a serial");
  BignumPtr bn(raw_bn);
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  Asn1TimePtr date(ASN1_TIME_set(nullptr, absl::ToTimeT(entry.revoked_at)));
  Asn1EnumeratedPtr reason(ASN1_ENUMERATED_new());
  X509RevokedPtr revoked(X509_REVOKED_new());
  if (!serial || !date || !reason || !revoked ||
      X509_REVOKED_set_serialNumber(revoked.get(), serial.get()) != 1 ||
      X509_REVOKED_set_revocationDate(revoked.get(), date.get()) != 1 ||
      ASN1_ENUMERATED_set(reason.get(), code) != 1 ||
      X509_REVOKED_add1_ext_i2d(revoked.get(), NID_crl_reason, reason.get(), 0, 0) != 1) {
    return OpenSslError(absl::StrCat("adding serial ", entry.serial_hex, " to the list"));
  }
  if (X509_CRL_add0_revoked(crl, revoked.get()) != 1) {
    return OpenSslError("adding a revoked entry");
  }
  revoked.release();  // now owned by `crl`
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& RevocationReasonNames() {
  static const auto* names = new std::vector<std::string>{
      "unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation"};
  return *names;
}

StatusOr<RevocationList> RevocationList::Issue(const CertificateAuthority& ca,
                                               std::vector<RevokedEntry> entries, uint64_t number,
                                               absl::Time this_update, absl::Time next_update) {
  if (next_update <= this_update) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the revocation list's next update (", FormatCertificateTime(next_update),
        ") must come after its this update (", FormatCertificateTime(this_update), ")"));
  }
  {
    std::unordered_map<std::string, size_t> seen;
    for (const RevokedEntry& entry : entries) {
      if (!seen.emplace(NormalizeSerial(entry.serial_hex), 0).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("serial ", entry.serial_hex, " is listed twice"));
      }
    }
  }
  X509CrlPtr crl(X509_CRL_new());
  Asn1TimePtr last(ASN1_TIME_set(nullptr, absl::ToTimeT(this_update)));
  Asn1TimePtr next(ASN1_TIME_set(nullptr, absl::ToTimeT(next_update)));
  if (!crl || !last || !next || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.certificate().get())) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return OpenSslError("creating the revocation list");
  }
  for (const RevokedEntry& entry : entries) RETURN_IF_ERROR(AddEntry(crl.get(), entry));
  if (X509_CRL_sort(crl.get()) != 1) return OpenSslError("sorting the revocation list");

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.certificate().get(), nullptr, nullptr, crl.get(), 0);
  X509ExtensionPtr akid(X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier,
                                            const_cast<char*>("keyid:always")));
  if (!akid || X509_CRL_add_ext(crl.get(), akid.get(), -1) != 1) {
    return OpenSslError("adding the authority key identifier");
  }
  Asn1IntegerPtr crl_number(ASN1_INTEGER_new());
  if (!crl_number || ASN1_INTEGER_set_uint64(crl_number.get(), number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) != 1) {
    return OpenSslError("adding the CRL number");
  }
  const PrivateKey& key = ca.private_key();
  const EVP_MD* md = key.type() == KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (X509_CRL_sign(crl.get(), key.get(), md) <= 0) {
    return OpenSslError("signing the revocation list");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl.get()) != 1) {
    return OpenSslError("encoding the revocation list");
  }
  return FromPem(BioContents(bio.get()), ca.certificate());
}

StatusOr<RevocationList> RevocationList::FromPem(std::string_view pem, const Certificate& ca) {
  BioPtr bio = MemoryBio(pem);
  X509CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (!crl) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "no PEM revocation list found (expected '-----BEGIN X509 CRL-----')");
  }
  const std::string ca_name = ca.Subject().common_name;
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca.get())) != 0) {
    X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
    int index = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    std::string issuer_cn = "?";
    if (index >= 0) {
      const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, index));
      issuer_cn.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                       static_cast<size_t>(ASN1_STRING_length(data)));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("the revocation list was not signed by the federation CA: its issuer is '",
                     issuer_cn, "', not '", ca_name, "'"));
  }
  EVP_PKEY* ca_key = X509_get0_pubkey(ca.get());
  if (ca_key == nullptr || X509_CRL_verify(crl.get(), ca_key) != 1) {
    ERR_clear_error();
    return absl::PermissionDeniedError(absl::StrCat(
        "the revocation list was not signed by the federation CA '", ca_name,
        "' (bad signature: another CA's key signed it, or it was changed after signing)"));
  }

  RevocationList list;
  ASSIGN_OR_RETURN(list.this_update_, ReadTime(X509_CRL_get0_lastUpdate(crl.get()), "thisUpdate"));
  if (X509_CRL_get0_nextUpdate(crl.get()) != nullptr) {
    ASSIGN_OR_RETURN(list.next_update_,
                     ReadTime(X509_CRL_get0_nextUpdate(crl.get()), "nextUpdate"));
  }
  auto* number =
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr));
  if (number != nullptr) {
    Asn1IntegerPtr owned(number);
    if (ASN1_INTEGER_get_uint64(&list.number_, number) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError("the revocation list's CRL number cannot be read");
    }
  }
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  const int count = revoked == nullptr ? 0 : sk_X509_REVOKED_num(revoked);
  list.entries_.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const X509_REVOKED* r = sk_X509_REVOKED_value(revoked, i);
    RevokedEntry entry;
    entry.serial_hex = pki_internal::SerialToHex(X509_REVOKED_get0_serialNumber(r));
    ASSIGN_OR_RETURN(entry.revoked_at,
                     ReadTime(X509_REVOKED_get0_revocationDate(r), "revocation date"));
    auto* reason = static_cast<ASN1_ENUMERATED*>(
        X509_REVOKED_get_ext_d2i(r, NID_crl_reason, nullptr, nullptr));
    if (reason != nullptr) {
      Asn1EnumeratedPtr owned(reason);
      long code = ASN1_ENUMERATED_get(reason);
      entry.reason = code >= 0 && code < kReasonCount && kReasonNames[code] != nullptr
                         ? kReasonNames[code]
                         : absl::StrCat("reason ", code);
    }
    ERR_clear_error();
    list.by_serial_.emplace(NormalizeSerial(entry.serial_hex), list.entries_.size());
    list.entries_.push_back(std::move(entry));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509_CRL(out.get(), crl.get()) != 1) {
    return OpenSslError("encoding the revocation list");
  }
  list.pem_ = BioContents(out.get());
  return list;
}

StatusOr<RevocationList> RevocationList::FromFile(const std::string& path, const Certificate& ca) {
  StatusOr<std::string> pem = ReadFile(path, kMaxRevocationFileBytes);
  if (!pem.ok()) return Annotate(pem.status(), "reading revocation list");
  StatusOr<RevocationList> list = FromPem(*pem, ca);
  if (!list.ok()) return Annotate(list.status(), absl::StrCat("revocation list file ", path));
  return list;
}

const RevokedEntry* RevocationList::Find(std::string_view serial_hex) const {
  auto it = by_serial_.find(NormalizeSerial(serial_hex));
  return it == by_serial_.end() ? nullptr : &entries_[it->second];
}

std::string ExpiryWarning(const Certificate& cert, absl::Time now, absl::Duration within,
                          const std::string& what) {
  const absl::Time not_after = cert.NotAfter();
  if (not_after < now || not_after - now > within) return std::string();
  const int64_t days = absl::ToInt64Hours(not_after - now) / 24;
  return absl::StrCat(
      what.empty() ? absl::StrCat("certificate of '", cert.Subject().common_name, "'") : what,
      " expires on ", FormatCertificateTime(not_after), " (in ", days, days == 1 ? " day" : " days",
      "): renew it with `hansa ca renew`");
}

Status WriteRevocationListFile(const std::string& path, const RevocationList& list) {
  return WriteFileAtomically(path, list.ToPem(), 0644);
}

}  // namespace hansa
