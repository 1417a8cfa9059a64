#include "sim/loopback.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/grpc_link.h"
#include "common/crypto/sha256.h"
#include "common/net/rpc.h"
#include "common/pki/signing_request.h"
#include "common/pki/startup_kit.h"
#include "coordinator/service.h"

namespace hansa {
namespace {
constexpr int kLoopbackValidityDays = 60;
}  // namespace

LoopbackServer::~LoopbackServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_.reset();
  service_.reset();
}

void LoopbackServer::Retarget(RoundEngine* engine) { service_->set_engine(engine); }

StatusOr<std::unique_ptr<LoopbackFederation>> LoopbackFederation::Create(
    const std::vector<std::string>& sites, const std::string& country) {
  ProvisionRequest request;
  request.federation = "loopback";
  request.coordinator = {"coordinator", country, "loopback coordinator"};
  for (const std::string& site : sites) request.sites.push_back({site, country, site});
  // Beyond the coordinator's expiry warning (kExpiryWarning), which a run's sites would
  // otherwise trip at every join.
  request.validity_days = kLoopbackValidityDays;
  request.ca_validity_days = kLoopbackValidityDays + 1;
  ASSIGN_OR_RETURN(StartupKits issued, IssueStartupKits(request));
  const std::string ca = issued.ca.certificate().ToPem();
  auto tls_of = [&](const StartupKit& kit) -> StatusOr<TlsFiles> {
    ASSIGN_OR_RETURN(std::string key, kit.key.ToPem());
    return TlsFiles{kit.certificate.ToPem(), std::move(key), ca};
  };
  std::unique_ptr<LoopbackFederation> f(new LoopbackFederation());
  f->names_ = sites;
  f->country_ = country;
  ASSIGN_OR_RETURN(f->coordinator_, tls_of(issued.kits[0]));
  for (size_t i = 1; i < issued.kits.size(); ++i) {
    ASSIGN_OR_RETURN(TlsFiles tls, tls_of(issued.kits[i]));
    ASSIGN_OR_RETURN(auto credentials, MakeClientCredentials(tls));
    f->site_credentials_.push_back(std::move(credentials));
    f->site_tls_.push_back(std::move(tls));
  }
  f->ca_ = std::make_unique<CertificateAuthority>(std::move(issued.ca));
  return f;
}

StatusOr<std::string> LoopbackFederation::IssueSiteCertificate(
    int index, const std::string& request_pem) const {
  if (index < 0 || index >= num_sites()) {
    return absl::OutOfRangeError(
        absl::StrCat("site ", index, " of a loopback federation of ", num_sites()));
  }
  ASSIGN_OR_RETURN(const SigningRequest request, SigningRequest::FromPem(request_pem));
  const std::string& name = names_[static_cast<size_t>(index)];
  if (request.Subject().common_name != name) {
    return absl::PermissionDeniedError(absl::StrCat("the signing request for site ", index,
                                                    " names '", request.Subject().common_name,
                                                    "', not '", name, "'"));
  }
  const absl::Time now = absl::Now();
  CertificateRequest cr;
  cr.subject = {name, name, country_};
  cr.not_before = now - kClockSkewAllowance;
  cr.not_after = now + absl::Hours(24 * kLoopbackValidityDays);
  cr.client_auth = true;
  ASSIGN_OR_RETURN(const Certificate certificate, ca_->Issue(cr, request.public_key()));
  return certificate.ToPem();
}

StatusOr<std::unique_ptr<LoopbackServer>> LoopbackFederation::Serve(
    RoundEngine* engine, const std::string& listen) const {
  std::unique_ptr<LoopbackServer> s(new LoopbackServer());
  s->service_ = std::make_unique<CoordinatorService>(engine);
  s->max_chunk_bytes_ = engine->max_chunk_bytes();
  ASSIGN_OR_RETURN(s->server_, StartServer(listen, coordinator_, s->service_.get(),
                                           s->max_chunk_bytes_, &s->port_));
  return s;
}

namespace {
std::unique_ptr<SiteLink> LinkOver(std::shared_ptr<grpc::ChannelCredentials> credentials,
                                   const std::string& host, int port, uint32_t max_chunk_bytes) {
  grpc::ChannelArguments args = SiteChannelArguments(max_chunk_bytes);
  // The certificate names the coordinator "localhost" and 127.0.0.1, whatever address reaches it.
  if (host != "127.0.0.1") args.SetSslTargetNameOverride("localhost");
  const std::string target = absl::StrCat(host, ":", port);
  auto channel = grpc::CreateCustomChannel(target, std::move(credentials), args);
  GrpcLinkOptions options;
  options.coordinator = target;
  options.client_version = "hansa simulate";
  return std::make_unique<GrpcSiteLink>(std::move(channel), options);
}
}  // namespace

StatusOr<std::unique_ptr<SiteLink>> LoopbackFederation::Connect(
    int index, const LoopbackServer& server) const {
  if (index < 0 || index >= num_sites()) {
    return absl::OutOfRangeError(
        absl::StrCat("site ", index, " of a loopback federation of ", num_sites()));
  }
  return LinkOver(site_credentials_[index], "127.0.0.1", server.port(), server.max_chunk_bytes());
}

StatusOr<std::unique_ptr<SiteLink>> ConnectLoopbackSite(
    const TlsFiles& tls, const std::string& host, int port, uint32_t max_chunk_bytes,
    const std::string& coordinator_fingerprint) {
  ASSIGN_OR_RETURN(
      auto credentials,
      MakeClientCredentials(tls, std::make_shared<CertificatePin>(coordinator_fingerprint)));
  return LinkOver(std::move(credentials), host, port, max_chunk_bytes);
}

}  // namespace hansa
