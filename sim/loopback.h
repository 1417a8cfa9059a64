// A coordinator on 127.0.0.1 for sites in the same process: `hansa simulate` with
// transport = "grpc", benchmarks and tests. The sites' links (client/link/grpc_link.h) are gRPC
// calls with mutual TLS 1.3 to a CoordinatorService, each site presenting its own certificate
// from a federation CA made for the run (IssueStartupKits), so the engine knows the site from
// its certificate as in a deployment.
//
// Threading: a LoopbackFederation is immutable after Create; Serve and Connect may be called
// from any thread. A LoopbackServer must be retargeted or destroyed before its engine is.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/link/site_link.h"
#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "common/status/status.h"
#include "coordinator/round_engine.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace grpc {
class Server;
class Channel;
class ChannelCredentials;
}  // namespace grpc

namespace hansa {

class CoordinatorService;

// A coordinator on 127.0.0.1: the CoordinatorService behind a gRPC server with mutual TLS.
// Destroying it shuts the server down (calls in flight get 2 s).
class LoopbackServer {
 public:
  ~LoopbackServer();
  // Sends the calls to `engine` from now on, or to none (they fail UNAVAILABLE): the simulator
  // keeps one server and its sites' connections while each round runs in a fresh engine. Call
  // only while no call is in flight; the engine must outlive its turn.
  void Retarget(RoundEngine* engine);
  int port() const { return port_; }
  uint32_t max_chunk_bytes() const { return max_chunk_bytes_; }

 private:
  friend class LoopbackFederation;
  LoopbackServer() = default;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  uint32_t max_chunk_bytes_ = 0;
};

// A federation made on the fly for loopback runs: a CA, the coordinator's certificate
// (localhost, 127.0.0.1) and one client certificate per site, in memory only.
class LoopbackFederation {
 public:
  // `sites`: names as ValidateParticipantName; every certificate says `country`.
  static StatusOr<std::unique_ptr<LoopbackFederation>> Create(const std::vector<std::string>& sites,
                                                              const std::string& country);
  // Starts the coordinator's server over `engine` (whose chunk limit it keeps) on a free port of
  // `listen` (workers on other machines: "0.0.0.0:0"; mutual TLS with the run's CA either way).
  StatusOr<std::unique_ptr<LoopbackServer>> Serve(RoundEngine* engine,
                                                  const std::string& listen = "127.0.0.1:0") const;
  // The coordinator's certificate (it names localhost and 127.0.0.1), for workers to pin.
  const std::string& coordinator_certificate_pem() const { return coordinator_.certificate_pem; }
  // Site `index`'s connection to `server`, with its own certificate. (The server may be another
  // federation's: its CA then refuses the certificate, and the first call fails.)
  StatusOr<std::unique_ptr<SiteLink>> Connect(int index, const LoopbackServer& server) const;
  int num_sites() const { return static_cast<int>(site_credentials_.size()); }
  // Site `index`'s certificate, key and the federation CA. REQUIRES: 0 <= index < num_sites().
  const TlsFiles& site_tls(int index) const { return site_tls_[index]; }
  // A certificate (PEM) for site `index` from the signing request (PEM) of a key made in another
  // process (sim/workers.h), so the key never travels: the request must verify and name the
  // site. OutOfRange for an index outside the federation, InvalidArgument or PermissionDenied
  // (SigningRequest::FromPem) for a bad request, PermissionDenied for one naming another site.
  StatusOr<std::string> IssueSiteCertificate(int index, const std::string& request_pem) const;

 private:
  LoopbackFederation() = default;
  std::unique_ptr<CertificateAuthority> ca_;
  std::vector<std::string> names_;
  std::string country_;
  TlsFiles coordinator_;
  std::vector<TlsFiles> site_tls_;
  std::vector<std::shared_ptr<grpc::ChannelCredentials>> site_credentials_;
};

// A site's connection, with its own certificate, key and CA (`tls`), to a loopback server in
// another process, maybe on another machine (sim/workers.h), at host:port; `max_chunk_bytes` is
// the server's. The server's certificate names "localhost" whatever `host` is: it must be the
// one whose SHA-256 fingerprint is `coordinator_fingerprint`.
StatusOr<std::unique_ptr<SiteLink>> ConnectLoopbackSite(const TlsFiles& tls,
                                                        const std::string& host, int port,
                                                        uint32_t max_chunk_bytes,
                                                        const std::string& coordinator_fingerprint);

}  // namespace hansa
