#include "client/link/grpc_link.h"

#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/link/chunks.h"
#include "client/link/tcp_tunnel.h"
#include "common/net/chunk_wire.h"
#include "common/net/rpc.h"
#include "common/plan/plan_writer.h"

namespace hansa {
namespace {

// The two streamed methods, called raw (chunk_wire.h) with the generated stub's names.
constexpr char kDownloadModelMethod[] = "/hansa.v1.Coordinator/DownloadModel";
constexpr char kUploadUpdateMethod[] = "/hansa.v1.Coordinator/UploadUpdate";

}  // namespace

StatusOr<std::unique_ptr<GrpcSiteLink>> GrpcSiteLink::Create(const TlsFiles& tls,
                                                             GrpcLinkOptions options) {
  std::shared_ptr<CertificatePin> pin;
  // The pin is checked inside every TLS handshake of the channel, reconnections included.
  if (!options.coordinator_fingerprint.empty()) {
    pin = std::make_shared<CertificatePin>(options.coordinator_fingerprint);
  }
  if (!options.proxy.empty()) RETURN_IF_ERROR(ValidateProxyUrl(options.proxy));
  ASSIGN_OR_RETURN(auto creds, MakeClientCredentials(tls, pin));
  auto channel = NewChannel(options, creds);
  auto link = std::make_unique<GrpcSiteLink>(std::move(channel), std::move(options));
  link->credentials_ = std::move(creds);
  link->pin_ = std::move(pin);
  ASSIGN_OR_RETURN(link->certificate_, Certificate::FromPem(tls.certificate_pem));
  return link;
}

GrpcSiteLink::GrpcSiteLink(std::shared_ptr<grpc::Channel> channel, GrpcLinkOptions options)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Coordinator::NewStub(channel_)) {}

GrpcSiteLink::~GrpcSiteLink() = default;

std::shared_ptr<grpc::Channel> GrpcSiteLink::NewChannel(
    const GrpcLinkOptions& options, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  // Messages as large as any coordinator may chunk (its join says which it uses).
  grpc::ChannelArguments args = SiteChannelArguments(kMaxChunkBytes);
  if (!options.proxy.empty()) args.SetString(GRPC_ARG_HTTP_PROXY, options.proxy);
  return grpc::CreateCustomChannel(options.coordinator, credentials, args);
}

Status GrpcSiteLink::ProbeProxy() const {
  std::string host, port, address;
  SplitProxyUrl(options_.proxy, &host, &port);
  StatusOr<std::string> answer = [&]() -> StatusOr<std::string> {
    ASSIGN_OR_RETURN(TcpSocket socket, ConnectTcp(host, port, absl::Seconds(5), &address));
    return AskProxyForTunnel(socket, options_.coordinator);
  }();
  const std::string proxy = absl::StrCat("the proxy ", options_.proxy, " ([network] proxy)");
  if (!answer.ok()) {
    return absl::UnavailableError(absl::StrCat(proxy, " gave no tunnel to ", options_.coordinator,
                                               ": ", answer.status().message()));
  }
  // The tunnel opened: the failure, if any, lies beyond the proxy.
  if (TunnelOpened(*answer)) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      proxy, " refused the CONNECT to ", options_.coordinator, ": it answered \"", *answer,
      "\" (403: its operators must allow CONNECT to that port; 5xx: it could not reach the "
      "coordinator)"));
}

Status GrpcSiteLink::PinRefusal() const {
  return absl::PermissionDeniedError(
      absl::StrCat("coordinator certificate fingerprint ", pin_->last_refused(),
                   " is not the one this site's policy trusts (", pin_->fingerprint(),
                   ", [policy] coordinator_fingerprint in site.toml): the TLS handshake with ",
                   options_.coordinator, " was refused, so nothing was sent over that connection"));
}

Status GrpcSiteLink::Outcome(const grpc::Status& status, const std::string& what) {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) renew_channel_ = true;
  return FromGrpc(status, what);
}

