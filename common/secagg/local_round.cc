#include "common/secagg/local_round.h"

namespace hansa {

StatusOr<LocalRound> LocalRound::Create(const SecAggParams& params) {
  LocalRound round;
  ASSIGN_OR_RETURN(round.server_, ServerSession::Create(params));
  // As the plan would carry it: the coordinator's commitment to its graph seed.
  const SecAggParams& planned = round.server_->params();
  for (SiteId id = 1; id <= params.num_sites; ++id) {
    ASSIGN_OR_RETURN(std::unique_ptr<ClientSession> site,
                     ClientSession::Create(planned, id, nullptr));
    round.sites_.push_back(std::move(site));
  }
  return round;
}

Status LocalRound::ExchangeKeys() {
  for (auto& s : sites_) {
    ASSIGN_OR_RETURN(AdvertiseKeys keys, s->Start());
    RETURN_IF_ERROR(server_->OnAdvertiseKeys(keys));
  }
  ASSIGN_OR_RETURN(KeyDirectory directory, server_->CloseAdvertiseKeys());
  for (auto& s : sites_) {
    ASSIGN_OR_RETURN(ShareKeys shares, s->OnKeyDirectory(directory));
    RETURN_IF_ERROR(server_->OnShareKeys(shares));
  }
  ASSIGN_OR_RETURN(std::vector<ShareDelivery> deliveries, server_->CloseShareKeys());
  for (const ShareDelivery& d : deliveries) RETURN_IF_ERROR(site(d.receiver).OnShareDelivery(d));
  return absl::OkStatus();
}

Status LocalRound::Upload(const std::vector<std::string>& chunks) {
  for (const std::string& c : chunks) {
    ASSIGN_OR_RETURN(MaskedInputChunk chunk, MaskedInputChunk::Parse(c));
    RETURN_IF_ERROR(server_->OnMaskedInputChunk(chunk));
  }
  return absl::OkStatus();
}

StatusOr<SecAggResult> LocalRound::Unmask(const ServerSession::MaskApplier& apply) {
  RETURN_IF_ERROR(server_->CloseMaskedInput().status());
  ASSIGN_OR_RETURN(UnmaskRequest request, server_->StartUnmask());
  for (auto& s : sites_) {
    ASSIGN_OR_RETURN(UnmaskResponse response, s->OnUnmaskRequest(request));
    RETURN_IF_ERROR(server_->OnUnmaskResponse(response));
  }
  return server_->Finish(apply);
}

}  // namespace hansa
