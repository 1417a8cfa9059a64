// Privacy budget ledger of one guarantee (a site's, or the coordinator's per guarantee): the
// RDP curve of every accepted round, summed (composition) and converted to (epsilon, delta)
// at the budget's delta. Persisted as JSON with WriteFileAtomically after every change, so it
// survives restarts. Not thread-safe: one owner (the round engine or the client session).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/privacy/rdp.h"

namespace hansa {

struct PrivacyBudget {
  double epsilon = 0;  // maximum epsilon, > 0
  double delta = 0;    // in (0, 1)
};

class PrivacyLedger {
 public:
  // Loads `path` when it exists, else starts empty (the file appears at the first Record).
  // Curves are on DefaultRdpOrders(). DataLoss when the file is malformed or was written with
  // other orders; InvalidArgument for a bad budget.
  static StatusOr<PrivacyLedger> Open(std::string path, PrivacyBudget budget);

  const PrivacyBudget& budget() const { return budget_; }
  size_t num_rounds() const { return rounds_.size(); }

  // Spent so far: epsilon 0 and the budget's delta when nothing is recorded.
  PrivacySpent Spent() const;
  // What would be spent with one more round of this RDP curve (one value per default order).
  StatusOr<PrivacySpent> SpentWith(const std::vector<double>& round_rdp) const;
  // OK when one more such round stays within the budget; FailedPrecondition saying the
  // epsilon it would reach and the maximum otherwise.
  Status CheckFits(const std::vector<double>& round_rdp) const;
  // CheckFits, then appends the round and rewrites the file. `plan` names what was spent on
  // (a site's plan digest, PlanSha256); the coordinator leaves it empty. InvalidArgument for a
  // round id already recorded with the same `plan`: the same release booked again. The same
  // round id with another plan is a release of its own and is appended (a later study numbering
  // its rounds from 1 again, or a coordinator sending a second plan under a used number). On a
  // write error nothing is recorded.
  Status Record(int64_t round, const std::string& mechanism, const std::vector<double>& round_rdp,
                const std::string& plan = "");

 private:
  struct Entry {
    int64_t round;
    std::string mechanism;
    std::vector<double> rdp;
    std::string plan;  // empty: not named (the coordinator's entries, older files)
  };
  PrivacyLedger(std::string path, PrivacyBudget budget)
      : path_(std::move(path)), budget_(budget), total_(DefaultRdpOrders().size(), 0.0) {}
  Status Save(const std::vector<Entry>& rounds) const;

  std::string path_;
  PrivacyBudget budget_;
  std::vector<Entry> rounds_;
  std::vector<double> total_;  // sum of rounds_[*].rdp
};

}  // namespace hansa
