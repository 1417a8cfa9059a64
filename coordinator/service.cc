#include "coordinator/service.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>

#include "common/net/rpc.h"
#include "common/pki/certificate.h"

namespace hansa {

StatusOr<CoordinatorService::Caller> CoordinatorService::Identify(grpc::ServerContext* ctx) {
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
  SubjectName subject = cert.Subject();
  SiteIdentity site;
  site.name = subject.common_name;
  site.organisation = subject.organization;
  site.country = subject.country;
  site.fingerprint = cert.Sha256Fingerprint();
  site.certificate_pem = std::string(pem[0].data(), pem[0].size());
  return Caller{std::move(site), engine};
}

grpc::Status CoordinatorService::Join(grpc::ServerContext* ctx, const v1::JoinRequest* request,
                                      v1::JoinReply* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  StatusOr<v1::JoinReply> r = caller->engine->Join(caller->site);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *reply = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetTask(grpc::ServerContext* ctx, const v1::TaskRequest* request,
                                         v1::Task* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  // Never hold the call past the client's own deadline, nor past 30 s.
  absl::Duration wait = absl::Milliseconds(std::min<uint32_t>(request->wait_ms(), 30000));
  absl::Duration left = absl::FromChrono(ctx->deadline() - std::chrono::system_clock::now());
  wait = std::max(absl::ZeroDuration(), std::min(wait, left - absl::Milliseconds(500)));
  StatusOr<v1::Task> task = caller->engine->NextTask(caller->site.name, wait);
  if (!task.ok()) return ToGrpcStatus(task.status());
  *reply = *std::move(task);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::DownloadModel(grpc::ServerContext* ctx,
                                               const v1::DownloadRequest* request,
                                               grpc::ServerWriter<v1::Chunk>* writer) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto payload =
      caller->engine->Download(caller->site.name, request->round(), request->model_sha256());
  if (!payload.ok()) return ToGrpcStatus(payload.status());
  const std::string& bytes = **payload;
  v1::Chunk header;
  header.mutable_header()->set_round(request->round());
  header.mutable_header()->set_total_bytes(bytes.size());
  header.mutable_header()->set_sha256(request->model_sha256());
  if (!writer->Write(header)) return grpc::Status(grpc::StatusCode::CANCELLED, "site went away");
  const size_t chunk = caller->engine->options().chunk_bytes;
  v1::Chunk msg;
  for (size_t off = 0; off < bytes.size(); off += chunk) {
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "site went away");
    msg.set_offset(off);
    msg.set_data(bytes.data() + off, std::min(chunk, bytes.size() - off));
    if (!writer->Write(msg)) return grpc::Status(grpc::StatusCode::CANCELLED, "site went away");
  }
  caller->engine->CountBytesDown(static_cast<int64_t>(bytes.size()));
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::UploadUpdate(grpc::ServerContext* ctx,
                                              grpc::ServerReader<v1::Chunk>* reader,
                                              v1::UploadReply* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  v1::Chunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "an upload must start with a header chunk");
  }
  StatusOr<std::unique_ptr<UploadSink>> sink =
      caller->engine->BeginUpload(caller->site.name, chunk.header());
  if (!sink.ok()) return ToGrpcStatus(sink.status());
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "second header in one upload");
    }
    Status st = (*sink)->Write(chunk.offset(), chunk.data());
    if (!st.ok()) return ToGrpcStatus(st);
  }
  // The stream ended: either the site finished (Finish checks size and digest) or it died
  // (Finish reports the truncation; destroying the sink removes its partial sum).
  StatusOr<v1::UploadReply> done = (*sink)->Finish();
  if (!done.ok()) return ToGrpcStatus(done.status());
  *reply = *std::move(done);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ReportMetrics(grpc::ServerContext* ctx,
                                               const v1::MetricsReport* request,
                                               v1::MetricsReply* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  return ToGrpcStatus(caller->engine->ReportMetrics(caller->site.name, *request));
}

grpc::Status CoordinatorService::SubmitSecAgg(grpc::ServerContext* ctx,
                                              const v1::SecAggSubmission* request,
                                              v1::SecAggAck* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  return ToGrpcStatus(caller->engine->SubmitSecAgg(caller->site.name, *request));
}

grpc::Status CoordinatorService::RespondToPlan(grpc::ServerContext* ctx,
                                               const v1::PlanResponse* request,
                                               v1::PlanAck* reply) {
  StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  return ToGrpcStatus(caller->engine->RespondToPlan(caller->site.name, *request));
}

StatusOr<std::unique_ptr<grpc::Server>> StartServer(const std::string& listen, const TlsFiles& tls,
                                                    CoordinatorService* service,
                                                    uint32_t max_chunk_bytes, int* bound_port) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, MakeServerCredentials(tls));
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
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("could not listen on ", listen,
                                               " (address in use, or certificate/key unusable)"));
  }
  return server;
}

}  // namespace hansa
