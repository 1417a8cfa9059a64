#include "client/link/engine_link.h"

#include <utility>

#include "client/link/chunks.h"

namespace hansa {
namespace {

class EngineLink final : public SiteLink {
 public:
  EngineLink(RoundEngine* engine, SiteIdentity site) : engine_(engine), site_(std::move(site)) {}

  Status Connect(absl::Duration) override { return absl::OkStatus(); }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest&) override { return engine_->Join(site_); }
  StatusOr<v1::Task> NextTask(absl::Duration wait) override {
    return engine_->NextTask(site_.name, wait);
  }
  StatusOr<Model> Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) override {
    ASSIGN_OR_RETURN(SharedBytes payload,
                     engine_->Download(site_.name, plan.round(), plan.global_model_sha256()));
    ModelReceiver receiver(plan, max_chunk_bytes(), max_model_bytes);
    return receiver.Whole(payload);
  }
  Status RespondToPlan(const v1::PlanResponse& response) override {
    return engine_->RespondToPlan(site_.name, response);
  }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan&, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    ASSIGN_OR_RETURN(auto sink, engine_->BeginUpload(site_.name, header));
    uint64_t offset = 0;
    for (std::string_view piece : pieces) {
      RETURN_IF_ERROR(sink->Write(offset, piece));
      offset += piece.size();
    }
    return sink->Finish();
  }
  Status SubmitSecAgg(const v1::SecAggSubmission& submission) override {
    return engine_->SubmitSecAgg(site_.name, submission);
  }
  Status ReportMetrics(const v1::MetricsReport& report) override {
    return engine_->ReportMetrics(site_.name, report);
  }
  uint32_t max_chunk_bytes() const override { return engine_->max_chunk_bytes(); }

 private:
  RoundEngine* const engine_;
  const SiteIdentity site_;
};

}  // namespace

std::unique_ptr<SiteLink> EngineSiteLink(RoundEngine* engine, SiteIdentity site) {
  return std::make_unique<EngineLink>(engine, std::move(site));
}

}  // namespace hansa
