#include "common/privacy/rdp.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/status/check.h"

namespace hansa {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)) without overflow.
double LogAdd(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  double hi = std::max(a, b);
  return hi + std::log1p(std::exp(std::min(a, b) - hi));
}

// log(exp(a) - exp(b)) for a >= b; NaN when a < b (a numerical failure the caller rejects).
double LogSub(double a, double b) {
  if (b == -kInf) return a;
  if (a < b) return std::numeric_limits<double>::quiet_NaN();
  if (a == b) return -kInf;
  return a + std::log(-std::expm1(b - a));
}

// log(erfc(x)), accurate where erfc underflows: for x >= 25 the asymptotic (Laurent) series
// erfc(x) ~ exp(-x^2) / (x sqrt(pi)) * exp(-1/(2x^2) + 5/(8x^4) - 37/(24x^6) + 353/(64x^8)),
// whose next term is below 1e-12 there.
double LogErfc(double x) {
  if (x < 25) return std::log(std::erfc(x));
  double r = 1 / (x * x);
  return -0.5 * std::log(M_PI) - std::log(x) - x * x - 0.5 * r + 0.625 * r * r -
         37.0 / 24.0 * r * r * r + 353.0 / 64.0 * r * r * r * r;
}

double LogBinomial(double n, double k) {
  return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1);
}

// Mironov-Talwar-Zhang 2019, Sec. 3.3, integer alpha: A = sum_i C(alpha,i) q^i (1-q)^(alpha-i)
// exp((i^2 - i) / (2 z^2)).
double LogAInteger(double q, double z, int64_t alpha) {
  double log_a = -kInf;
  for (int64_t i = 0; i <= alpha; ++i) {
    double di = static_cast<double>(i);
    double log_coef = LogBinomial(static_cast<double>(alpha), di) + di * std::log(q) +
                      static_cast<double>(alpha - i) * std::log1p(-q);
    log_a = LogAdd(log_a, log_coef + (di * di - di) / (2 * z * z));
  }
  return log_a;
}

// Mironov-Talwar-Zhang 2019, Sec. 3.3, fractional alpha: A = A0 + A1, two series split at
// z0 = z^2 log(1/q - 1) + 1/2, each term a generalized binomial coefficient times a Gaussian
// tail (erfc). Summed until both new terms are below exp(-30) (as TF Privacy and Opacus do).
double LogAFractional(double q, double z, double alpha) {
  double log_a0 = -kInf, log_a1 = -kInf;
  double z0 = z * z * std::log(1 / q - 1) + 0.5;
  double log_abs_coef = 0;  // log |C(alpha, i)|, updated by C(a,i) = C(a,i-1) (a-i+1)/i
  bool coef_positive = true;
  for (int64_t i = 0; i < 1000000; ++i) {
    double di = static_cast<double>(i);
    if (i > 0) {
      double factor = (alpha - di + 1) / di;
      log_abs_coef += std::log(std::fabs(factor));
      if (factor < 0) coef_positive = !coef_positive;
    }
    double j = alpha - di;
    double log_t0 = log_abs_coef + di * std::log(q) + j * std::log1p(-q);
    double log_t1 = log_abs_coef + j * std::log(q) + di * std::log1p(-q);
    double log_e0 = std::log(0.5) + LogErfc((di - z0) / (M_SQRT2 * z));
    double log_e1 = std::log(0.5) + LogErfc((z0 - j) / (M_SQRT2 * z));
    double log_s0 = log_t0 + (di * di - di) / (2 * z * z) + log_e0;
    double log_s1 = log_t1 + (j * j - j) / (2 * z * z) + log_e1;
    if (coef_positive) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30) break;
  }
  return LogAdd(log_a0, log_a1);
}

Status ValidateDelta(double delta) {
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta ", delta, " is outside (0, 1); use e.g. 1e-5"));
  }
  return absl::OkStatus();
}

