// What a site says to its coordinator and hears back, whatever carries it: the calls of the
// wire contract (proto/hansa/v1/hansa.proto) for one site. SiteSession (client/site_session.h)
// holds the conversation; a SiteLink only carries it:
//   - GrpcSiteLink (grpc_link.h): gRPC with mutual TLS 1.3, as hansa-client and the
//     simulator's loopback sites talk to a CoordinatorService;
//   - EngineSiteLink (engine_link.h): in process, straight into a RoundEngine, for the
//     simulator, benchmarks and tests.
// Both cut, send, receive and check chunks in one place (chunks.h), so a site gets the same
// errors whichever link carries it.
//
// Threading: one thread uses a link at a time; Stop() may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

class SiteLink {
 public:
  virtual ~SiteLink() = default;

  // Waits up to `timeout` until the link can carry a call: for gRPC, a TLS connection whose
  // handshake passed the CA and the site's pin. PermissionDenied when the last handshake met a
  // certificate other than the pinned one, Unavailable when none came up, Cancelled after
  // Stop(). Nothing is sent before this is OK.
  virtual Status Connect(absl::Duration timeout) = 0;
  // Joins the federation as the site the link speaks for. Learns the coordinator's chunk limit
  // from the reply.
  virtual StatusOr<v1::JoinReply> Join(const v1::JoinRequest& request) = 0;
  // The site's next task; WAIT when none appears within `wait`.
  virtual StatusOr<v1::Task> NextTask(absl::Duration wait) = 0;
  // The global model `plan` names, checked against the plan and decoded as it arrives
  // (ModelReceiver, chunks.h): DataLoss for a size or digest other than the plan's or chunks
  // out of order or over the coordinator's chunk limit, InvalidArgument for a declared size
  // over `max_model_bytes` (refused before anything is allocated) or a payload that is not a
  // model of finite F32 values.
  virtual StatusOr<Model> Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) = 0;
  virtual Status RespondToPlan(const v1::PlanResponse& response) = 0;
  // One upload of `plan`'s round: `header`, then `pieces` (at most the coordinator's chunk
  // limit each; CutChunks) at consecutive offsets, before the plan's upload deadline.
  virtual StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan,
                                           const v1::TransferHeader& header,
                                           const std::vector<std::string_view>& pieces) = 0;
  virtual Status SubmitSecAgg(const v1::SecAggSubmission& submission) = 0;
  virtual Status ReportMetrics(const v1::MetricsReport& report) = 0;
  // The largest chunk the coordinator accepts (from the join reply; 4 MiB before).
  virtual uint32_t max_chunk_bytes() const = 0;
  // Makes a waiting Connect return Cancelled. Thread-safe.
  virtual void Stop() {}
};

}  // namespace hansa
