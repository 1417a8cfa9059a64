// The gRPC adapter over RoundEngine: mutual TLS, peer identity from the client certificate,
// chunked streams, and Status <-> grpc::Status conversion. No round logic lives here.
//
// Thread model. The service uses gRPC's callback API: no call owns a thread.
// - Every reaction (a unary call's handler, a stream's OnReadDone/OnWriteDone, OnCancel) runs
//   on gRPC's own callback threads, a small pool whose size does not grow with the number of
//   calls. A reaction calls the engine only for what never waits: NextTask with a zero wait,
//   Join, Download, one upload chunk's Write, and so on (RoundEngine's calls take its lock
//   briefly; Join and upload commits append one fsynced audit record).
// - A GetTask that finds no task parks its reactor (a TaskPoll) in this service's list, with
//   the poll's own deadline (the site's wait, at most 30 s and 0.5 s before the call's
//   deadline). One waker thread, owned by the service, finishes parked polls: when the engine
//   reports a change (RoundEngine::SetChangeListener) it asks the engine again for every
//   parked poll and answers those that now have a task; when a poll's deadline passes, or the
//   engine shuts down, it answers WAIT. A site that goes away (OnCancel) is taken off the list.
// - Locks: the engine's listener runs under the engine's lock and takes this service's `mu_`,
//   so `mu_` comes after the engine's; nothing here calls the engine while holding `mu_`.
// So a coordinator with a thousand sites waiting for work holds a thousand parked reactors and
// a fixed number of threads.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/net/tls.h"
#include "common/status/status.h"
#include "coordinator/round_engine.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace grpc {
class Server;
class CallbackServerContext;
}  // namespace grpc

namespace hansa {

// DownloadModel and UploadUpdate are raw methods: their chunks are framed and parsed by
// chunk_wire.h around the model's bytes, the same bytes on the wire as the generated code's.
class CoordinatorService final
    : public v1::Coordinator::WithRawCallbackMethod_DownloadModel<
          v1::Coordinator::WithRawCallbackMethod_UploadUpdate<v1::Coordinator::CallbackService>> {
 public:
  // `engine` (may be null) must outlive the service (or its set_engine successor).
  explicit CoordinatorService(RoundEngine* engine);
  // Shuts down (see Shutdown) and stops the waker. Destroy the server first (StartServer).
  ~CoordinatorService() override;
  CoordinatorService(const CoordinatorService&) = delete;
  CoordinatorService& operator=(const CoordinatorService&) = delete;

  // Points the service at another engine, or none (calls then fail UNAVAILABLE): for a server
  // that outlives one engine, as the simulator's loopback runs each round in a fresh engine
  // while its sites stay connected. Call only while no call is in flight; a poll still parked
  // on the old engine is answered WAIT, and the old engine is not called once this returns.
  void set_engine(RoundEngine* engine);

  // Also refuses every call from a certificate that `policy` finds revoked, so a site whose
  // certificate is revoked while its connection is open (TLS checks only the handshake) stops
  // at its next call. Call before the server starts.
  void set_certificate_policy(std::shared_ptr<ClientCertificatePolicy> policy) {
    policy_ = std::move(policy);
  }

  // Answers every parked GetTask now (WAIT), and every later one at once. Idempotent.
  void Shutdown();

  // GetTask calls parked now, waiting for a task (for tests and benchmarks).
  int parked_polls() const;

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* request,
                                 v1::JoinReply* reply) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* ctx,
                                    const v1::TaskRequest* request, v1::Task* reply) override;
  // A v1::DownloadRequest; answers v1::Chunk messages.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* DownloadModel(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) override;
  // Reads v1::Chunk messages; answers a v1::UploadReply.
  grpc::ServerReadReactor<grpc::ByteBuffer>* UploadUpdate(grpc::CallbackServerContext* ctx,
                                                          grpc::ByteBuffer* reply) override;
  grpc::ServerUnaryReactor* ReportMetrics(grpc::CallbackServerContext* ctx,
                                          const v1::MetricsReport* request,
                                          v1::MetricsReply* reply) override;
  grpc::ServerUnaryReactor* SubmitSecAgg(grpc::CallbackServerContext* ctx,
                                         const v1::SecAggSubmission* request,
                                         v1::SecAggAck* reply) override;
  grpc::ServerUnaryReactor* RespondToPlan(grpc::CallbackServerContext* ctx,
                                          const v1::PlanResponse* request,
                                          v1::PlanAck* reply) override;

 private:
  struct Caller {
    SiteIdentity site;    // from the verified client certificate
    RoundEngine* engine;  // the engine this call goes to
  };
  class TaskPoll;
  class ModelWriter;
  class UpdateReader;
  using ParkedPolls = std::multimap<absl::Time, TaskPoll*>;  // by deadline

  StatusOr<Caller> Identify(grpc::CallbackServerContext* ctx);
  // Asks the engine for `poll`'s task: true when `poll` was finished (a task, an error, or
  // WAIT at or after its deadline or on shutdown), false when it should stay parked.
  static bool Answer(TaskPoll* poll, absl::Time now);
  // Parks `poll` unless the service is shutting down or the engine moved on (then WAIT).
  void Park(TaskPoll* poll, uint64_t changes_seen) ABSL_LOCKS_EXCLUDED(mu_);
  // OnCancel: off the list and finished, or marked for the waker that holds it.
  void Cancel(TaskPoll* poll) ABSL_LOCKS_EXCLUDED(mu_);
  void EngineChanged() ABSL_LOCKS_EXCLUDED(mu_);
  void WakerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Takes the polls to ask again: all of them after a change, else those past their deadline.
  std::vector<TaskPoll*> TakeDue(bool all, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Listen(RoundEngine* engine);

  std::atomic<RoundEngine*> engine_;
  std::shared_ptr<ClientCertificatePolicy> policy_;  // set before serving; then read-only
  mutable absl::Mutex mu_;
  absl::CondVar wake_;       // the waker's: a change, an earlier deadline, shutdown
  absl::CondVar pass_done_;  // set_engine's: the waker's pass over the polls ended
  ParkedPolls parked_ ABSL_GUARDED_BY(mu_);
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;  // engine changes reported so far
  uint64_t checked_ ABSL_GUARDED_BY(mu_) = 0;  // changes_ at the waker's last full pass
  bool recheck_ ABSL_GUARDED_BY(mu_) = false;  // a poll parked after a change it missed
  bool in_pass_ ABSL_GUARDED_BY(mu_) = false;  // the waker is asking the engine
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread waker_;
};

// Builds and starts a server on `listen` with mutual TLS 1.3 (client certificates required
// and verified against the federation CA, and by `policy` when given: see
// MakeServerCredentials). The service must outlive the server.
StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const std::string& listen, const TlsFiles& tls, CoordinatorService* service,
    uint32_t max_chunk_bytes, int* bound_port,
    std::shared_ptr<ClientCertificatePolicy> policy = nullptr);

}  // namespace hansa
