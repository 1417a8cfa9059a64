#include "coordinator/secure_round.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/crypto/random.h"
#include "common/logging/logging.h"
#include "common/plan/plan_writer.h"
#include "common/privacy/ddg_accountant.h"
#include "cuda/device.h"
#include "cuda/masked_upload.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

std::map<std::string, std::string> Broadcast(const std::vector<std::string>& sites,
                                             const std::string& payload) {
  std::map<std::string, std::string> out;
  for (const auto& s : sites) out[s] = payload;
  return out;
}

}  // namespace

// A secure update: one serialized MaskedInputChunk per wire chunk, folded into the session's
// running sum; each is spilled so a failed upload can be withdrawn exactly.
class SecureRound::Folder : public UpdateFolder {
 public:
  Folder(SecureRound* round, uint32_t site_id, uint64_t round_id, std::unique_ptr<SpillFile> spill)
      : secure_(round), site_id_(site_id), round_(round_id), spill_(std::move(spill)) {}

  Status Fold(std::string_view bytes) override {
    ASSIGN_OR_RETURN(MaskedInputChunk chunk, MaskedInputChunk::Parse(bytes));
    if (chunk.sender != site_id_ || chunk.round != round_) {
      return absl::PermissionDeniedError(absl::StrCat("masked chunk claims site ", chunk.sender,
                                                      " round ", chunk.round, "; expected site ",
                                                      site_id_, " round ", round_));
    }
    {
      absl::MutexLock lock(&secure_->mu_);
      if (!secure_->session_) return absl::FailedPreconditionError("no secure round is open");
      RETURN_IF_ERROR(secure_->session_->OnMaskedInputChunk(chunk));
    }
    chunks_.push_back({spill_->size(), bytes.size()});
    RETURN_IF_ERROR(spill_->Append(bytes.data(), bytes.size()));
    folded_ += chunk.data.size();
    return absl::OkStatus();
  }

  Status Complete() override {
    absl::MutexLock lock(&secure_->mu_);
    uint64_t want = secure_->session_ ? secure_->session_->params().vector_length : 0;
    if (folded_ != want) {
      return absl::DataLossError(
          absl::StrCat("masked upload ended after ", folded_, " of ", want, " values (truncated)"));
    }
    return absl::OkStatus();
  }

  Status Commit() override {
    chunks_.clear();
    spill_.reset();
    return absl::OkStatus();
  }

  // If a chunk cannot be withdrawn, the partial input stays in the sum and the session refuses
  // to close the masked-input stage: the round is retried, never released wrong.
  void Abort() override {
    absl::MutexLock lock(&secure_->mu_);
    for (auto it = chunks_.rbegin(); it != chunks_.rend() && secure_->session_; ++it) {
      std::string bytes(it->second, '\0');
      if (!spill_->ReadAt(it->first, bytes.data(), bytes.size()).ok()) break;
      auto chunk = MaskedInputChunk::Parse(bytes);
      if (!chunk.ok() || !secure_->session_->WithdrawMaskedChunk(*chunk).ok()) break;
    }
    chunks_.clear();
    spill_.reset();
  }

 private:
  SecureRound* secure_;
  const uint32_t site_id_;
  const uint64_t round_;
  std::unique_ptr<SpillFile> spill_;
  std::vector<std::pair<uint64_t, size_t>> chunks_;  // spill offset, length
  uint64_t folded_ = 0;
};

struct SecureRound::Attempted {
  const SecureAttemptInput& in;
  v1::RoundPlan* plan;
  EncodingParams encoding;
  SecAggParams params;

  uint64_t round() const { return plan->round(); }
  const std::string& NameOf(uint32_t id) const { return (*in.cohort)[id - 1]; }
  std::vector<std::string> Names(const std::vector<uint32_t>& ids) const {
    std::vector<std::string> out;
    out.reserve(ids.size());
    for (uint32_t id : ids) out.push_back(NameOf(id));
    return out;
  }
  absl::Time StageDeadline(SecureRoundDriver& driver) const {
    return driver.Now() + in.options->stage_timeout;
  }
};

std::unique_ptr<UpdateFolder> SecureRound::NewFolder(uint32_t site_id, uint64_t round,
                                                     std::unique_ptr<SpillFile> spill) {
  return std::make_unique<Folder>(this, site_id, round, std::move(spill));
}

std::optional<uint32_t> SecureRound::SiteNumber(const std::string& site) const {
  absl::MutexLock lock(&mu_);
  auto it = site_ids_.find(site);
  if (it == site_ids_.end()) return std::nullopt;
  return it->second;
}

void SecureRound::Close() {
  absl::MutexLock lock(&mu_);
  session_.reset();
}

