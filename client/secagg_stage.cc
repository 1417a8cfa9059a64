#include "client/secagg_stage.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crypto/random.h"
#include "common/logging/logging.h"
#include "common/pki/certificate.h"
#include "common/plan/plan_readers.h"
#include "common/secagg/encoding.h"
#include "cuda/device.h"
#include "cuda/masked_upload.h"
#include "proto/plan_digest.h"
#include "spdlog/spdlog.h"

namespace hansa {

SecAggParticipant::SecAggParticipant(std::string site, std::string ca_certificate_pem,
                                     std::string private_key_pem)
    : site_(std::move(site)),
      ca_certificate_pem_(std::move(ca_certificate_pem)),
      private_key_pem_(std::move(private_key_pem)) {}

StatusOr<SecAggParams> SecAggParticipant::ParamsFor(const v1::RoundPlan& plan,
                                                    uint32_t* self) const {
  const v1::SecAggPlan& sp = plan.secagg();
  ASSIGN_OR_RETURN(SecAggParams p, SecAggParamsOfPlan(plan, site_, self));
  if (p.malicious) {
    if (ca_certificate_pem_.empty() || private_key_pem_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", plan.round(),
          " runs SecAgg+ against a malicious coordinator, which needs the site's certificate "
          "key and the federation CA; this site has neither, so it cannot take part"));
    }
    // Check every peer's certificate against the federation CA ourselves: the coordinator
    // must not be able to substitute a key it holds.
    if (sp.certificates_size() != plan.cohort_size()) {
      return absl::PermissionDeniedError("malicious-mode plan lacks the cohort's certificates");
    }
    ASSIGN_OR_RETURN(Certificate ca, Certificate::FromPem(ca_certificate_pem_));
    for (int i = 0; i < sp.certificates_size(); ++i) {
      ASSIGN_OR_RETURN(Certificate cert, Certificate::FromPem(sp.certificates(i)));
      RETURN_IF_ERROR(VerifyCertificate(cert, ca, absl::Now(), CertificateUsage::kTlsClient));
      if (cert.Subject().common_name != plan.cohort(i)) {
        return absl::PermissionDeniedError(absl::StrCat("certificate ", i, " of the plan is '",
                                                        cert.Subject().common_name, "', not '",
                                                        plan.cohort(i), "'"));
      }
      ASSIGN_OR_RETURN(Ed25519PublicKey key,
                       Ed25519PublicKeyFromCertificatePem(sp.certificates(i)));
      p.signing_keys.push_back(key);
    }
  }
  return ResolveParams(p);
}

Status SecAggParticipant::Advertise(const v1::RoundPlan& plan, std::string* payload) {
  uint32_t self = 0;
  ASSIGN_OR_RETURN(SecAggParams params, ParamsFor(plan, &self));
  // The session keeps a pointer to the signing key: it lives as long as the participant.
  if (params.malicious && !signing_key_) {
    ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::FromPem(private_key_pem_));
    signing_key_ = std::move(key);
  }
  ASSIGN_OR_RETURN(
      session_, ClientSession::Create(params, self, params.malicious ? &*signing_key_ : nullptr));
  session_->set_mask_threads(MaskThreads());
  round_ = plan.round();
  plan_sha256_ = PlanSha256(plan);
  ASSIGN_OR_RETURN(AdvertiseKeys keys, session_->Start());
  *payload = keys.Serialize();
  return absl::OkStatus();
}

Status SecAggParticipant::HasRound(const v1::RoundPlan& plan) const {
  if (!session_ || round_ != plan.round()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "round ", plan.round(), ": this site holds no key material for it (restarted?)"));
  }
  // The session's parameters, the site's consent and the noise each site adds were settled
  // for the plan it was advertised under; another plan of the same round (fewer sites to
  // survive, less noise each) must not ride on it.
  if (PlanSha256(plan) != plan_sha256_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " attempt ", plan.attempt(),
        ": this stage comes with another plan than the one its secure session was advertised "
        "under; refused"));
  }
  return absl::OkStatus();
}

