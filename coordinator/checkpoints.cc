#include "coordinator/checkpoints.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/tensor/safetensors.h"

namespace hansa {

std::string Checkpoints::ModelPath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/round-%04d.safetensors", state_dir_, round);
}

std::string Checkpoints::StrategyStatePath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/strategy-%04d.safetensors", state_dir_, round);
}

PublishedModel Checkpoints::Encode(int64_t round, Model model) const {
  PublishedModel out;
  std::string payload =
      EncodeSafetensors(model, {{"round", std::to_string(round)}, {"model", model_name_}});
  out.sha256 = ToHex(Sha256(payload));
  out.payload = std::make_shared<const std::string>(std::move(payload));
  out.model = std::move(model);
  return out;
}

Status Checkpoints::Write(int64_t round, const PublishedModel& published,
                          const Strategy& strategy) const {
  RETURN_IF_ERROR(WriteFileAtomically(ModelPath(round), *published.payload));
  if (round > 0 && strategy.State().layout.size() > 0) {
    RETURN_IF_ERROR(strategy.SaveState(StrategyStatePath(round)));
  }
  return absl::OkStatus();
}

StatusOr<PublishedModel> Checkpoints::Load(const RoundRecord& last) const {
  TensorMetadata meta;
  ASSIGN_OR_RETURN(Model model, ReadSafetensorsFile(last.checkpoint, &meta));
  PublishedModel published = Encode(last.round, std::move(model));
  if (published.sha256 != last.model_sha256) {
    return absl::DataLossError(absl::StrCat("checkpoint ", last.checkpoint, " has SHA-256 ",
                                            published.sha256, " but the state database recorded ",
                                            last.model_sha256, "; restore it from a backup"));
  }
  return published;
}

}  // namespace hansa
