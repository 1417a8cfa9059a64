// A site's conversation with the coordinator: join, poll for tasks, answer each round plan
// against the site's policy, download the global model, train or evaluate locally, upload the
// update. Survives coordinator restarts by reconnecting with backoff. Owned and run by one
// thread (hansa-client's main).
//
// Egress ledger: every message that carries something of the site (join, plan answers,
// download requests, updates, metrics, secure-aggregation messages) is recorded in
// state_dir/egress.jsonl, signed with the site's key, before it is sent; a send that fails is
// recorded too. Task polls, which carry only a wait time, are not.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "client/contributions.h"
#include "client/site_config.h"
#include "client/trainer.h"
#include "common/audit/audit_log.h"
#include "common/crypto/ed25519.h"
#include "common/net/tls.h"
#include "common/privacy/ledger.h"
#include "common/secagg/client.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "hansa/v1/hansa.grpc.pb.h"

namespace hansa {

class SiteSession {
 public:
  // Loads the site's data shards and TLS material; errors name the file.
  // Opens the egress ledger (FailedPrecondition when another client holds it).
  static StatusOr<std::unique_ptr<SiteSession>> Create(const SiteConfig& config);

  // Runs until the coordinator says the federation is done (OK), the coordinator stays
  // unreachable past reconnect_seconds (Unavailable), or a policy violation (PermissionDenied).
  Status Run();
  // Makes Run() return Cancelled at its next step; safe from a signal-watching thread.
  void Stop();

 private:
  explicit SiteSession(SiteConfig config) : config_(std::move(config)) {}
  Status Connect();
  // Waits up to `seconds` for the channel's TLS connection: PermissionDenied when its last
  // handshake met a certificate other than the pinned one, Unavailable when none came up.
  Status AwaitConnection(double seconds);
  // The pin's refusal, naming both fingerprints and the site.toml key. REQUIRES: pin_.
  Status PinRefusal() const;
  Status JoinWithRetry();
  // The site's own policy; `sends_update` for plans that make it send a model update
  // (evaluation sends only metrics).
  Status CheckPlan(const v1::RoundPlan& plan, bool sends_update);
  // Answers a training plan once (PlanResponse) and records the answer; the policy's refusal
  // when the site refuses it. The task's audit_head, when present, goes into the answer's
  // egress record.
  Status Consent(const v1::Task& task);
  // One round's cost per guarantee: RDP curves, empty where the site keeps no budget.
  struct PrivacyCost {
    std::vector<double> client, record;
  };
  // The site's own privacy rules for a training plan: the round's cost in each ledger the site
  // keeps, or the refusal (a plan without a guarantee the site requires, or over its budget).
  StatusOr<PrivacyCost> CheckPrivacy(const v1::RoundPlan& plan) const;
  // Books a round whose update is about to leave in the site's ledgers and egress ledger (once
  // per plan).
  Status SpendPrivacy(const v1::RoundPlan& plan, const PrivacyCost& cost);
  // Ledger entry for a message about to leave; returns the digest for RecordFailure.
  StatusOr<std::string> RecordSend(const char* type, uint64_t round, const std::string& bytes);
  StatusOr<std::string> RecordSend(const char* type, uint64_t round, uint64_t bytes,
                                   std::string sha256);
  // Returns `sent`; when it failed, records that the message may not have arrived.
  Status RecordOutcome(const char* type, uint64_t round, const std::string& sha256,
                       const Status& sent);
  StatusOr<Model> FetchModel(const v1::RoundPlan& plan);
  Status Train(const v1::RoundPlan& plan, const std::string& share_delivery);
  Status Evaluate(const v1::RoundPlan& plan);
  // Secure aggregation: one protocol stage, and the masked upload of a trained update.
  Status SecAggStage(const v1::Task& task);
  Status UploadMasked(const v1::RoundPlan& plan, const Model& global, int64_t examples);
  // The trained weights minus `global`, in host memory, checked for NaN and infinity.
  StatusOr<Model> HostUpdate(const Model& global);
  // The masked input's wire chunks: made on the GPU when the trainer runs there and the plan
  // has no client-level privacy (cuda/masked_upload.h), else on the CPU. `path` names which.
  StatusOr<std::vector<std::string>> MaskedChunks(const v1::RoundPlan& plan, const Model& global,
                                                  int64_t examples, std::string* path);
  StatusOr<SecAggParams> SecAggParamsFor(const v1::RoundPlan& plan, uint32_t* self) const;
  Status Submit(const v1::RoundPlan& plan, v1::Task::Kind stage, const std::string& payload);
  Status Upload(const v1::RoundPlan& plan, const std::string& payload, int64_t examples,
                double loss, double seconds);
  Status EnsureTrainer(const std::string& model);

  SiteConfig config_;
  TlsFiles tls_;
  std::unique_ptr<AuditLog> egress_;
  std::optional<PrivacyLedger> privacy_;         // when policy.max_epsilon > 0
  std::optional<PrivacyLedger> record_privacy_;  // when policy.max_record_epsilon > 0
  std::set<std::string> booked_plans_;  // plans already in the ledgers (answered again on rejoin)
  SpentContributions spent_;            // secure updates that left, from the egress ledger
  // The last training plan answered (PlanSha256) and the answer.
  std::string answered_plan_;
  Status answer_;
  Dataset train_;
  Dataset test_;
  std::shared_ptr<CertificatePin> pin_;  // when policy.coordinator_fingerprint is set
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<Trainer> trainer_;
  std::string trainer_model_;
  uint32_t max_chunk_bytes_ = 4 << 20;
  // The last model downloaded, by digest: evaluation of round r and training of round r+1
  // use the same model, so it is fetched once.
  std::string cached_sha256_;
  std::optional<Model> cached_model_;
  std::atomic<bool> stop_{false};
  // The secure-aggregation session of the round in progress (fresh keys every round), and the
  // site's certificate key it signs with in malicious-coordinator mode (declared first: the
  // session points to it).
  std::optional<Ed25519PrivateKey> signing_key_;
  std::unique_ptr<ClientSession> secagg_;
  uint64_t secagg_round_ = 0;
};

}  // namespace hansa
