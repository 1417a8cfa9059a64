# Development aid, not run by ctest: recomputes the independent reference values used in
# rdp_test.cc and ddg_test.cc with mpmath (`python3 reference_values.py [ddg]`) (50 digits), straight from the
# definitions rather than from the series the C++ code uses.
#
#   A_alpha = E_{x ~ N(0, z^2)} [((1 - q) + q exp((2x - 1) / (2 z^2)))^alpha]
#   RDP(alpha) = T * log(A_alpha) / (alpha - 1)           (Mironov, Talwar, Zhang 2019, Sec. 3)
#
# computed by numerical integration (mpmath.quad), for integer and fractional alpha.
import sys

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


def ddg_epsilon(d, c, gamma, z, n, beta, rounds, delta):
    """Distributed discrete Gaussian, recomputed from Kairouz, Liu, Steinke 2021 (arXiv
    2102.06387) Thm. 1 and Prop. 14 with 50-digit arithmetic; orders as above."""
    d, c, gamma, z, beta = map(mp.mpf, (d, c, gamma, z, beta))
    dp = 2 ** int(mp.ceil(mp.log(d, 2)))
    cs = c / gamma
    b1 = cs + mp.sqrt(dp)
    d2 = b1
    if beta > 0:
        d2 = min(b1, mp.sqrt(cs**2 + dp / 4 + mp.sqrt(2 * mp.log(1 / beta)) * (cs + mp.sqrt(dp) / 2)))
    d1 = d2 * min(mp.sqrt(dp), d2)
    s2 = mp.ceil((z * c / gamma) ** 2 / n * 256) / 256
    tau = 10 * sum(mp.exp(-2 * mp.pi**2 * s2 * k / (k + 1)) for k in range(1, n))
    l2, l1 = d2 / mp.sqrt(n * s2), d1 / mp.sqrt(n * s2)
    orders = [1 + mp.mpf(x) / 10 for x in range(1, 100)] + list(range(12, 64))
    rdps = [rounds * min(a / 2 * l2**2 + tau * dp, a / 2 * (l2**2 + 2 * l1 * tau + tau**2 * dp),
                         a / 2 * (l2 + mp.sqrt(dp) * tau) ** 2) for a in orders]
    return eps_from_rdp(orders, rdps, mp.mpf(delta)), tau, d2


if __name__ == "__main__" and sys.argv[1:] == ["ddg"]:
    for args in [(1000, 1, 0.01, 1.0, 5, mp.exp(-0.5), 10, 1e-5),
                 (10, 1, 1 / 32, 1.0, 1000, mp.exp(-0.5), 50, 1e-5),
                 (300, 2, 0.05, 3.0, 3, 0, 20, 1e-6)]:
        (e, a), tau, d2 = ddg_epsilon(*args)
        print(f"ddg {args}: eps={mp.nstr(e, 12)} order={mp.nstr(a, 4)} tau={mp.nstr(tau, 6)} "
              f"bound={mp.nstr(d2, 12)}")
elif __name__ == "__main__":
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