std::nullopt_t SecureRound::Retry(const Attempted& a, const Status& why) {
  spdlog::warn("round {}: {}; retrying the round", a.round(), why.message());
  Close();
  return std::nullopt;
}

StatusOr<SecAggParams> SecureRound::Open(const SecureAttemptInput& in, uint64_t round,
                                         const EncodingParams& encoding) {
  const SecureOptions& so = *in.options;
  const std::vector<std::string>& cohort = *in.cohort;
  SecAggParams params;
  params.round = round;
  params.num_sites = static_cast<uint32_t>(cohort.size());
  params.degree = so.degree;
  params.threshold = so.threshold;
  params.malicious = so.malicious;
  ASSIGN_OR_RETURN(params.ring, ChooseRing(encoding));
  params.vector_length = Encoder::EncodedSize(in.model_values);
  params.min_survivors = static_cast<uint32_t>(in.minimum_sum);
  if (in.ddg) {
    // DDG integers: each site's are bounded by the rounded norm plus its noise (12 sigma);
    // the signed sum of the cohort must fit the ring.
    params.vector_length = static_cast<uint64_t>(in.ddg->PaddedDimension());
    const double per_site =
        in.ddg->RoundedNormBound() + 12 * std::sqrt(in.ddg->SiteNoiseVariance());
    params.ring = per_site * static_cast<double>(cohort.size()) < std::ldexp(1.0, 30)
                      ? RingWidth::k32
                      : RingWidth::k64;
  }
  RETURN_IF_ERROR(RandBytes(params.round_seed.data(), params.round_seed.size()));
  std::map<std::string, uint32_t> ids;
  for (size_t i = 0; i < cohort.size(); ++i) {
    ids[cohort[i]] = static_cast<uint32_t>(i + 1);
    if (so.malicious) {
      ASSIGN_OR_RETURN(Ed25519PublicKey key,
                       Ed25519PublicKeyFromCertificatePem(in.certificates[i]));
      params.signing_keys.push_back(key);
    }
  }
  absl::MutexLock lock(&mu_);
  site_ids_ = std::move(ids);
  ASSIGN_OR_RETURN(params, ResolveParams(params));
  ASSIGN_OR_RETURN(session_, ServerSession::Create(params));
  return session_->params();  // with the commitment to the session's secret graph seed
}

StatusOr<std::optional<std::map<std::string, std::string>>> SecureRound::RunKeyStages(
    Attempted& a, SecureRoundDriver& driver) {
  const std::vector<std::string>& cohort = *a.in.cohort;
  RETURN_IF_ERROR(
      driver.RunStage(RoundPhase::kSecAggAdvertise, cohort, {}, a.StageDeadline(driver)));
  driver.ClosePhase("key advertisement closed");
  StatusOr<KeyDirectory> directory;
  std::vector<std::string> advertised;
  {
    absl::MutexLock lock(&mu_);
    directory = session_->CloseAdvertiseKeys();
    advertised = a.Names(session_->participants().advertised);
  }
  if (!directory.ok()) return Retry(a, directory.status());
  RETURN_IF_ERROR(driver.RunStage(RoundPhase::kSecAggShare, advertised,
                                  Broadcast(advertised, directory->Serialize()),
                                  a.StageDeadline(driver)));
  driver.ClosePhase("key sharing closed");
  StatusOr<std::vector<ShareDelivery>> deliveries;
  {
    absl::MutexLock lock(&mu_);
    deliveries = session_->CloseShareKeys();
  }
  if (!deliveries.ok()) return Retry(a, deliveries.status());
  std::map<std::string, std::string> per_site;
  for (const ShareDelivery& d : *deliveries) per_site[a.NameOf(d.receiver)] = d.Serialize();
  return per_site;
}

StatusOr<std::optional<std::vector<std::string>>> SecureRound::RunMaskedInput(
    Attempted& a, std::map<std::string, std::string> deliveries, SecureRoundDriver& driver) {
  // MaskedInput: train, encode, mask, upload.
  std::vector<std::string> trainers;
  trainers.reserve(deliveries.size());
  for (const auto& [site, delivery] : deliveries) trainers.push_back(site);
  const absl::Time deadline = driver.Now() + a.in.upload_timeout;
  SetUploadDeadline(deadline, a.plan);
  RETURN_IF_ERROR(driver.RunStage(RoundPhase::kTrain, trainers, std::move(deliveries), deadline));
  driver.ClosePhase(absl::StrCat("round ", a.round(), " upload deadline passed"));
  StatusOr<SurvivorList> survivors;
  {
    absl::MutexLock lock(&mu_);
    survivors = session_->CloseMaskedInput();
  }
  if (!survivors.ok()) return Retry(a, survivors.status());
  std::vector<std::string> names = a.Names(survivors->survivors);
  if (a.params.malicious) {  // ConsistencyCheck
    RETURN_IF_ERROR(driver.RunStage(RoundPhase::kSecAggConsistency, names,
                                    Broadcast(names, survivors->Serialize()),
                                    a.StageDeadline(driver)));
    driver.ClosePhase("consistency check closed");
  }
  return names;
}

