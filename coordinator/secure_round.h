// The secure-aggregation side of a round at the coordinator: the SecAgg+ server session of the
// open attempt and the cohort's numbering, behind their own lock, and one attempt run from its
// parameters to the decoded sum.
//
// Threads and locks: the driver thread runs Attempt holding the round engine's mutex; transport
// threads call Submit (holding the engine's mutex) and fold masked chunks through the folders
// NewFolder makes (holding their sink's lock). The session's lock is the last in the order
// engine -> upload sink -> SecAgg session; nothing here takes either of the others, and the
// driver's callbacks run without the session's lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/privacy/ddg.h"
#include "common/secagg/encoding.h"
#include "common/secagg/server.h"
#include "common/status/status.h"
#include "coordinator/engine_options.h"
#include "coordinator/round_stage.h"
#include "coordinator/spill_file.h"
#include "coordinator/upload_sink.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// What a secure attempt needs from the round driver; called on the driver thread, with the
// engine's mutex held, never with the session's lock.
class SecureRoundDriver {
 public:
  virtual ~SecureRoundDriver() = default;
  virtual absl::Time Now() = 0;
  // Names the finished plan and records it, before any site sees it.
  virtual Status RecordPlan() = 0;
  // Opens `phase` for `sites` with their payloads and waits until all answered or `deadline`.
  virtual Status RunStage(RoundPhase phase, const std::vector<std::string>& sites,
                          std::map<std::string, std::string> payloads, absl::Time deadline) = 0;
  virtual void ClosePhase(const std::string& why) = 0;
  // OK when releasing one sum fits every privacy budget.
  virtual Status ReleaseFits() = 0;
  // Books the released sum; called as soon as it exists.
  virtual Status BookRelease() = 0;
};

// One attempt's setting.
struct SecureAttemptInput {
  const SecureOptions* options = nullptr;
  const std::vector<std::string>* cohort = nullptr;
  // Malicious-coordinator mode: each cohort site's certificate, in cohort order.
  std::vector<std::string> certificates;
  size_t model_values = 0;  // values of the global model
  int minimum_sum = 1;      // the fewest inputs a released sum may have
  // Client-level privacy (the distributed discrete Gaussian), or null.
  const DdgParams* ddg = nullptr;
  absl::Duration upload_timeout;
  // Keep the unmasked weighted sum in double precision too (SecureMean::sum): for the
  // statistics step, whose moments a float mean would round.
  bool keep_sum = false;
};

// The unmasked sum, as the round's mean update.
struct SecureMean {
  std::vector<float> mean;
  int64_t examples = 0;     // the total the weights reveal; 0 under client-level privacy
  double total_weight = 0;  // the sum of the weights (examples / max_examples each)
  std::vector<double> sum;  // sum_i w_i x_i per value, when asked (keep_sum); else empty
};

class SecureRound {
 public:
  // Runs one attempt with the cohort of `*plan`, writing its SecAgg part (and upload deadline)
  // into `*plan`. nullopt when the attempt ended without a sum and the round may be retried;
  // an error stops the federation. At most one sum is unmasked, over at least minimum_sum
  // sites; a failure after unmasking is an error, never a retry (a retry would give a second
  // sum of the same inputs).
  StatusOr<std::optional<SecureMean>> Attempt(const SecureAttemptInput& in, v1::RoundPlan* plan,
                                              SecureRoundDriver& driver);

  // `site`'s message for the stage `m` names (the caller checked it is open and `site` owes
  // it). FailedPrecondition for a site without a number or no open session; PermissionDenied
  // for a message signed as another site; the session's verdict.
  Status Submit(const std::string& site, const v1::SecAggSubmission& m);
  // `site`'s number in the open attempt (1-based), or nullopt.
  std::optional<uint32_t> SiteNumber(const std::string& site) const;
  // A folder for `site_id`'s masked upload in `round`, spilling to `spill` so a failed upload
  // can be withdrawn exactly.
  std::unique_ptr<UpdateFolder> NewFolder(uint32_t site_id, uint64_t round,
                                          std::unique_ptr<SpillFile> spill);

 private:
  class Folder;
  struct Attempted;  // an attempt's parameters and outcomes, stage by stage

  // Parameters for `in` (ring, vector length, signing keys), the session opened over them and
  // the cohort numbered.
  StatusOr<SecAggParams> Open(const SecureAttemptInput& in, uint64_t round,
                              const EncodingParams& encoding);
  // Keys advertised and shared: each trainer's share deliveries, or nullopt (retry).
  StatusOr<std::optional<std::map<std::string, std::string>>> RunKeyStages(
      Attempted& a, SecureRoundDriver& driver);
  // Masked inputs, and the consistency check in malicious mode: the survivors, or nullopt.
  StatusOr<std::optional<std::vector<std::string>>> RunMaskedInput(
      Attempted& a, std::map<std::string, std::string> deliveries, SecureRoundDriver& driver);
  // Unmasks the survivors' sum, if its release fits: the sum, or nullopt.
  StatusOr<std::optional<SecAggResult>> RunUnmask(Attempted& a,
                                                  const std::vector<std::string>& survivors,
                                                  SecureRoundDriver& driver);
  // Logs, closes the session and returns nullopt: the attempt is retried.
  std::nullopt_t Retry(const Attempted& a, const Status& why);
  void Close();

  mutable absl::Mutex mu_;
  std::unique_ptr<ServerSession> session_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint32_t> site_ids_ ABSL_GUARDED_BY(mu_);
};

// Where the masks are removed: true for a CUDA device (`unmask_device` "auto" and one present).
bool UnmaskOnDevice(const std::string& unmask_device);
// The mean of an unmasked sum of `result.survivors`: DDG-decoded under client-level privacy
// (`ddg` not null), else dequantized with `encoding` straight into the mean, block by block
// (DecodeMean), the weight element dropped. Consumes `result`: its sum's memory goes back as
// the decoding goes, so the sum and the mean never both hold the whole model.
StatusOr<SecureMean> DecodeSecureSum(SecAggResult result, const SecAggParams& params,
                                     const EncodingParams& encoding, const DdgParams* ddg,
                                     size_t model_values, int64_t max_examples,
                                     bool keep_sum = false);

}  // namespace hansa