Status GrpcSiteLink::CheckOwnCertificate() const {
  if (!certificate_) return absl::OkStatus();
  Status st = CheckCertificateTime(*certificate_, absl::Now());
  if (st.ok()) return st;
  const std::string why = absl::StrCat("this site's ", st.message(), "; not connecting to ",
                                       options_.coordinator, ", nothing was sent");
  if (absl::IsPermissionDenied(st)) return absl::PermissionDeniedError(why);
  return absl::UnavailableError(why);
}

Status GrpcSiteLink::Connect(absl::Duration timeout) {
  RETURN_IF_ERROR(CheckOwnCertificate());
  if (renew_channel_ && credentials_) {
    // A call ran out of time: its connection may be one that went silent (a NAT that forgot
    // it, a cable pulled), which gRPC keeps using until keepalive finds it dead, up to 30 s
    // later. A new channel opens a new connection now; the old one closes with the channel.
    channel_ = NewChannel(options_, credentials_);
    stub_ = v1::Coordinator::NewStub(channel_);
  }
  renew_channel_ = false;
  proxy_probed_ = false;
  const auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
  for (;;) {
    grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return absl::OkStatus();
    if (pin_ && !pin_->last_refused().empty()) return PinRefusal();
    if (stop_) return absl::CancelledError("site stopping");
    // A failed attempt through the proxy: gRPC keeps only "handshake failed", so ask the proxy
    // once what it answers, and say so at once when it refuses.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && !options_.proxy.empty() && !proxy_probed_) {
      proxy_probed_ = true;
      RETURN_IF_ERROR(ProbeProxy());
    }
    auto now = std::chrono::system_clock::now();
    // The coordinator's certificate, as the last handshake showed it, has expired since: no
    // handshake with it can pass (and the pin allows no other).
    if (now >= deadline && pin_ && absl::Now() > pin_->pinned_not_after()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the coordinator's certificate (", pin_->fingerprint(), ") expired at ",
          FormatCertificateTime(pin_->pinned_not_after()), ": no TLS connection to ",
          options_.coordinator,
          " can pass; its operator must renew it, and this site must then pin the new one "
          "([policy] coordinator_fingerprint in site.toml)"));
    }
    if (now >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          "no TLS connection within ", absl::FormatDuration(timeout),
          " (coordinator down, wrong address, or a handshake that failed: a certificate from "
          "another CA or an expired one)"));
    }
    channel_->WaitForStateChange(state, std::min(deadline, now + std::chrono::milliseconds(200)));
  }
}

StatusOr<v1::JoinReply> GrpcSiteLink::Join(const v1::JoinRequest& request) {
  auto ctx = ContextWithDeadline(options_.call_seconds);
  ctx->set_wait_for_ready(true);
  v1::JoinRequest req = request;
  if (req.client_version().empty()) req.set_client_version(options_.client_version);
  v1::JoinReply reply;
  Status st = Outcome(stub_->Join(ctx.get(), req, &reply), "joining");
  // The connection dropped after it was checked and the next handshake met another
  // certificate: the join did not leave.
  if (!st.ok() && pin_ && !pin_->last_refused().empty()) return PinRefusal();
  RETURN_IF_ERROR(st);
  if (reply.max_chunk_bytes() > 0) {
    // Chunks outside what a federation may use are not cut, whatever the coordinator asks.
    max_chunk_bytes_ = std::clamp(reply.max_chunk_bytes(), kMinChunkBytes, kMaxChunkBytes);
  }
  return reply;
}

StatusOr<v1::Task> GrpcSiteLink::NextTask(absl::Duration wait) {
  // The service answers 0.5 s before the call's deadline at the latest.
  auto ctx = ContextWithDeadline(absl::ToDoubleSeconds(wait) + options_.call_seconds);
  v1::TaskRequest request;
  request.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(wait)));
  v1::Task task;
  RETURN_IF_ERROR(Outcome(stub_->GetTask(ctx.get(), request, &task), "asking for a task"));
  LocalizeUploadDeadline(absl::Now(), &task);  // the two clocks may disagree by minutes
  return task;
}

