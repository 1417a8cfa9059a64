// Streaming weighted sum of model updates: the coordinator's plaintext aggregation.
//
// Each site's update is folded into one running sum chunk by chunk as it arrives, so memory
// is O(model) however many sites upload at once. An upload that fails half way (truncated,
// wrong digest, site killed) must leave no trace: every folded chunk is also appended to a
// spill file on disk, and Abort() subtracts it back. Thread-safe: many Contributions may fold
// concurrently; the sum is striped across locks so uploads do not serialise on one mutex.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/status/status.h"
#include "common/tensor/huge_pages.h"
#include "coordinator/spill_file.h"

namespace hansa {

class StreamingAggregator {
 public:
  // `size` values per update; spill files go to `spill_dir` (created if missing).
  StreamingAggregator(int64_t size, std::string spill_dir);
  ~StreamingAggregator();

  // One site's update in flight. Owned by the thread receiving that upload.
  class Contribution {
   public:
    ~Contribution();  // aborts unless committed
    // Folds values [first, first+count) times the weight. Values must be finite and the
    // ranges must arrive in order without gaps or overlaps.
    Status Fold(int64_t first, const float* values, size_t count);
    // The whole update arrived and checked out: keep it. FailedPrecondition unless every
    // value was folded.
    Status Commit();
    // Removes what was folded so far (idempotent).
    void Abort();

   private:
    friend class StreamingAggregator;
    Contribution(StreamingAggregator* owner, std::string name, double weight,
                 std::unique_ptr<SpillFile> spill);
    StreamingAggregator* owner_;
    std::string name_;
    double weight_;
    std::unique_ptr<SpillFile> spill_;
    int64_t next_ = 0;
    bool done_ = false;
  };

  // Starts a contribution with weight > 0 (for FedAvg, the site's example count).
  StatusOr<std::unique_ptr<Contribution>> Begin(const std::string& name, double weight);

  int64_t size() const { return size_; }
  int committed() const;
  double total_weight() const;
  // sum / total_weight as float; FailedPrecondition when nothing was committed.
  StatusOr<std::vector<float>> WeightedMean() const;
  // WeightedMean, giving the sum's memory back to the system as it is read, so that the sum
  // (8 bytes a value) and the mean (4) are never held whole at once; the aggregator is spent
  // after it (its sum reads zero) and a second call is FailedPrecondition.
  // REQUIRES: no contribution folds or aborts any more (the upload phase is closed).
  StatusOr<std::vector<float>> TakeWeightedMean();

 private:
  static constexpr int kStripes = 64;
  void Add(int64_t first, const float* values, size_t count, double weight);
  int64_t StripeOf(int64_t index) const { return index / stripe_size_; }

  const int64_t size_;
  const int64_t stripe_size_;
  const std::string spill_dir_;
  ZeroedDoubles sum_;  // zeroed lazily by the kernel: no pass over it before the first upload
  mutable absl::Mutex stripes_[kStripes];
  // Per stripe, under its mutex: the sum's values from the stripe's start up to here are in
  // pages already faulted in for writing (PopulateForWriting), ahead of the first fold there.
  std::array<int64_t, kStripes> populated_to_{};
  mutable absl::Mutex mu_;
  int committed_ ABSL_GUARDED_BY(mu_) = 0;
  double total_weight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool taken_ ABSL_GUARDED_BY(mu_) = false;  // TakeWeightedMean gave the sum back
};

}  // namespace hansa