StatusOr<std::optional<SecAggResult>> SecureRound::RunUnmask(
    Attempted& a, const std::vector<std::string>& survivors, SecureRoundDriver& driver) {
  // Only if the release it makes fits every budget (it is booked as soon as it exists).
  if (Status fits = driver.ReleaseFits(); !fits.ok()) {
    return Annotate(
        fits, absl::StrCat("round ", a.round(), " attempt ", a.plan->attempt(), ": not unmasking"));
  }
  StatusOr<UnmaskRequest> request;
  {
    absl::MutexLock lock(&mu_);
    request = session_->StartUnmask();
  }
  if (!request.ok()) return Retry(a, request.status());
  RETURN_IF_ERROR(driver.RunStage(RoundPhase::kSecAggUnmask, survivors,
                                  Broadcast(survivors, request->Serialize()),
                                  a.StageDeadline(driver)));
  driver.ClosePhase("unmasking closed");
  StatusOr<SecAggResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = UnmaskOnDevice(a.in.options->unmask_device) ? session_->Finish(ApplyMasksOnDevice)
                                                         : session_->Finish();
    session_.reset();
  }
  if (!result.ok()) return Retry(a, result.status());
  return *std::move(result);
}

StatusOr<std::optional<SecureMean>> SecureRound::Attempt(const SecureAttemptInput& in,
                                                         v1::RoundPlan* plan,
                                                         SecureRoundDriver& driver) {
  const SecureOptions& so = *in.options;
  const int cohort_size = static_cast<int>(in.cohort->size());
  Attempted a{in,
              plan,
              EncodingParams{so.clip, so.bits > 0 ? so.bits : DefaultQuantizationBits(cohort_size),
                             cohort_size},
              {}};
  ASSIGN_OR_RETURN(a.params, Open(in, plan->round(), a.encoding));
  SecAggPlanInputs written;
  written.params = &a.params;
  written.clip = so.clip;
  written.quantization_bits = a.encoding.bits;
  written.max_examples = so.max_examples;
  written.stage_timeout = so.stage_timeout;
  written.certificates = &in.certificates;
  WriteSecAggPlan(written, plan);
  spdlog::info("round {}: secure aggregation with n = {}, k = {}, t = {}, {}-bit ring{}",
               plan->round(), a.params.num_sites, a.params.degree, a.params.threshold,
               plan->secagg().ring_bits(),
               a.params.malicious ? ", malicious-coordinator checks" : "");
  // Whatever fails before a sum exists stops the federation with the stage closed.
  auto stop = [&](const Status& why) -> Status {
    driver.ClosePhase(std::string(why.message()));
    Close();
    return why;
  };
  if (Status st = driver.RecordPlan(); !st.ok()) return stop(st);
  auto deliveries = RunKeyStages(a, driver);
  if (!deliveries.ok()) return stop(deliveries.status());
  if (!deliveries->has_value()) return std::nullopt;
  auto survivors = RunMaskedInput(a, **std::move(deliveries), driver);
  if (!survivors.ok()) return stop(survivors.status());
  if (!survivors->has_value()) return std::nullopt;
  auto result = RunUnmask(a, **survivors, driver);
  if (!result.ok()) return stop(result.status());
  if (!result->has_value()) return std::nullopt;
  const size_t inputs = (*result)->survivors.size();
  // The session closed the masked-input stage only with the minimum; a sum below it here
  // would be a broken invariant, and it is not released.
  if (static_cast<int>(inputs) < in.minimum_sum) {
    return absl::InternalError(absl::StrCat("round ", plan->round(), ": a sum of ", inputs,
                                            " inputs was unmasked, below the minimum of ",
                                            in.minimum_sum, "; stopping"));
  }
  // The sum exists: a release, booked before anything else is done with it.
  RETURN_IF_ERROR(driver.BookRelease());
  // Consumed by the decoding, which gives its memory back block by block.
  StatusOr<SecureMean> mean = DecodeSecureSum(**std::move(result), a.params, a.encoding, in.ddg,
                                              in.model_values, so.max_examples, in.keep_sum);
  if (!mean.ok()) {
    // Once a sum is unmasked, the sites' inputs are spent: no retry.
    return Annotate(mean.status(),
                    absl::StrCat("round ", plan->round(),
                                 ": the sum was unmasked but cannot be used; not retrying, "
                                 "a retry would release a second sum of the same inputs"));
  }
  if (in.ddg) {
    spdlog::info("round {}: unmasked the noised sum of {} sites (distributed discrete Gaussian)",
                 plan->round(), inputs);
  } else {
    spdlog::info(
        "round {}: unmasked the sum of {} sites (total weight {:.4f}; masks removed on the {})",
        plan->round(), inputs, mean->total_weight,
        UnmaskOnDevice(so.unmask_device) ? "GPU" : "CPU");
  }
  return std::optional<SecureMean>(*std::move(mean));
}

