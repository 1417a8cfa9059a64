// The exact AUC-ROC of scores by counting every (positive, negative) pair, ties as half: the
// reference the federation's histogram AUC is checked against.
#pragma once

#include <vector>

namespace hansa::test_support {

inline double ExactAuc(const std::vector<double>& scores, const std::vector<bool>& positive) {
  double right = 0, pairs = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!positive[i]) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (positive[j]) continue;
      right += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
      pairs += 1;
    }
  }
  return right / pairs;
}

}  // namespace hansa::test_support
