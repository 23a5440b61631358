"""Gaussian teleportation: the first, high-noise part of the probability-flow ODE in closed form.

For data N(m, U diag(l) U^T) the PF-ODE in the variance-exploding variables x / alpha and
s = sigma / alpha is dx/ds = s (C + s^2 I)^{-1} (x - m), solved by (REFERENCES.md, "Gaussian
teleportation")

    x(s_1) = m + U diag(sqrt((s_1^2 + l) / (s_0^2 + l))) U^T (x(s_0) - m).

At high noise the data's mean and covariance decide the flow, so the Gaussian fitted to the data
(``mean``, ``cov``) carries the noise from t_0 to a later t_1 without a model call; a solver then
takes over from t_1. In the VP variables the map is affine, x_1 = P x_0 + c with
P = (alpha_1 / alpha_0) M, c = alpha_1 (I - M) m, M = U diag(...) U^T, built once in numpy.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from samplers.core import Sampler
from samplers.schedules import Schedule


def gaussian_flow_map(schedule: Schedule, mean, cov, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, c) with x(t1) = P x(t0) + c along the PF-ODE of N(mean, cov) (module docstring)."""
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    if mean.ndim != 1 or cov.shape != (len(mean), len(mean)):
        raise ValueError(f"mean must be (d,) and cov (d, d); got {mean.shape} and {cov.shape}")
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    if np.any(vals < 0):
        raise ValueError("cov must be positive semi-definite")
    a0, a1 = float(schedule.alpha(t0)), float(schedule.alpha(t1))
    s0, s1 = float(schedule.sigma(t0)) / a0, float(schedule.sigma(t1)) / a1
    m = (vecs * np.sqrt((s1**2 + vals) / (s0**2 + vals))) @ vecs.T
    return (a1 / a0) * m, a1 * (mean - m @ mean)


def teleport(solver: Sampler, schedule: Schedule, mean, cov, t0: float, t1: float) -> Sampler:
    """``solver`` (whose grid starts at ``t1``) started from noise at ``t0`` carried to ``t1`` by the
    Gaussian's closed-form flow: same steps and model calls, x (..., d) mapped in ``init``."""
    if not t0 >= t1:
        raise ValueError(f"t0 ({t0}) must be at least t1 ({t1}): teleportation goes from noise towards data")
    p, c = gaussian_flow_map(schedule, mean, cov, t0, t1)

    def init(x, key=None, model_fn=None):
        x1 = x @ jnp.asarray(p.T, x.dtype) + jnp.asarray(c, x.dtype)
        return solver.init(x1, key, model_fn)

    return solver._replace(init=init)
