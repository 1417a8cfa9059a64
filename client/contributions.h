// What a site has already contributed, so that no update of its enters two unmasked sums
// (secure aggregation) or is booked as two releases (either mode).
//
// Once a site's masked input leaves, the site cannot tell whether it was unmasked: the
// neighbours' shares can rebuild its masks without its help. So the update counts as spent
// from the moment its upload starts. A later plan of the same round (a retry) may have the
// site contribute again only with an update of its own: another training seed (the engine
// gives every retry one), fresh noise under differential privacy, booked again. A plan that
// would have the site train the same update again (UpdateKey) under another plan, in this
// round or any other, is refused; the plan that spent it may be answered again (a rejoin
// in the middle of its own round), and its broken-off upload sent again byte for byte, but
// its update is never trained or masked again (SpentBy).
//
// The record is the site's egress ledger (contribution_spent events), so it survives a
// restart. One owner; not thread-safe.
#pragma once

#include <string>
#include <vector>

#include "client/egress.h"
#include "common/audit/audit_log.h"
#include "common/crypto/sha256.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// What identifies an update before it is trained (hex SHA-256): the model, the global model's
// digest, the training settings and seed. Two plans with the same key have the site train the
// same update; the round number is not part of it. A statistics plan's update (the site's
// feature moments, common/plan/standardization.h) depends on the site's data alone: every
// statistics plan has the same key, so a site sends its moments under one plan only, and a
// coordinator cannot take the difference of two sums with and without it.
std::string UpdateKey(const v1::RoundPlan& plan);

class SpentContributions {
 public:
  // The contributions recorded in the egress ledger at `path` (none when it does not exist).
  static StatusOr<SpentContributions> FromEgressLedger(const std::string& path);

  // OK, or InvalidArgument (the site refuses the plan, with this reason) when the plan asks
  // for an update this site already sent under another plan.
  Status Check(const v1::RoundPlan& plan) const;
  // Records the plan's update as spent in `egress` (before its first byte leaves) and here.
  // A second call for the same plan records nothing.
  Status Spend(const v1::RoundPlan& plan, const EgressRecorder& egress);
  // True when this very plan spent its update (it was sent, or began to be, under this plan).
  // Such a plan may have its update sent again only as the very bytes that began to leave (an
  // upload that broke off), never trained, masked or keyed again: a second secure session
  // under the same plan, with the same updates and without one site, would give the
  // coordinator a second sum whose difference with the first is that site's update.
  bool SpentBy(const v1::RoundPlan& plan) const;

  size_t size() const { return spent_.size(); }

 private:
  // The update's key and the plan that spent it, as digests (UpdateKey and PlanSha256 are
  // their hex).
  struct Entry {
    Sha256Digest update;
    Sha256Digest plan;
  };
  // The entry of `update`, or where it would go.
  std::vector<Entry>::const_iterator Find(const Sha256Digest& update) const;

  // Sorted by update, one block for all: a site adds one entry a round for as long as it
  // runs. Kept as a node and two strings each, every round's entry was allocated in the
  // middle of that round's buffers and outlived them, so the allocator could not give their
  // space back whole (about 8 KiB of held free heap per site and round in the soak).
  std::vector<Entry> spent_;
};

}  // namespace hansa
