#include "coordinator/aggregator.h"

#include <algorithm>
#include <cstdint>

#include "common/fileio/fileio.h"
#include "common/status/check.h"
#include "common/tensor/tensor.h"

namespace hansa {

StreamingAggregator::StreamingAggregator(int64_t size, std::string spill_dir)
    : size_(size),
      stripe_size_(std::max<int64_t>(1, (size + kStripes - 1) / kStripes)),
      spill_dir_(std::move(spill_dir)),
      sum_(static_cast<size_t>(size)) {
  for (int64_t stripe = 0; stripe < kStripes; ++stripe) {
    populated_to_[static_cast<size_t>(stripe)] = std::min(size_, stripe * stripe_size_);
  }
}

StreamingAggregator::~StreamingAggregator() = default;

void StreamingAggregator::Add(int64_t first, const float* values, size_t count, double weight) {
  int64_t end = first + static_cast<int64_t>(count);
  for (int64_t lo = first; lo < end;) {
    int64_t stripe = StripeOf(lo);
    int64_t hi = std::min(end, (stripe + 1) * stripe_size_);
    absl::MutexLock lock(&stripes_[stripe]);
    double* sum = sum_.data();
    int64_t& populated_to = populated_to_[static_cast<size_t>(stripe)];
    if (hi > populated_to) {  // from the mark, so that no page is left behind for the slow way
      PopulateForWriting(sum, static_cast<size_t>(populated_to) * sizeof(double),
                         static_cast<size_t>(hi) * sizeof(double));
      populated_to = hi;
    }
    const float* v = values + (lo - first);
    for (int64_t i = lo; i < hi; ++i) sum[i] += weight * static_cast<double>(v[i - lo]);
    lo = hi;
  }
}

StatusOr<std::unique_ptr<StreamingAggregator::Contribution>> StreamingAggregator::Begin(
    const std::string& name, double weight) {
  if (!(weight > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update from ", name, " has weight ", weight, "; it must be positive"));
  }
  RETURN_IF_ERROR(MakeDirs(spill_dir_));
  int64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SpillFile> spill,
                   SpillFile::Create(spill_dir_, absl::StrCat(name, "-", id)));
  return std::unique_ptr<Contribution>(new Contribution(this, name, weight, std::move(spill)));
}

int StreamingAggregator::committed() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

double StreamingAggregator::total_weight() const {
  absl::MutexLock lock(&mu_);
  return total_weight_;
}

StatusOr<std::vector<float>> StreamingAggregator::WeightedMean() const {
  double total;
  {
    absl::MutexLock lock(&mu_);
    if (committed_ == 0) return absl::FailedPreconditionError("no update was committed");
    total = total_weight_;
  }
  std::vector<float> out(sum_.size());
  for (size_t i = 0; i < sum_.size(); ++i) out[i] = static_cast<float>(sum_[i] / total);
  return out;
}

StatusOr<std::vector<float>> StreamingAggregator::TakeWeightedMean() {
  double total;
  {
    absl::MutexLock lock(&mu_);
    if (taken_) return absl::FailedPreconditionError("the weighted mean was already taken");
    if (committed_ == 0) return absl::FailedPreconditionError("no update was committed");
    total = total_weight_;
    taken_ = true;
  }
  // The mean grows block by block (reserve touches no page) while the sum's pages behind the
  // block just read go back to the kernel (ReleaseConsumedPages: they read zero if touched).
  constexpr size_t kBlock = size_t{1} << 18;  // 2 MiB of doubles: whole huge pages
  double* sum = sum_.data();
  std::vector<float> out;
  out.reserve(sum_.size());
  std::vector<float> block(std::min(kBlock, sum_.size()));
  for (size_t lo = 0; lo < sum_.size(); lo += kBlock) {
    const size_t n = std::min(kBlock, sum_.size() - lo);
    for (size_t i = 0; i < n; ++i) block[i] = static_cast<float>(sum[lo + i] / total);
    out.insert(out.end(), block.begin(), block.begin() + static_cast<std::ptrdiff_t>(n));
    ReleaseConsumedPages(sum, lo * sizeof(double), (lo + n) * sizeof(double));
  }
  return out;
}

StreamingAggregator::Contribution::Contribution(StreamingAggregator* owner, std::string name,
                                                double weight, std::unique_ptr<SpillFile> spill)
    : owner_(owner), name_(std::move(name)), weight_(weight), spill_(std::move(spill)) {}

StreamingAggregator::Contribution::~Contribution() {
  if (!done_) Abort();
}

Status StreamingAggregator::Contribution::Fold(int64_t first, const float* values, size_t count) {
  if (done_) return absl::FailedPreconditionError("update already finished");
  if (first != next_ || first + static_cast<int64_t>(count) > owner_->size_) {
    return absl::InvalidArgumentError(absl::StrCat("update from ", name_, " sent values [", first,
                                                   ", ", first + static_cast<int64_t>(count),
                                                   ") but ", next_, " was expected next"));
  }
  int64_t bad = FindNonFinite(values, count);
  if (bad >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("update from ", name_, " holds ", values[bad],
                                                   " at value ", first + bad,
                                                   "; NaN and Inf are refused"));
  }
  RETURN_IF_ERROR(spill_->Append(values, count * sizeof(float)));
  owner_->Add(first, values, count, weight_);
  next_ += static_cast<int64_t>(count);
  return absl::OkStatus();
}

Status StreamingAggregator::Contribution::Commit() {
  if (done_) return absl::FailedPreconditionError("update already finished");
  if (next_ != owner_->size_) {
    return absl::FailedPreconditionError(absl::StrCat("update from ", name_, " ended after ", next_,
                                                      " of ", owner_->size_, " values"));
  }
  done_ = true;
  spill_.reset();
  absl::MutexLock lock(&owner_->mu_);
  owner_->committed_ += 1;
  owner_->total_weight_ += weight_;
  return absl::OkStatus();
}

void StreamingAggregator::Contribution::Abort() {
  if (done_) return;
  done_ = true;
  // Subtract exactly what was added, reading the spill back in blocks. A spill we cannot read
  // back means the sum can no longer be trusted: stop, and let the restart resume from the
  // last completed round rather than publish a corrupted model.
  std::vector<float> block(1 << 16);
  for (int64_t index = 0; index < next_;) {
    size_t n = static_cast<size_t>(std::min<int64_t>(block.size(), next_ - index));
    HANSA_CHECK(
        spill_
            ->ReadAt(static_cast<uint64_t>(index) * sizeof(float), block.data(), n * sizeof(float))
            .ok());
    owner_->Add(index, block.data(), n, -weight_);
    index += static_cast<int64_t>(n);
  }
  spill_.reset();
}

}  // namespace hansa
