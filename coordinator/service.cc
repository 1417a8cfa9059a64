#include "coordinator/service.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "common/net/chunk_wire.h"
#include "common/net/rpc.h"
#include "common/pki/ca_registry.h"
#include "common/pki/certificate.h"
#include "common/sync/tsan_annotations.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

// The coordinator's receive window per stream (an upload's chunks in flight): see StartServer.
constexpr int kUploadWindowBytes = 16 << 20;

const grpc::Status kSiteWentAway(grpc::StatusCode::CANCELLED, "site went away");

// A unary call answered at once.
grpc::ServerUnaryReactor* Answered(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// The engine's answer to a site as gRPC's status; an error of the coordinator's own storage (a
// full disk) also stops the engine, which cannot record what it serves.
grpc::Status EngineStatus(RoundEngine* engine, const Status& status) {
  if (IsStorageError(status)) engine->StopOnStorageError(status);
  return ToGrpcStatus(status);
}

// ThreadSanitizer keys (common/sync/tsan_annotations.h) for what gRPC orders through its
// executor, which is not instrumented: everything Hansa's code does with a reactor before its
// Finish or in a callback precedes OnDone (the reactor's address), and the handler that returns a
// reactor precedes its OnCancel (BoundKey). A write or read and its callback are ordered at gRPC's
// completion queue by tests/support/tsan_grpc_sync.cc. Outside ThreadSanitizer builds the keys
// are unused.
[[maybe_unused]] const void* BoundKey(const grpc::ServerUnaryReactor* reactor) {
  return reinterpret_cast<const char*>(reactor) + 1;
}

}  // namespace

// One GetTask call. Finished exactly once, by whoever holds it: the handler, the waker's pass
// (which takes it off the list first), Cancel or Shutdown (likewise); OnDone deletes it.
class CoordinatorService::TaskPoll final : public grpc::ServerUnaryReactor {
 public:
  TaskPoll(CoordinatorService* service, Caller caller, v1::Task* reply, absl::Time deadline)
      : service_(service), caller_(std::move(caller)), reply_(reply), deadline_(deadline) {}

  void OnCancel() override {
    HANSA_TSAN_ACQUIRE(BoundKey(this));  // gRPC cancels only a reactor the handler returned
    service_->Cancel(this);
    HANSA_TSAN_RELEASE(this);  // gRPC calls OnDone only after OnCancel returned
  }
  void OnDone() override {
    HANSA_TSAN_ACQUIRE(this);  // OnDone comes last of all: pairs with every release on `this`
    delete this;
  }

  void Finish(grpc::Status status) {
    HANSA_TSAN_RELEASE(this);  // OnDone follows Finish
    grpc::ServerUnaryReactor::Finish(std::move(status));
  }

  // Answers WAIT.
  void FinishWaiting() {
    reply_->Clear();
    reply_->set_kind(v1::Task::WAIT);
    Finish(grpc::Status::OK);
  }

 private:
  friend class CoordinatorService;
  CoordinatorService* const service_;
  const Caller caller_;
  v1::Task* const reply_;
  const absl::Time deadline_;
  // Under service_->mu_:
  bool parked_ = false;
  bool cancelled_ = false;
  ParkedPolls::iterator where_;
};

