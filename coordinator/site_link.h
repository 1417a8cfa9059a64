// How a site that lives in this process talks to a coordinator: the calls hansa-client makes,
// for one site. `hansa simulate` gives each virtual site a SiteLink: in process, the calls go
// straight to the round's RoundEngine; over loopback ("transport = grpc"), they are gRPC calls
// with mutual TLS 1.3 to a CoordinatorService on 127.0.0.1, each site presenting its own
// certificate from a federation CA made for the run (IssueStartupKits), so the engine knows the
// site from its certificate as in a deployment.
//
// Threading: a SiteLink is used by one thread at a time. A LoopbackFederation is immutable
// after Create; Serve and Connect may be called from any thread. A LoopbackServer must be
// retargeted or destroyed before its engine is.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/net/tls.h"
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

class SiteLink {
 public:
  virtual ~SiteLink() = default;
  virtual Status Join() = 0;
  // The site's next task; WAIT when none appears within `wait`.
  virtual StatusOr<v1::Task> NextTask(absl::Duration wait) = 0;
  // The global model `plan` names. Over gRPC its size and SHA-256 are checked against the
  // plan (DataLoss when they differ), as hansa-client checks them.
  virtual StatusOr<std::shared_ptr<const std::string>> Download(const v1::RoundPlan& plan) = 0;
  // Accepts `plan` (a PlanResponse naming PlanSha256(plan)).
  virtual Status Accept(const v1::RoundPlan& plan) = 0;
  // One upload: `header`, then `pieces` at consecutive offsets.
  virtual Status Upload(const v1::TransferHeader& header,
                        const std::vector<std::string>& pieces) = 0;
  virtual Status SubmitSecAgg(const v1::SecAggSubmission& submission) = 0;
  virtual Status ReportMetrics(const v1::MetricsReport& report) = 0;
};

// In process: the engine's own calls as `site`. The engine must outlive the link.
std::unique_ptr<SiteLink> EngineSiteLink(RoundEngine* engine, SiteIdentity site);

// The gRPC calls of a site on `channel` (deadlines as hansa-client's defaults: 30 s per call,
// 10 minutes per model transfer).
class GrpcSiteLink final : public SiteLink {
 public:
  explicit GrpcSiteLink(std::shared_ptr<grpc::Channel> channel);
  ~GrpcSiteLink() override;
  Status Join() override;
  StatusOr<v1::Task> NextTask(absl::Duration wait) override;
  StatusOr<std::shared_ptr<const std::string>> Download(const v1::RoundPlan& plan) override;
  Status Accept(const v1::RoundPlan& plan) override;
  Status Upload(const v1::TransferHeader& header, const std::vector<std::string>& pieces) override;
  Status SubmitSecAgg(const v1::SecAggSubmission& submission) override;
  Status ReportMetrics(const v1::MetricsReport& report) override;

 private:
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

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
  // 127.0.0.1.
  StatusOr<std::unique_ptr<LoopbackServer>> Serve(RoundEngine* engine) const;
  // Site `index`'s connection to `server`, with its own certificate. (The server may be another
  // federation's: its CA then refuses the certificate, and the first call fails.)
  StatusOr<std::unique_ptr<SiteLink>> Connect(int index, const LoopbackServer& server) const;
  int num_sites() const { return static_cast<int>(site_credentials_.size()); }

 private:
  LoopbackFederation() = default;
  TlsFiles coordinator_;
  std::vector<std::shared_ptr<grpc::ChannelCredentials>> site_credentials_;
};

}  // namespace hansa
