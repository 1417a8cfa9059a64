// Pooled feature standardisation, a federation step (issue 15): before round 1, every site
// sends, as its "update" of a statistics plan, the sum and the sum of squares of each of its
// features and its row count. Secure aggregation adds them up with weight 1 per site, so the
// coordinator unmasks only the totals, from which every site gets the same mean and standard
// deviation (the population one, as over the concatenated files) in later plans.
//
// Sums, not means: secure aggregation quantizes each value on one fixed step, and a site's
// weight would scale its values down to that step's order. Each sum travels as two floats, a
// float32 and the rest (v = hi + lo), so that it keeps about 48 bits through the float32
// update path: [sum_hi (d), sum_lo (d), squares_hi (d), squares_lo (d), rows_hi, rows_lo].
//
// Plain data over the wire contract. Thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// Values in the update of a statistics plan over `features` features.
inline int64_t MomentValues(int64_t features) { return 4 * features + 2; }

// A site's update: per feature, the sum and the sum of squares of its rows (each of size
// `features`), and the number of rows. InvalidArgument when the sizes differ or a value is
// not finite.
StatusOr<std::vector<float>> EncodeMoments(const std::vector<double>& sum,
                                           const std::vector<double>& sum_squares, int64_t rows);

// The standardisation from the sites' updates added up (in double precision). A feature whose
// variance is 0 (or below rounding) gets std 1, so that it stays finite. InvalidArgument
// unless `summed` holds MomentValues(features) finite values and at least one row.
StatusOr<v1::Standardization> PooledStandardization(const std::vector<double>& summed,
                                                    int64_t features);

// InvalidArgument unless `s` has `features` finite means and positive finite stds.
Status CheckStandardization(const v1::Standardization& s, int64_t features);

}  // namespace hansa