// DownloadModel: the header, then the model in chunks of the engine's chunk size, one write
// in flight at a time. Each data chunk references the engine's encoded model (chunk_wire.h):
// every site is served from that one immutable buffer, and no byte of it is copied before TLS
// encrypts it. Where that buffer maps the checkpoint file, each chunk's pages leave the
// coordinator's resident memory once written, so downloads in flight hold a chunk each, not
// the model.
class CoordinatorService::ModelWriter final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  ModelWriter(grpc::CallbackServerContext* ctx, RoundEngine* engine, SharedBytes bytes,
              const v1::DownloadRequest& request)
      : ctx_(ctx),
        engine_(engine),
        bytes_(std::move(bytes)),
        chunk_bytes_(engine->options().chunk_bytes) {
    v1::TransferHeader header;
    header.set_round(request.round());
    header.set_total_bytes(bytes_.size());
    header.set_sha256(request.model_sha256());
    msg_ = HeaderChunkMessage(header);
    StartWrite(&msg_);
  }

  void OnWriteDone(bool ok) override {
    // Written. Were gRPC still reading them, a mapping reads them from the file again.
    bytes_.Evict(written_, offset_);
    written_ = offset_;
    if (!ok || ctx_->IsCancelled()) return Finish(kSiteWentAway);
    if (offset_ >= bytes_.size()) {
      engine_->CountBytesDown(static_cast<int64_t>(bytes_.size()));
      return Finish(grpc::Status::OK);
    }
    const size_t n = std::min<uint64_t>(chunk_bytes_, bytes_.size() - offset_);
    msg_ = SharedDataChunkMessage(offset_, bytes_, offset_, n);
    offset_ += n;
    StartWrite(&msg_);
  }
  void OnDone() override {
    HANSA_TSAN_ACQUIRE(this);  // OnDone comes last of all: pairs with the release in Finish
    delete this;
  }

 private:
  void Finish(grpc::Status status) {
    HANSA_TSAN_RELEASE(this);  // OnDone follows Finish
    grpc::ServerWriteReactor<grpc::ByteBuffer>::Finish(std::move(status));
  }

  grpc::CallbackServerContext* const ctx_;
  RoundEngine* const engine_;
  const SharedBytes bytes_;
  const size_t chunk_bytes_;
  uint64_t offset_ = 0;
  uint64_t written_ = 0;  // the bytes before offset_ whose write is done
  grpc::ByteBuffer msg_;
};

// UploadUpdate: a header chunk, then data chunks into the engine's UploadSink, each read where
// it lies in gRPC's slices (chunk_wire.h). The sink goes before the call is finished, so a site
// that retries after an error finds no upload open.
class CoordinatorService::UpdateReader final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  UpdateReader(Caller caller, grpc::ByteBuffer* reply) : caller_(std::move(caller)), reply_(reply) {
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      Status parsed = ParseChunk(message_, &slices_, &chunk_);
      message_.Clear();
      if (!parsed.ok()) return Fail(ToGrpcStatus(parsed));
    }
    if (!sink_) return OnHeader(ok);
    if (!ok) return OnEnd();
    if (chunk_.has_header) {
      return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "second header in one upload"));
    }
    Status st = sink_->Write(chunk_.offset, chunk_.data);
    chunk_.data.clear();
    slices_.clear();  // the chunk's memory goes back to gRPC before the next read
    if (!st.ok()) return Fail(EngineStatus(caller_.engine, st));
    StartRead(&message_);
  }
  void OnDone() override {
    HANSA_TSAN_ACQUIRE(this);  // OnDone comes last of all: pairs with the release in Finish
    delete this;
  }

 private:
  void Finish(grpc::Status status) {
    HANSA_TSAN_RELEASE(this);  // OnDone follows Finish
    grpc::ServerReadReactor<grpc::ByteBuffer>::Finish(std::move(status));
  }

  void OnHeader(bool ok) {
    if (!ok || !chunk_.has_header) {
      return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                               "an upload must start with a header chunk"));
    }
    StatusOr<std::unique_ptr<UploadSink>> sink =
        caller_.engine->BeginUpload(caller_.site.name, chunk_.header);
    if (!sink.ok()) return Fail(EngineStatus(caller_.engine, sink.status()));
    sink_ = *std::move(sink);
    StartRead(&message_);
  }
  // The stream ended: either the site finished (Finish checks size and digest) or it died
  // (Finish reports the truncation; destroying the sink removes its partial sum).
  void OnEnd() {
    StatusOr<v1::UploadReply> done = sink_->Finish();
    const int64_t round = sink_->round();
    sink_.reset();
    if (!done.ok()) {
      // The operator's only trace of a connection lost mid-upload; the site may send it again.
      spdlog::warn("round {}: upload from {} not accepted, nothing of it counts: {}", round,
                   caller_.site.name, std::string(done.status().message()));
      return Finish(EngineStatus(caller_.engine, done.status()));
    }
    bool own_buffer = false;
    grpc::Status serialized =
        grpc::SerializationTraits<v1::UploadReply>::Serialize(*done, reply_, &own_buffer);
    Finish(serialized);
  }
  void Fail(const grpc::Status& status) {
    sink_.reset();
    Finish(status);
  }

  const Caller caller_;
  grpc::ByteBuffer* const reply_;
  std::unique_ptr<UploadSink> sink_;
  grpc::ByteBuffer message_;
  std::vector<grpc::Slice> slices_;  // the current chunk's memory, which chunk_ points into
  ChunkView chunk_;
};

// ---------------------------------------------------------------------------------------------

