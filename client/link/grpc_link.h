// A site's link to a coordinator over gRPC with mutual TLS 1.3 (site_link.h): what hansa-client
// uses, and the simulator's loopback sites. The channel checks the coordinator's certificate
// against the federation CA and, when the site pins one, its fingerprint, in every handshake.
//
// Threading: one thread makes calls at a time; Stop() from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "client/link/proxy_url.h"
#include "client/link/site_link.h"
#include "common/net/tls.h"
#include "common/pki/certificate.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace grpc {
class Channel;
class ChannelCredentials;
class Status;
}  // namespace grpc

namespace hansa {

struct GrpcLinkOptions {
  std::string coordinator;  // host:port as provisioned (the certificate names it)
  std::string client_version = "hansa-client 0.1";
  double call_seconds = 30;       // deadline of a unary call (a task poll: its wait plus this)
  double transfer_seconds = 600;  // longest a model download or an update upload may take
  // The coordinator certificate's SHA-256 fingerprint the site trusts; empty: any the CA signed.
  std::string coordinator_fingerprint;
  // An HTTP CONNECT proxy, "http://host:port" (ValidateProxyUrl), set as the channel's
  // GRPC_ARG_HTTP_PROXY, ahead of the grpc_proxy/https_proxy/http_proxy environment variables.
  // Empty: gRPC reads those variables. Mutual TLS and the pin run inside the tunnel.
  std::string proxy;
};

class GrpcSiteLink final : public SiteLink {
 public:
  // A channel to options.coordinator with the site's certificate and key, the federation CA and
  // the pin. InvalidArgument for unusable TLS material. Connect() checks the site's certificate
  // against this machine's clock before each connection.
  static StatusOr<std::unique_ptr<GrpcSiteLink>> Create(const TlsFiles& tls,
                                                        GrpcLinkOptions options);
  // Over an existing channel (its credentials made by the caller; no pin).
  GrpcSiteLink(std::shared_ptr<grpc::Channel> channel, GrpcLinkOptions options);
  ~GrpcSiteLink() override;

  Status Connect(absl::Duration timeout) override;
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest& request) override;
  StatusOr<v1::Task> NextTask(absl::Duration wait) override;
  StatusOr<Model> Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) override;
  Status RespondToPlan(const v1::PlanResponse& response) override;
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override;
  Status SubmitSecAgg(const v1::SecAggSubmission& submission) override;
  Status ReportMetrics(const v1::MetricsReport& report) override;
  uint32_t max_chunk_bytes() const override { return max_chunk_bytes_; }
  void Stop() override { stop_ = true; }

 private:
  // The call's status as a Status; a call that ran out of time makes the next Connect() open a
  // new connection (see renew_channel_).
  Status Outcome(const grpc::Status& status, const std::string& what);
  // The pin's refusal, naming both fingerprints. REQUIRES: pin_ refused a handshake.
  Status PinRefusal() const;
  // Before each connection: this site's own certificate must be valid now, or the handshake
  // would fail with nothing to say why. PermissionDenied once it expired; Unavailable (wait
  // for the clock) while it is not yet valid.
  Status CheckOwnCertificate() const;
  // A channel to options.coordinator with these credentials and, when set, options.proxy.
  static std::shared_ptr<grpc::Channel> NewChannel(
      const GrpcLinkOptions& options, const std::shared_ptr<grpc::ChannelCredentials>& credentials);
  // After a failed connection attempt through options_.proxy: asks the proxy for the tunnel
  // itself and returns Unavailable naming the proxy and its answer when it refuses or cannot
  // be reached; OK when it opens the tunnel (the failure lies beyond it).
  Status ProbeProxy() const;

  const GrpcLinkOptions options_;
  std::optional<Certificate> certificate_;  // this site's; set by Create
  std::shared_ptr<CertificatePin> pin_;     // when options_.coordinator_fingerprint is set
  std::shared_ptr<grpc::ChannelCredentials> credentials_;  // set by Create
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  // A call ended in DEADLINE_EXCEEDED since the last Connect(): its connection may have gone
  // silent, so the next Connect() replaces the channel (when Create made it).
  bool renew_channel_ = false;
  bool proxy_probed_ = false;  // since the last Connect() began
  uint32_t max_chunk_bytes_ = 4 << 20;
  std::atomic<bool> stop_{false};
};

}  // namespace hansa
