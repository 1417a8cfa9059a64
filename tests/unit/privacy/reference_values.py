# Development aid, not run by ctest: recomputes the independent reference values used in
# rdp_test.cc and ddg_accountant_test.cc with mpmath (50 digits), straight from the
# definitions rather than from the series the C++ code uses.
#
#   A_alpha = E_{x ~ N(0, z^2)} [((1 - q) + q exp((2x - 1) / (2 z^2)))^alpha]
#   RDP(alpha) = T * log(A_alpha) / (alpha - 1)           (Mironov, Talwar, Zhang 2019, Sec. 3)
#
# computed by numerical integration (mpmath.quad), for integer and fractional alpha.
import mpmath as mp

mp.mp.dps = 50


def rdp_sampled_gaussian(q, z, alpha, steps=1):
    q, z, alpha = mp.mpf(q), mp.mpf(z), mp.mpf(alpha)
    f = lambda x: mp.npdf(x, 0, z) * ((1 - q) + q * mp.exp((2 * x - 1) / (2 * z**2)))**alpha
    # The integrand's mass sits near 0 (the N(0,z^2) part) and near alpha (the shifted part).
    pts = [-mp.inf, -20 * z, 0, mp.mpf(alpha) / 2, alpha, alpha + 20 * z, mp.inf]
    a = mp.quad(f, pts, maxdegree=10)
    return steps * mp.log(a) / (alpha - 1)


def eps_from_rdp(orders, rdps, delta):
    best = None
    for a, r in zip(orders, rdps):
        a = mp.mpf(a)
        e = r - (mp.log(delta) + mp.log(a)) / (a - 1) + mp.log((a - 1) / a)
        if best is None or e < best[0]:
            best = (e, a)
    return best


if __name__ == "__main__":
    for (q, z, a, t) in [(0.01, 2.5, 1.5, 50), (0.01, 2.5, 2.5, 50), (0.01, 2.5, 5, 50),
                         (0.01, 2.5, 50, 50), (0.01, 2.5, 100, 50), (0.1, 2, 5, 10),
                         (1e-4, 1, 1.5, 1), (1e-3, 1, 2, 1), (0.01, 10, 20, 1),
                         (0.1, 100, 20.5, 1), (1e-6, 1, 27, 1), (0.5, 1.1, 7.3, 1),
                         (0.0025, 1.3, 13.5, 6000), (0.0025, 1.3, 14, 6000)]:
        print(f"q={q} z={z} alpha={a} T={t}: {mp.nstr(rdp_sampled_gaussian(q, z, a, t), 12)}")
    orders = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))
    for (q, z, t, d) in [(0.0025, 1.3, 6000, 1e-5), (0.01, 1.0, 1000, 1e-5), (0.004, 1.1, 15000, 1e-5)]:
        rdps = [rdp_sampled_gaussian(q, z, a, t) for a in orders]
        e, a = eps_from_rdp(orders, rdps, mp.mpf(d))
        print(f"eps q={q} z={z} T={t} delta={d}: {mp.nstr(e, 10)} at order {a}")