CoordinatorService::CoordinatorService(RoundEngine* engine) : engine_(engine) {
  waker_ = std::thread([this] { WakerLoop(); });
  if (engine) Listen(engine);
}

CoordinatorService::~CoordinatorService() {
  Shutdown();
  if (RoundEngine* engine = engine_.load()) engine->SetChangeListener(nullptr);
  waker_.join();
}

void CoordinatorService::Listen(RoundEngine* engine) {
  engine->SetChangeListener([this] { EngineChanged(); });
  EngineChanged();  // whatever happened before the listener was there
}

void CoordinatorService::set_engine(RoundEngine* engine) {
  RoundEngine* old = engine_.exchange(engine);
  if (old == engine) return;
  if (old) old->SetChangeListener(nullptr);
  std::vector<TaskPoll*> orphans;
  mu_.Lock();
  while (in_pass_) pass_done_.Wait(&mu_);
  for (auto it = parked_.begin(); it != parked_.end();) {
    TaskPoll* poll = it->second;
    if (poll->caller_.engine == engine) {
      ++it;
      continue;
    }
    poll->parked_ = false;
    orphans.push_back(poll);
    it = parked_.erase(it);
  }
  mu_.Unlock();
  for (TaskPoll* poll : orphans) poll->FinishWaiting();
  if (engine) Listen(engine);
}

void CoordinatorService::Shutdown() {
  std::vector<TaskPoll*> polls;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [deadline, poll] : parked_) {
      poll->parked_ = false;
      polls.push_back(poll);
    }
    parked_.clear();
    wake_.Signal();
  }
  for (TaskPoll* poll : polls) poll->FinishWaiting();
}

int CoordinatorService::parked_polls() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(parked_.size());
}

void CoordinatorService::EngineChanged() {
  absl::MutexLock lock(&mu_);
  ++changes_;
  wake_.Signal();
}

bool CoordinatorService::Answer(TaskPoll* poll, absl::Time now) {
  RoundEngine* engine = poll->caller_.engine;
  StatusOr<v1::Task> task = engine->NextTask(poll->caller_.site.name, absl::ZeroDuration());
  if (!task.ok()) {
    poll->Finish(EngineStatus(engine, task.status()));
    return true;
  }
  if (task->kind() == v1::Task::WAIT && now < poll->deadline_ && !engine->shutting_down()) {
    return false;
  }
  *poll->reply_ = *std::move(task);
  poll->Finish(grpc::Status::OK);
  return true;
}

void CoordinatorService::Park(TaskPoll* poll, uint64_t changes_seen) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_ && engine_.load() == poll->caller_.engine) {
      poll->where_ = parked_.emplace(poll->deadline_, poll);
      poll->parked_ = true;
      // A change after the poll asked and before it was parked: the waker asks again.
      if (changes_ != changes_seen) recheck_ = true;
      if (recheck_ || poll->where_ == parked_.begin()) wake_.Signal();
      return;
    }
  }
  poll->FinishWaiting();
}

void CoordinatorService::Cancel(TaskPoll* poll) {
  {
    absl::MutexLock lock(&mu_);
    if (!poll->parked_) {  // the waker holds it, or it was answered already
      poll->cancelled_ = true;
      return;
    }
    parked_.erase(poll->where_);
    poll->parked_ = false;
  }
  poll->Finish(kSiteWentAway);
}

std::vector<CoordinatorService::TaskPoll*> CoordinatorService::TakeDue(bool all, absl::Time now) {
  auto end = all ? parked_.end() : parked_.upper_bound(now);
  std::vector<TaskPoll*> due;
  for (auto it = parked_.begin(); it != end; ++it) {
    it->second->parked_ = false;
    due.push_back(it->second);
  }
  parked_.erase(parked_.begin(), end);
  return due;
}

