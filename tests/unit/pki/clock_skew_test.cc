// Certificates read on machines whose clocks disagree with the operator's: a skew of minutes
// either way is within the issuing allowance (kClockSkewAllowance); a certificate not yet
// valid by more than it is refused with a message that names the clock.
#include <string>

#include "common/pki/authority.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

struct Issued {
  CertificateAuthority ca;
  Certificate site;
};

// A CA and a site certificate issued at `operator_now` with the defaults of `hansa provision`.
Issued IssueAt(absl::Time operator_now) {
  CaOptions options;
  options.federation = "skew";
  options.country = "DE";
  options.not_before = operator_now - kClockSkewAllowance;
  auto ca = CertificateAuthority::Create(options);
  EXPECT_TRUE(ca.ok()) << ca.status();
  CertificateRequest request;
  request.subject = {"alpha", "Site alpha", "DE"};
  request.client_auth = true;
  request.not_before = operator_now - kClockSkewAllowance;
  request.not_after = operator_now + absl::Hours(24);
  auto key = PrivateKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  auto cert = ca->Issue(request, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  return {*std::move(ca), *std::move(cert)};
}

TEST(ClockSkewTest, AFreshCertificateIsValidOnClocksFiveMinutesEitherWay) {
  const absl::Time now = absl::Now();
  Issued issued = IssueAt(now);
  for (absl::Duration skew : {absl::Minutes(-5), absl::Minutes(5)}) {
    SCOPED_TRACE(absl::FormatDuration(skew));
    EXPECT_TRUE(CheckCertificateTime(issued.site, now + skew).ok());
    EXPECT_TRUE(VerifyCertificate(issued.site, issued.ca.certificate(), now + skew,
                                  CertificateUsage::kTlsClient)
                    .ok());
  }
}

TEST(ClockSkewTest, ACertificateNotYetValidBeyondTheAllowanceIsNamedWithTheClock) {
  const absl::Time now = absl::Now();
  Issued issued = IssueAt(now);
  const absl::Time behind = now - kClockSkewAllowance - absl::Minutes(1);
  Status st = CheckCertificateTime(issued.site, behind);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("certificate of 'alpha' is not valid until " +
                                                   FormatCertificateTime(issued.site.NotBefore())));
  EXPECT_THAT(std::string(st.message()), HasSubstr("this machine's clock, which may be behind"));
  Status verified = VerifyCertificate(issued.site, issued.ca.certificate(), behind);
  EXPECT_EQ(verified.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(verified.message()), HasSubstr("is not yet valid"));
  EXPECT_THAT(std::string(verified.message()), HasSubstr("check this machine's clock"));
}

TEST(ClockSkewTest, AnExpiredCertificateNamesTheMomentItExpired) {
  const absl::Time now = absl::Now();
  Issued issued = IssueAt(now);
  const absl::Time end = issued.site.NotAfter();
  EXPECT_TRUE(CheckCertificateTime(issued.site, end).ok());
  Status st = CheckCertificateTime(issued.site, end + absl::Seconds(1));
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("certificate of 'alpha' expired at " + FormatCertificateTime(end)));
}

}  // namespace
}  // namespace hansa