StatusOr<std::string> SecAggParticipant::Answer(const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  std::string payload;
  if (task.kind() == v1::Task::SECAGG_ADVERTISE) {
    RETURN_IF_ERROR(Advertise(plan, &payload));
    return payload;
  }
  RETURN_IF_ERROR(HasRound(plan));
  switch (task.kind()) {
    case v1::Task::SECAGG_SHARE: {
      ASSIGN_OR_RETURN(KeyDirectory dir, KeyDirectory::Parse(task.payload()));
      ASSIGN_OR_RETURN(ShareKeys shares, session_->OnKeyDirectory(dir));
      return shares.Serialize();
    }
    case v1::Task::SECAGG_CONSISTENCY: {
      ASSIGN_OR_RETURN(SurvivorList list, SurvivorList::Parse(task.payload()));
      ASSIGN_OR_RETURN(ConsistencySignature sig, session_->OnSurvivorList(list));
      return sig.Serialize();
    }
    case v1::Task::SECAGG_UNMASK: {
      ASSIGN_OR_RETURN(UnmaskRequest request, UnmaskRequest::Parse(task.payload()));
      StatusOr<UnmaskResponse> response = session_->OnUnmaskRequest(request);
      session_.reset();  // the round's secrets are gone once the site has answered
      RETURN_IF_ERROR(response.status());
      return response->Serialize();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(v1::Task::Kind_Name(task.kind()), " is not a secure-aggregation stage"));
  }
}

Status SecAggParticipant::OnShareDelivery(const v1::RoundPlan& plan, const std::string& payload) {
  RETURN_IF_ERROR(HasRound(plan));
  ASSIGN_OR_RETURN(ShareDelivery delivery, ShareDelivery::Parse(payload));
  return session_->OnShareDelivery(delivery);
}

StatusOr<std::vector<float>> CheckedHostUpdate(LocalTrainer& trainer, Model global) {
  Model delta;
  delta.layout = global.layout;
  ASSIGN_OR_RETURN(delta.values, trainer.HostUpdate(std::move(global)));
  RETURN_IF_ERROR(Annotate(delta.Validate(), "local update"));
  return std::move(delta.values);
}

StatusOr<std::vector<std::string>> SecAggParticipant::Mask(const v1::RoundPlan& plan,
                                                           LocalTrainer& trainer, Model global,
                                                           int64_t examples,
                                                           const SecretBytes* rounding_seed,
                                                           std::string* path) {
  RETURN_IF_ERROR(HasRound(plan));
  if (!HasClientPrivacy(plan) && CudaDeviceAvailable()) {
    StatusOr<DeviceVector> update = trainer.UpdateOnDevice();
    if (update.ok()) {
      ASSIGN_OR_RETURN(PlanEncoding e, PlanEncodingFor(plan, update->size, examples));
      RETURN_IF_ERROR(UseCudaDevice(update->device));
      SecretBytes seed(32);
      if (rounding_seed != nullptr) {
        seed = *rounding_seed;
      } else {
        RETURN_IF_ERROR(RandBytes(seed.data(), seed.size()));
      }
      DeviceMaskStats stats;
      StatusOr<std::vector<std::string>> chunks =
          MaskUpdateOnDevice(*session_, e.params, seed, update->data, update->size, e.weight,
                             e.values_per_chunk, &stats);
      if (chunks.ok()) {
        *path = absl::StrCat("GPU (cuda:", update->device, ")");
        spdlog::info(
            "round {}: update (L2 norm {:.4g}) masked on cuda:{} in {:.3f} s "
            "(quantize {:.3f} s, device wait {:.3f} s, chunks {:.3f} s)",
            plan.round(), stats.update_norm, update->device, stats.total, stats.quantize,
            stats.wait, stats.serialize);
        return chunks;
      }
      if (!absl::IsUnavailable(chunks.status())) {
        return Annotate(chunks.status(), "masking the update on the GPU");
      }
    } else if (!absl::IsUnavailable(update.status())) {
      return update.status();
    }
  }
  *path = "CPU";
  ASSIGN_OR_RETURN(std::vector<float> delta, CheckedHostUpdate(trainer, std::move(global)));
  return MaskUpdateForPlan(plan, *session_, std::move(delta), examples, rounding_seed);
}

}  // namespace hansa
