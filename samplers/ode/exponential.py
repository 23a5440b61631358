"""Exponential-integrator coefficients shared by DPM-Solver(++), UniPC and DDIM.

From point s to point t (each (alpha, sigma, lambda)), h = lambda_t - lambda_s, the linear
part of the probability-flow ODE is integrated exactly and the model output expanded in
lambda, with phi_k(z) = sum_j z^j / (j + k)! (Lu et al. 2022a, b; Hochbruck & Ostermann 2010).
"""
from __future__ import annotations

import math

from samplers.schedules import xp_of


def phi(k: int, z):
    """phi_k(z) = sum_{j>=0} z^j / (j+k)! (phi_1 = (e^z - 1)/z, phi_(k+1) = (phi_k - 1/k!)/z); by its
    series for |z| < 1/2 (no cancellation, also in float32), in closed form elsewhere."""
    xp = xp_of(z)
    small = xp.abs(z) < 0.5
    zs = xp.where(small, z, xp.zeros_like(z))
    series = xp.zeros_like(z) + 1.0 / math.factorial(k + 16)
    for j in range(15, -1, -1):
        series = series * zs + 1.0 / math.factorial(j + k)
    zc = xp.where(small, xp.ones_like(z), z)
    closed = xp.expm1(zc) / zc
    for m in range(1, k):
        closed = (closed - 1.0 / math.factorial(m)) / zc
    return xp.where(small, series, closed)


def exp_coefs(space: str, p_s, p_t, k: int = 1):
    """(A, [c_1, ..., c_k]) of the step from point p_s to p_t, points being (alpha, sigma, lambda).

    x0 space: A = sigma_t/sigma_s, c_n = alpha_t h phi_n(-h); eps space: A = alpha_t/alpha_s,
    c_n = -sigma_t h phi_n(h). c_1 is written as alpha_t (1 - e^-h), resp.
    -(alpha_t sigma_s / alpha_s)(1 - e^-h), so it stays finite at sigma_t = 0 (h = inf), where
    only k = 1 is defined. Works on numpy (build time) and JAX (in a trace) values alike.
    """
    (a_s, s_s, l_s), (a_t, s_t, l_t) = p_s, p_t
    xp = xp_of(a_s, s_s, l_s, a_t, s_t, l_t)
    h = l_t - l_s
    one_minus = -xp.expm1(-h)
    if space == "x0":
        A, scale, z, c1 = s_t / s_s, a_t, -h, a_t * one_minus
    else:
        A, scale, z, c1 = a_t / a_s, -s_t, h, -(a_t * s_s / a_s) * one_minus
    return A, [c1] + [scale * h * phi(n, z) for n in range(2, k + 1)]
