// A site's side of SecAgg+ (common/secagg) across one round's stages, as the tasks of the wire
// contract carry them: advertise keys, share, (malicious-coordinator mode) sign the survivor
// list, mask the update, reveal shares for unmasking. Fresh keys every round; the round's
// secrets are gone once the site has answered the unmask request. Transport-free.
//
// Threading: one SiteSession's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/local_trainer.h"
#include "common/crypto/ed25519.h"
#include "common/crypto/secret.h"
#include "common/secagg/client.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

class SecAggParticipant {
 public:
  // `site`: the site's name in cohorts. For malicious-coordinator rounds the site checks every
  // peer's certificate against `ca_certificate_pem` and signs with `private_key_pem` (its TLS
  // key); without them it cannot take part in such rounds (InvalidArgument, as a refusal).
  SecAggParticipant(std::string site, std::string ca_certificate_pem, std::string private_key_pem);

  // The payload answering a SECAGG_* task. SECAGG_ADVERTISE starts the plan's round with fresh
  // keys; a later stage without that round's session is FailedPrecondition (the site restarted
  // and holds no key material for it); SECAGG_UNMASK ends the round.
  StatusOr<std::string> Answer(const v1::Task& task);
  // The share delivery that comes with a secure round's TRAIN task.
  Status OnShareDelivery(const v1::RoundPlan& plan, const std::string& payload);
  // The masked input's wire chunks for `plan`: on the GPU when `trainer` left the update there
  // and the plan has no client-level privacy (cuda/masked_upload.h), else on the CPU from
  // `trainer`'s host update. `rounding_seed` (32 bytes) seeds the stochastic rounding; null:
  // the CSPRNG. `path` names where it was masked. `global` (the model trained from) is
  // consumed: on the CPU the update is written over it and given back page by page as its
  // chunks are made.
  StatusOr<std::vector<std::string>> Mask(const v1::RoundPlan& plan, LocalTrainer& trainer,
                                          Model global, int64_t examples,
                                          const SecretBytes* rounding_seed, std::string* path);

 private:
  StatusOr<SecAggParams> ParamsFor(const v1::RoundPlan& plan, uint32_t* self) const;
  Status Advertise(const v1::RoundPlan& plan, std::string* payload);
  // FailedPrecondition without a session for the plan's round; InvalidArgument (refused) for
  // a plan other than the one the session was advertised under.
  Status HasRound(const v1::RoundPlan& plan) const;

  const std::string site_;
  const std::string ca_certificate_pem_;
  const std::string private_key_pem_;
  // The site's certificate key, signing in malicious-coordinator mode (declared before the
  // session, which points to it).
  std::optional<Ed25519PrivateKey> signing_key_;
  std::unique_ptr<ClientSession> session_;
  uint64_t round_ = 0;
  std::string plan_sha256_;  // PlanSha256 of the plan the session was advertised under
};

// The host update from `global` (consumed: LocalTrainer::HostUpdate), checked: NaN or infinity
// is InvalidArgument.
StatusOr<std::vector<float>> CheckedHostUpdate(LocalTrainer& trainer, Model global);

}  // namespace hansa