void CoordinatorService::WakerLoop() {
  mu_.Lock();
  while (!stopping_) {
    const bool all = recheck_ || changes_ != checked_;
    const absl::Time now = absl::Now();
    const absl::Time next = parked_.empty() ? absl::InfiniteFuture() : parked_.begin()->first;
    if (!all && next > now) {
      wake_.WaitWithDeadline(&mu_, next);
      continue;
    }
    recheck_ = false;
    checked_ = changes_;
    std::vector<TaskPoll*> due = TakeDue(all, now);
    in_pass_ = true;
    mu_.Unlock();
    std::vector<TaskPoll*> waiting;  // still without a task
    for (TaskPoll* poll : due) {
      if (!Answer(poll, now)) waiting.push_back(poll);
    }
    mu_.Lock();
    in_pass_ = false;
    std::vector<TaskPoll*> gone;     // cancelled while the waker held them
    std::vector<TaskPoll*> dropped;  // the service or its engine moved on: WAIT
    for (TaskPoll* poll : waiting) {
      if (poll->cancelled_) {
        gone.push_back(poll);
      } else if (stopping_ || engine_.load() != poll->caller_.engine) {
        dropped.push_back(poll);
      } else {
        poll->where_ = parked_.emplace(poll->deadline_, poll);
        poll->parked_ = true;
      }
    }
    pass_done_.SignalAll();
    if (gone.empty() && dropped.empty()) continue;
    mu_.Unlock();
    for (TaskPoll* poll : gone) poll->Finish(kSiteWentAway);
    for (TaskPoll* poll : dropped) poll->FinishWaiting();
    mu_.Lock();
  }
  mu_.Unlock();
}

// ---------------------------------------------------------------------------------------------

StatusOr<CoordinatorService::Caller> CoordinatorService::Identify(
    grpc::CallbackServerContext* ctx) {
  RoundEngine* engine = engine_.load();
  if (!engine) return absl::UnavailableError("no round in progress; try again");
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  std::vector<grpc::string_ref> pem = auth->FindPropertyValues("x509_pem_cert");
  if (pem.empty()) return absl::UnauthenticatedError("client certificate missing");
  ASSIGN_OR_RETURN(Certificate cert,
                   Certificate::FromPem(std::string_view(pem[0].data(), pem[0].size())));
  // TLS checks a certificate only in the handshake: a site whose certificate expired since
  // its connection opened is refused here, and told why.
  Status valid = CheckCertificateTime(cert, absl::Now());
  if (absl::IsPermissionDenied(valid)) {
    spdlog::warn("refused site {}: {}", cert.Subject().common_name, std::string(valid.message()));
    return absl::PermissionDeniedError(
        absl::StrCat("the coordinator refused this site: ", valid.message()));
  }
  if (policy_) {
    const std::string_view text(pem[0].data(), pem[0].size());
    if (Status revoked = policy_->CheckRevoked(cert, absl::Now()); !revoked.ok()) {
      policy_->Refused(text, revoked, absl::Now(), "call");  // logged and on record, rate-limited
      return absl::PermissionDeniedError(
          absl::StrCat("the coordinator refused this site: ", revoked.message()));
    }
  }
  // An operator's certificate (OU=operator) opens the dashboard; it never takes part in a
  // round, even under a name that [sites] allowed lists.
  if (cert.OrganizationalUnit() == kOperatorUnit) {
    Status operator_only = absl::PermissionDeniedError(absl::StrCat(
        "certificate of '", cert.Subject().common_name,
        "' is an operator's (OU=operator): it opens the coordinator's dashboard and takes part in "
        "no round; a site needs a site certificate (hansa ca sign --role site)"));
    if (policy_) {
      policy_->Refused(std::string_view(pem[0].data(), pem[0].size()), operator_only, absl::Now(),
                       "call");
    } else {
      spdlog::warn("refused a client: {}", std::string(operator_only.message()));
    }
    return operator_only;
  }
  SubjectName subject = cert.Subject();
  SiteIdentity site;
  site.name = subject.common_name;
  site.organisation = subject.organization;
  site.country = subject.country;
  site.fingerprint = cert.Sha256Fingerprint();
  site.certificate_pem = std::string(pem[0].data(), pem[0].size());
  return Caller{std::move(site), engine};
}