Status ValidateRdp(const std::vector<double>& orders, const std::vector<double>& rdp) {
  if (orders.empty() || orders.size() != rdp.size()) {
    return absl::InvalidArgumentError(absl::StrCat("need one RDP value per order; got ",
                                                   orders.size(), " orders and ", rdp.size(),
                                                   " values"));
  }
  for (size_t i = 0; i < orders.size(); ++i) {
    if (!(orders[i] > 1) || std::isinf(orders[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("RDP order ", orders[i], " must be finite and > 1"));
    }
    if (!(rdp[i] >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("RDP value ", rdp[i], " at order ", orders[i], " must be >= 0"));
    }
  }
  return absl::OkStatus();
}

template <typename EpsFn>
StatusOr<PrivacySpent> MinimizeOverOrders(const std::vector<double>& orders,
                                          const std::vector<double>& rdp, double delta,
                                          EpsFn eps_at) {
  RETURN_IF_ERROR(ValidateDelta(delta));
  RETURN_IF_ERROR(ValidateRdp(orders, rdp));
  PrivacySpent best{kInf, delta, orders[0]};
  for (size_t i = 0; i < orders.size(); ++i) {
    double eps = eps_at(orders[i], rdp[i]);
    if (eps < best.epsilon) best = {eps, delta, orders[i]};
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

}  // namespace

const std::vector<double>& DefaultRdpOrders() {
  static const std::vector<double>* orders = [] {
    auto* v = new std::vector<double>;
    for (int x = 1; x < 100; ++x) v->push_back(1 + x / 10.0);
    for (int a = 12; a < 64; ++a) v->push_back(a);
    return v;
  }();
  return *orders;
}

double SampledGaussianRdp(double q, double z, double alpha) {
  if (q == 1) return alpha / (2 * z * z);  // plain Gaussian: alpha / (2 z^2), Mironov 2017
  double log_a = alpha == std::floor(alpha) ? LogAInteger(q, z, static_cast<int64_t>(alpha))
                                            : LogAFractional(q, z, alpha);
  return std::max(0.0, log_a / (alpha - 1));
}

Status ValidateSampledGaussian(double q, double z, int64_t steps) {
  if (!(q > 0 && q <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling rate ", q, " is outside (0, 1]; it is batch size / dataset size"));
  }
  if (!(z > 0) || std::isinf(z)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier ", z, " must be positive and finite"));
  }
  if (steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("steps ", steps, " must be at least 1"));
  }
  return absl::OkStatus();
}

StatusOr<std::vector<double>> ComputeSampledGaussianRdp(double q, double z, int64_t steps,
                                                        const std::vector<double>& orders) {
  RETURN_IF_ERROR(ValidateSampledGaussian(q, z, steps));
  std::vector<double> rdp;
  rdp.reserve(orders.size());
  for (double alpha : orders) {
    if (!(alpha > 1) || std::isinf(alpha)) {
      return absl::InvalidArgumentError(
          absl::StrCat("RDP order ", alpha, " must be finite and > 1"));
    }
    double r = SampledGaussianRdp(q, z, alpha);
    if (std::isnan(r)) {
      return absl::InternalError(absl::StrCat("sampled Gaussian RDP is NaN at q=", q, " z=", z,
                                              " order ", alpha, "; report this as a bug"));
    }
    rdp.push_back(r * static_cast<double>(steps));
  }
  return rdp;
}

StatusOr<PrivacySpent> EpsilonFromRdp(const std::vector<double>& orders,
                                      const std::vector<double>& rdp, double delta) {
  return MinimizeOverOrders(orders, rdp, delta, [delta](double a, double r) {
    return r - (std::log(delta) + std::log(a)) / (a - 1) + std::log((a - 1) / a);
  });
}

StatusOr<PrivacySpent> EpsilonFromRdpClassic(const std::vector<double>& orders,
                                             const std::vector<double>& rdp, double delta) {
  return MinimizeOverOrders(orders, rdp, delta,
                            [delta](double a, double r) { return r - std::log(delta) / (a - 1); });
}

StatusOr<PrivacySpent> SampledGaussianEpsilon(double q, double z, int64_t steps, double delta) {
  RETURN_IF_ERROR(ValidateDelta(delta));
  ASSIGN_OR_RETURN(auto rdp, ComputeSampledGaussianRdp(q, z, steps, DefaultRdpOrders()));
  return EpsilonFromRdp(DefaultRdpOrders(), rdp, delta);
}

StatusOr<double> PlanNoiseMultiplier(double epsilon, double delta, double q, int64_t steps) {
  RETURN_IF_ERROR(ValidateDelta(delta));
  RETURN_IF_ERROR(ValidateSampledGaussian(q, 1.0, steps));
  if (!(epsilon > 0) || std::isinf(epsilon)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target epsilon ", epsilon, " must be positive and finite"));
  }
  // With infinite noise the RDP is 0 and only the conversion's own terms remain: no z can do
  // better than that floor.
  const auto& orders = DefaultRdpOrders();
  ASSIGN_OR_RETURN(PrivacySpent floor,
                   EpsilonFromRdp(orders, std::vector<double>(orders.size(), 0.0), delta));
  if (epsilon <= floor.epsilon) {
    return absl::InvalidArgumentError(
        absl::StrCat("target epsilon ", epsilon, " is unreachable at delta ", delta,
                     ": even infinite noise gives epsilon ", floor.epsilon,
                     " with the default RDP orders; raise epsilon or delta"));
  }
  auto meets = [&](double z) -> StatusOr<bool> {
    ASSIGN_OR_RETURN(PrivacySpent spent, SampledGaussianEpsilon(q, z, steps, delta));
    return spent.epsilon <= epsilon;
  };
  double lo = 0, hi = 1;
  for (;;) {
    ASSIGN_OR_RETURN(bool ok, meets(hi));
    if (ok) break;
    lo = hi;
    hi *= 2;
    if (hi > 1e12) {
      return absl::InternalError(absl::StrCat("no noise multiplier up to 1e12 reaches epsilon ",
                                              epsilon, "; report this as a bug"));
    }
  }
  // Invariant: meets(hi), !meets(lo) (lo = 0 means no noise: epsilon infinite).
  while (hi - lo > kPlanRelativeTolerance * hi) {
    double mid = 0.5 * (lo + hi);
    ASSIGN_OR_RETURN(bool ok, meets(mid));
    (ok ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace hansa