StatusOr<Model> GrpcSiteLink::Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) {
  auto ctx = ContextWithDeadline(options_.transfer_seconds);
  v1::DownloadRequest request;
  request.set_round(plan.round());
  request.set_model_sha256(plan.global_model_sha256());
  // The chunks are read raw (chunk_wire.h): their bytes go from gRPC's slices into the model's
  // values once, hashed on the way, with no protobuf string or encoded payload between.
  const grpc::internal::RpcMethod method(kDownloadModelMethod,
                                         grpc::internal::RpcMethod::SERVER_STREAMING);
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel_.get(), method,
                                                                    ctx.get(), request));
  const std::string what = "downloading the global model";
  ModelReceiver receiver(plan, max_chunk_bytes_, max_model_bytes);
  grpc::ByteBuffer message;
  std::vector<grpc::Slice> slices;
  ChunkView chunk;
  if (!reader->Read(&message)) {
    // The coordinator refuses a download with an error and no message; a stream that ends
    // well with nothing in it brought no model either.
    RETURN_IF_ERROR(Outcome(reader->Finish(), what));
    return absl::DataLossError(
        absl::StrCat(what, ": the coordinator ended the stream before the model's header"));
  }
  Status st = ParseChunk(message, &slices, &chunk);
  if (st.ok() && !chunk.has_header) {
    st = absl::InvalidArgumentError("the coordinator's first message is not the model's header");
  }
  if (st.ok()) st = receiver.Header(chunk.header);
  while (st.ok() && reader->Read(&message)) {
    st = ParseChunk(message, &slices, &chunk);
    if (st.ok() && chunk.has_header) {
      st = absl::InvalidArgumentError("the coordinator sent a second header inside the model");
    }
    if (st.ok()) st = receiver.Chunk(chunk.offset, chunk.data);
  }
  if (!st.ok()) {
    ctx->TryCancel();
    reader->Finish().ok();  // the stream is cancelled; our error is the one that counts
    return Annotate(st, what);
  }
  RETURN_IF_ERROR(Outcome(reader->Finish(), what));
  return receiver.Finish();
}

Status GrpcSiteLink::RespondToPlan(const v1::PlanResponse& response) {
  auto ctx = ContextWithDeadline(options_.call_seconds);
  v1::PlanAck ack;
  return Outcome(stub_->RespondToPlan(ctx.get(), response, &ack),
                 absl::StrCat("answering the plan of round ", response.round()));
}

StatusOr<v1::UploadReply> GrpcSiteLink::Upload(const v1::RoundPlan& plan,
                                               const v1::TransferHeader& header,
                                               const std::vector<std::string_view>& pieces) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(
      SiteUploadDeadline(plan, absl::Now(), absl::Seconds(options_.transfer_seconds))));
  v1::UploadReply reply;
  // Each piece is copied once, into the message (chunk_wire.h), not into a protobuf first.
  const grpc::internal::RpcMethod method(kUploadUpdateMethod,
                                         grpc::internal::RpcMethod::CLIENT_STREAMING);
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
      grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel_.get(), method,
                                                                    ctx.get(), &reply));
  bool ok = writer->Write(HeaderChunkMessage(header));
  uint64_t offset = 0;
  for (size_t i = 0; ok && i < pieces.size(); ++i) {
    ok = writer->Write(DataChunkMessage(offset, pieces[i]));
    offset += pieces[i].size();
  }
  if (ok) writer->WritesDone();
  RETURN_IF_ERROR(Outcome(writer->Finish(), absl::StrCat("uploading round ", header.round())));
  return reply;
}

Status GrpcSiteLink::SubmitSecAgg(const v1::SecAggSubmission& submission) {
  auto ctx = ContextWithDeadline(options_.call_seconds);
  v1::SecAggAck ack;
  return Outcome(stub_->SubmitSecAgg(ctx.get(), submission, &ack),
                 absl::StrCat("sending ", v1::Task::Kind_Name(submission.stage())));
}

Status GrpcSiteLink::ReportMetrics(const v1::MetricsReport& report) {
  auto ctx = ContextWithDeadline(options_.call_seconds);
  v1::MetricsReply reply;
  return Outcome(stub_->ReportMetrics(ctx.get(), report, &reply), "reporting metrics");
}

}  // namespace hansa