grpc::ServerUnaryReactor* CoordinatorService::Join(grpc::CallbackServerContext* ctx,
                                                   const v1::JoinRequest* request,
                                                   v1::JoinReply* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return Answered(ctx, ToGrpcStatus(caller.status()));
  StatusOr<v1::JoinReply> r = caller->engine->Join(caller->site);
  if (!r.ok()) return Answered(ctx, EngineStatus(caller->engine, r.status()));
  *reply = *std::move(r);
  return Answered(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* CoordinatorService::GetTask(grpc::CallbackServerContext* ctx,
                                                      const v1::TaskRequest* request,
                                                      v1::Task* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return Answered(ctx, ToGrpcStatus(caller.status()));
  // Never hold the call past the client's own deadline, nor past 30 s.
  absl::Duration wait = absl::Milliseconds(std::min<uint32_t>(request->wait_ms(), 30000));
  absl::Duration left = absl::FromChrono(ctx->deadline() - std::chrono::system_clock::now());
  wait = std::max(absl::ZeroDuration(), std::min(wait, left - absl::Milliseconds(500)));
  uint64_t changes_seen;
  {
    absl::MutexLock lock(&mu_);
    changes_seen = changes_;
  }
  const absl::Time now = absl::Now();
  auto* poll = new TaskPoll(this, *std::move(caller), reply, now + wait);
  if (!Answer(poll, now)) Park(poll, changes_seen);
  HANSA_TSAN_RELEASE(BoundKey(poll));  // gRPC binds the reactor, then may call OnCancel
  return poll;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* CoordinatorService::DownloadModel(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request_message) {
  StatusOr<Caller> caller = Identify(ctx);
  v1::DownloadRequest request;
  grpc::ByteBuffer copy(*request_message);  // references the slices; Deserialize consumes it
  if (caller.ok() &&
      !grpc::SerializationTraits<v1::DownloadRequest>::Deserialize(&copy, &request).ok()) {
    caller = absl::InvalidArgumentError("DownloadModel: the request does not parse");
  }
  StatusOr<SharedBytes> payload =
      caller.ok()
          ? caller->engine->Download(caller->site.name, request.round(), request.model_sha256())
          : caller.status();
  if (!payload.ok()) {
    // The status alone, no chunk.
    class Refusal final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
     public:
      explicit Refusal(const grpc::Status& status) { Finish(status); }
      void OnDone() override { delete this; }
    };
    return new Refusal(ToGrpcStatus(payload.status()));
  }
  return new ModelWriter(ctx, caller->engine, *std::move(payload), request);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* CoordinatorService::UploadUpdate(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) {
    class Refusal final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
     public:
      explicit Refusal(const grpc::Status& status) { Finish(status); }
      void OnDone() override { delete this; }
    };
    return new Refusal(ToGrpcStatus(caller.status()));
  }
  return new UpdateReader(*std::move(caller), reply);
}

grpc::ServerUnaryReactor* CoordinatorService::ReportMetrics(grpc::CallbackServerContext* ctx,
                                                            const v1::MetricsReport* request,
                                                            v1::MetricsReply* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return Answered(ctx, ToGrpcStatus(caller.status()));
  return Answered(ctx, EngineStatus(caller->engine,
                                    caller->engine->ReportMetrics(caller->site.name, *request)));
}

grpc::ServerUnaryReactor* CoordinatorService::SubmitSecAgg(grpc::CallbackServerContext* ctx,
                                                           const v1::SecAggSubmission* request,
                                                           v1::SecAggAck* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return Answered(ctx, ToGrpcStatus(caller.status()));
  return Answered(
      ctx, EngineStatus(caller->engine, caller->engine->SubmitSecAgg(caller->site.name, *request)));
}

grpc::ServerUnaryReactor* CoordinatorService::RespondToPlan(grpc::CallbackServerContext* ctx,
                                                            const v1::PlanResponse* request,
                                                            v1::PlanAck* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return Answered(ctx, ToGrpcStatus(caller.status()));
  return Answered(ctx, EngineStatus(caller->engine,
                                    caller->engine->RespondToPlan(caller->site.name, *request)));
}

StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const std::string& listen, const TlsFiles& tls, CoordinatorService* service,
    uint32_t max_chunk_bytes, int* bound_port, std::shared_ptr<ClientCertificatePolicy> policy) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                   MakeServerCredentials(tls, std::move(policy)));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, creds, bound_port);
  builder.RegisterService(service);
  // A chunk plus framing; anything larger is refused by gRPC before it reaches us.
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_chunk_bytes) + kMessageFraming);
  builder.SetMaxSendMessageSize(static_cast<int>(max_chunk_bytes) + kMessageFraming);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  // A fixed receive window per upload stream instead of one that bandwidth-delay probing grows:
  // with probing, each concurrent upload held about 40 MB more of received data (10 sites,
  // 250 MB model: 1.15 GB peak against 0.80 GB, most of it kept between rounds), and 16 MiB
  // uploads as fast over loopback (bench/site_memory_bench, bench/transfer_bench).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kUploadWindowBytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("could not listen on ", listen,
                                               " (address in use, or certificate/key unusable)"));
  }
  return server;
}

}  // namespace hansa
