#include "coordinator/site_link.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"
#include "common/net/rpc.h"
#include "common/pki/startup_kit.h"
#include "coordinator/service.h"
#include "proto/plan_digest.h"

namespace hansa {
namespace {

constexpr double kCallSeconds = 30;
constexpr double kTransferSeconds = 600;

class EngineLink final : public SiteLink {
 public:
  EngineLink(RoundEngine* engine, SiteIdentity site) : engine_(engine), site_(std::move(site)) {}
  Status Join() override { return engine_->Join(site_).status(); }
  StatusOr<v1::Task> NextTask(absl::Duration wait) override {
    return engine_->NextTask(site_.name, wait);
  }
  StatusOr<std::shared_ptr<const std::string>> Download(const v1::RoundPlan& plan) override {
    return engine_->Download(site_.name, plan.round(), plan.global_model_sha256());
  }
  Status Accept(const v1::RoundPlan& plan) override { return engine_->Accept(site_.name, plan); }
  Status Upload(const v1::TransferHeader& header, const std::vector<std::string>& pieces) override {
    ASSIGN_OR_RETURN(auto sink, engine_->BeginUpload(site_.name, header));
    uint64_t off = 0;
    for (const std::string& piece : pieces) {
      RETURN_IF_ERROR(sink->Write(off, piece));
      off += piece.size();
    }
    return sink->Finish().status();
  }
  Status SubmitSecAgg(const v1::SecAggSubmission& submission) override {
    return engine_->SubmitSecAgg(site_.name, submission);
  }
  Status ReportMetrics(const v1::MetricsReport& report) override {
    return engine_->ReportMetrics(site_.name, report);
  }

 private:
  RoundEngine* engine_;
  const SiteIdentity site_;
};

}  // namespace

std::unique_ptr<SiteLink> EngineSiteLink(RoundEngine* engine, SiteIdentity site) {
  return std::make_unique<EngineLink>(engine, std::move(site));
}

// ---------------------------------------------------------------------------------------------

GrpcSiteLink::GrpcSiteLink(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Coordinator::NewStub(channel)) {}  // the stub keeps the channel

GrpcSiteLink::~GrpcSiteLink() = default;

Status GrpcSiteLink::Join() {
  auto ctx = ContextWithDeadline(kCallSeconds);
  ctx->set_wait_for_ready(true);
  v1::JoinRequest request;
  request.set_client_version("hansa simulate");
  v1::JoinReply reply;
  return FromGrpc(stub_->Join(ctx.get(), request, &reply), "joining");
}

StatusOr<v1::Task> GrpcSiteLink::NextTask(absl::Duration wait) {
  // The service answers 0.5 s before the call's deadline at the latest.
  auto ctx = ContextWithDeadline(absl::ToDoubleSeconds(wait) + kCallSeconds);
  v1::TaskRequest request;
  request.set_wait_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(wait)));
  v1::Task task;
  RETURN_IF_ERROR(FromGrpc(stub_->GetTask(ctx.get(), request, &task), "asking for a task"));
  return task;
}

StatusOr<std::shared_ptr<const std::string>> GrpcSiteLink::Download(const v1::RoundPlan& plan) {
  auto ctx = ContextWithDeadline(kTransferSeconds);
  v1::DownloadRequest request;
  request.set_round(plan.round());
  request.set_model_sha256(plan.global_model_sha256());
  auto reader = stub_->DownloadModel(ctx.get(), request);
  const std::string what = "downloading the global model";
  v1::Chunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) return FromGrpc(reader->Finish(), what);
  const uint64_t total = chunk.header().total_bytes();
  if (total != plan.global_model_bytes()) {
    return absl::DataLossError(absl::StrCat(what, ": the header declares ", total,
                                            " bytes but the plan ", plan.global_model_bytes()));
  }
  RETURN_IF_ERROR(CheckDeclaredBytes(total, kDefaultMaxModelBytes,
                                     absl::StrCat("the global model of round ", plan.round())));
  auto payload = std::make_shared<std::string>();
  payload->reserve(total);
  Sha256Hasher hasher;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != payload->size() || chunk.data().size() > total - payload->size()) {
      ctx->TryCancel();
      return absl::DataLossError(absl::StrCat(what, ": chunk of ", chunk.data().size(),
                                              " bytes at offset ", chunk.offset(), " after ",
                                              payload->size(), " of ", total, " bytes"));
    }
    hasher.Update(chunk.data());
    payload->append(chunk.data());
  }
  RETURN_IF_ERROR(FromGrpc(reader->Finish(), what));
  if (payload->size() != plan.global_model_bytes() ||
      ToHex(hasher.Finish()) != plan.global_model_sha256()) {
    return absl::DataLossError(absl::StrCat(what, ": ", payload->size(),
                                            " bytes that do not match the plan's size and digest"));
  }
  return std::shared_ptr<const std::string>(std::move(payload));
}

