// A link that passes every call to another link: the base of decorators that watch or pace a
// site's calls (the simulator's upload turns, a benchmark's poll counter, tests that record the
// tasks a site saw). A decorator overrides only what it watches.
//
// Threading: as SiteLink. The wrapped link must outlive this one.
#pragma once

#include "client/link/site_link.h"

namespace hansa {

class ForwardingLink : public SiteLink {
 public:
  explicit ForwardingLink(SiteLink* link) : link_(link) {}

  Status Connect(absl::Duration timeout) override { return link_->Connect(timeout); }
  StatusOr<v1::JoinReply> Join(const v1::JoinRequest& request) override {
    return link_->Join(request);
  }
  StatusOr<v1::Task> NextTask(absl::Duration wait) override { return link_->NextTask(wait); }
  StatusOr<Model> Download(const v1::RoundPlan& plan, uint64_t max_model_bytes) override {
    return link_->Download(plan, max_model_bytes);
  }
  Status RespondToPlan(const v1::PlanResponse& response) override {
    return link_->RespondToPlan(response);
  }
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    return link_->Upload(plan, header, pieces);
  }
  Status SubmitSecAgg(const v1::SecAggSubmission& submission) override {
    return link_->SubmitSecAgg(submission);
  }
  Status ReportMetrics(const v1::MetricsReport& report) override {
    return link_->ReportMetrics(report);
  }
  uint32_t max_chunk_bytes() const override { return link_->max_chunk_bytes(); }
  void Stop() override { link_->Stop(); }

 protected:
  SiteLink* link() const { return link_; }

 private:
  SiteLink* const link_;
};

}  // namespace hansa
