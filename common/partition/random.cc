#include "common/partition/random.h"

#include <cmath>
#include <limits>
#include <utility>

namespace hansa {

double PortableRandom::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

double PortableRandom::Normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * Uniform() - 1.0;
    v = 2.0 * Uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double f = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * f;
  has_spare_ = true;
  return u * f;
}

double PortableRandom::Gamma(double shape) {
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    const double u = 1.0 - Uniform();  // (0, 1]
    return Gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = Normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = 1.0 - Uniform();  // (0, 1]
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

std::vector<double> PortableRandom::Dirichlet(int n, double alpha) {
  std::vector<double> out(n > 0 ? n : 0);
  double sum = 0;
  for (double& x : out) {
    x = Gamma(alpha);
    sum += x;
  }
  if (sum <= 0) {  // every gamma underflowed (tiny alpha): put all mass on one component
    out.assign(out.size(), 0.0);
    if (!out.empty()) out[Below(out.size())] = 1.0;
    return out;
  }
  for (double& x : out) x /= sum;
  return out;
}

void PortableRandom::Shuffle(std::vector<int64_t>* values) {
  for (size_t i = values->size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(Below(i));
    std::swap((*values)[i - 1], (*values)[j]);
  }
}

}  // namespace hansa