Status GrpcSiteLink::Accept(const v1::RoundPlan& plan) {
  auto ctx = ContextWithDeadline(kCallSeconds);
  v1::PlanResponse response;
  response.set_round(plan.round());
  response.set_plan_sha256(PlanSha256(plan));
  response.set_accepted(true);
  v1::PlanAck ack;
  return FromGrpc(stub_->RespondToPlan(ctx.get(), response, &ack), "answering the plan");
}

Status GrpcSiteLink::Upload(const v1::TransferHeader& header,
                            const std::vector<std::string>& pieces) {
  auto ctx = ContextWithDeadline(kTransferSeconds);
  v1::UploadReply reply;
  auto writer = stub_->UploadUpdate(ctx.get(), &reply);
  v1::Chunk chunk;
  *chunk.mutable_header() = header;
  bool ok = writer->Write(chunk);
  uint64_t offset = 0;
  for (size_t i = 0; ok && i < pieces.size(); ++i) {
    chunk.Clear();
    chunk.set_offset(offset);
    chunk.set_data(pieces[i]);
    offset += pieces[i].size();
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  return FromGrpc(writer->Finish(), absl::StrCat("uploading round ", header.round()));
}

Status GrpcSiteLink::SubmitSecAgg(const v1::SecAggSubmission& submission) {
  auto ctx = ContextWithDeadline(kCallSeconds);
  v1::SecAggAck ack;
  return FromGrpc(stub_->SubmitSecAgg(ctx.get(), submission, &ack),
                  v1::Task::Kind_Name(submission.stage()));
}

Status GrpcSiteLink::ReportMetrics(const v1::MetricsReport& report) {
  auto ctx = ContextWithDeadline(kCallSeconds);
  v1::MetricsReply reply;
  return FromGrpc(stub_->ReportMetrics(ctx.get(), report, &reply), "reporting metrics");
}

// ---------------------------------------------------------------------------------------------

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
  request.validity_days = 7;
  request.ca_validity_days = 8;
  ASSIGN_OR_RETURN(StartupKits issued, IssueStartupKits(request));
  const std::string ca = issued.ca.certificate().ToPem();
  auto tls_of = [&](const StartupKit& kit) -> StatusOr<TlsFiles> {
    ASSIGN_OR_RETURN(std::string key, kit.key.ToPem());
    return TlsFiles{kit.certificate.ToPem(), std::move(key), ca};
  };
  std::unique_ptr<LoopbackFederation> f(new LoopbackFederation());
  ASSIGN_OR_RETURN(f->coordinator_, tls_of(issued.kits[0]));
  for (size_t i = 1; i < issued.kits.size(); ++i) {
    ASSIGN_OR_RETURN(TlsFiles tls, tls_of(issued.kits[i]));
    ASSIGN_OR_RETURN(auto credentials, MakeClientCredentials(tls));
    f->site_credentials_.push_back(std::move(credentials));
  }
  return f;
}

StatusOr<std::unique_ptr<LoopbackServer>> LoopbackFederation::Serve(RoundEngine* engine) const {
  std::unique_ptr<LoopbackServer> s(new LoopbackServer());
  s->service_ = std::make_unique<CoordinatorService>(engine);
  s->max_chunk_bytes_ = engine->max_chunk_bytes();
  ASSIGN_OR_RETURN(s->server_, StartServer("127.0.0.1:0", coordinator_, s->service_.get(),
                                           s->max_chunk_bytes_, &s->port_));
  return s;
}

StatusOr<std::unique_ptr<SiteLink>> LoopbackFederation::Connect(
    int index, const LoopbackServer& server) const {
  if (index < 0 || index >= num_sites()) {
    return absl::OutOfRangeError(
        absl::StrCat("site ", index, " of a loopback federation of ", num_sites()));
  }
  // The certificate names the coordinator "localhost" and 127.0.0.1.
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server.port()), site_credentials_[index],
                                SiteChannelArguments(server.max_chunk_bytes()));
  return std::unique_ptr<SiteLink>(std::make_unique<GrpcSiteLink>(std::move(channel)));
}

}  // namespace hansa
