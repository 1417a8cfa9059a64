// The gRPC adapter over RoundEngine: mutual TLS, peer identity from the client certificate,
// chunked streams, and Status <-> grpc::Status conversion. No round logic lives here.
// Runs on gRPC's sync-server threads; RoundEngine is the thread-safe part.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/net/tls.h"
#include "common/status/status.h"
#include "coordinator/round_engine.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace grpc {
class Server;
class ServerContext;
}  // namespace grpc

namespace hansa {

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  // `engine` must outlive the service (or its set_engine successor).
  explicit CoordinatorService(RoundEngine* engine) : engine_(engine) {}

  // Points the service at another engine, or none (calls then fail UNAVAILABLE): for a server
  // that outlives one engine, as the simulator's loopback runs each round in a fresh engine
  // while its sites stay connected. Call only while no call is in flight.
  void set_engine(RoundEngine* engine) { engine_.store(engine); }

  grpc::Status Join(grpc::ServerContext* ctx, const v1::JoinRequest* request,
                    v1::JoinReply* reply) override;
  grpc::Status GetTask(grpc::ServerContext* ctx, const v1::TaskRequest* request,
                       v1::Task* reply) override;
  grpc::Status DownloadModel(grpc::ServerContext* ctx, const v1::DownloadRequest* request,
                             grpc::ServerWriter<v1::Chunk>* writer) override;
  grpc::Status UploadUpdate(grpc::ServerContext* ctx, grpc::ServerReader<v1::Chunk>* reader,
                            v1::UploadReply* reply) override;
  grpc::Status ReportMetrics(grpc::ServerContext* ctx, const v1::MetricsReport* request,
                             v1::MetricsReply* reply) override;
  grpc::Status SubmitSecAgg(grpc::ServerContext* ctx, const v1::SecAggSubmission* request,
                            v1::SecAggAck* reply) override;
  grpc::Status RespondToPlan(grpc::ServerContext* ctx, const v1::PlanResponse* request,
                             v1::PlanAck* reply) override;

 private:
  struct Caller {
    SiteIdentity site;    // from the verified client certificate
    RoundEngine* engine;  // the engine this call goes to
  };
  StatusOr<Caller> Identify(grpc::ServerContext* ctx);
  std::atomic<RoundEngine*> engine_;
};

// Builds and starts a server on `listen` with mutual TLS 1.3 (client certificates required
// and verified against the federation CA). The service must outlive the server.
StatusOr<std::unique_ptr<grpc::Server>> StartServer(const std::string& listen, const TlsFiles& tls,
                                                    CoordinatorService* service,
                                                    uint32_t max_chunk_bytes, int* bound_port);

}  // namespace hansa