Status SecureRound::Submit(const std::string& site, const v1::SecAggSubmission& m) {
  absl::MutexLock lock(&mu_);
  auto number = site_ids_.find(site);
  if (number == site_ids_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("no secure-aggregation stage for site '",
                                                      site, "' is open in round ", m.round()));
  }
  const uint32_t id = number->second;
  auto from = [&](uint32_t sender) -> Status {
    if (sender == id) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("site '", site, "' (number ", id, ") sent a message signed as site ", sender));
  };
  if (!session_) return absl::FailedPreconditionError("no secure round is open");
  switch (m.stage()) {
    case v1::Task::SECAGG_ADVERTISE: {
      ASSIGN_OR_RETURN(AdvertiseKeys msg, AdvertiseKeys::Parse(m.payload()));
      RETURN_IF_ERROR(from(msg.sender));
      return session_->OnAdvertiseKeys(msg);
    }
    case v1::Task::SECAGG_SHARE: {
      ASSIGN_OR_RETURN(ShareKeys msg, ShareKeys::Parse(m.payload()));
      RETURN_IF_ERROR(from(msg.sender));
      return session_->OnShareKeys(msg);
    }
    case v1::Task::SECAGG_CONSISTENCY: {
      ASSIGN_OR_RETURN(ConsistencySignature msg, ConsistencySignature::Parse(m.payload()));
      RETURN_IF_ERROR(from(msg.sender));
      return session_->OnConsistencySignature(msg);
    }
    case v1::Task::SECAGG_UNMASK: {
      ASSIGN_OR_RETURN(UnmaskResponse msg, UnmaskResponse::Parse(m.payload()));
      RETURN_IF_ERROR(from(msg.sender));
      return session_->OnUnmaskResponse(msg);
    }
    default:
      return absl::InvalidArgumentError("not a secure-aggregation stage");
  }
}

bool UnmaskOnDevice(const std::string& unmask_device) {
  return unmask_device == "auto" && CudaDeviceAvailable();
}

StatusOr<SecureMean> DecodeSecureSum(SecAggResult result, const SecAggParams& params,
                                     const EncodingParams& encoding, const DdgParams* ddg,
                                     size_t model_values, int64_t max_examples, bool keep_sum) {
  SecureMean out;
  const auto survivors = static_cast<int64_t>(result.survivors.size());
  if (ddg) {
    // The survivors' clipped updates plus their noise, rotation and scaling undone; no weights
    // under client-level privacy: the clipped mean. The decoder takes 64-bit words: the 64-bit
    // ring's sum is handed over, the 32-bit ring's widened and released.
    const int bits = params.ring == RingWidth::k64 ? 64 : 32;
    std::vector<uint64_t> words;
    if (params.ring == RingWidth::k64) {
      words = std::move(result.sum.w64);
    } else {
      words.assign(result.sum.w32.begin(), result.sum.w32.end());
      std::vector<uint32_t>().swap(result.sum.w32);
    }
    const std::string_view seed(reinterpret_cast<const char*>(params.round_seed.data()),
                                params.round_seed.size());
    ASSIGN_OR_RETURN(std::vector<double> sum, DdgDecodeSum(words, bits, *ddg, seed, survivors));
    std::vector<uint64_t>().swap(words);
    out.mean.resize(sum.size());
    for (size_t i = 0; i < sum.size(); ++i) {
      out.mean[i] = static_cast<float>(sum[i] / static_cast<double>(survivors));
    }
    return out;
  }
  // Straight into the float mean, block by block, the ring sum given back as it goes.
  ASSIGN_OR_RETURN(DecodedMean decoded,
                   DecodeMean(std::move(result.sum), result.survivors.size(), encoding, keep_sum));
  out.mean = std::move(decoded.mean);
  out.mean.resize(model_values);  // drop the weight element
  // Only the total is known: the sum of the weights, each examples / max_examples.
  out.total_weight = decoded.total_weight;
  out.examples = std::llround(decoded.total_weight * static_cast<double>(max_examples));
  if (keep_sum) {
    out.sum = std::move(decoded.weighted_sum);
    out.sum.resize(model_values);
  }
  return out;
}

}  // namespace hansa
