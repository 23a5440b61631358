"""Density guidance (Karczewski, Heinonen & Garg 2025, "Devil is in the Details: Density Guidance for
Detail-Aware Generation with Flow Models", Sec. 4): the smallest change of the probability-flow drift u
that prescribes how log p_t(x_t) evolves along the trajectory. For a drift u + du the log-density obeys
d/dt log p_t(x_t) = -div u + grad log p_t . du, and the minimum-norm du adding a rate r is
du = r grad log p_t / |grad log p_t|^2.

Here the prescribed rate is the base flow's plus an extra ``delta`` nats over the run from t_start to
t_end (an explicit log-density offset: ``delta`` < 0 gives lower-density, more detailed samples, > 0
smoother ones), added in log-SNR lambda at the rate rho s(lambda) with s = 1 / (1 + e^{2 lambda}) the
noise fraction sigma^2 / (alpha^2 + sigma^2): the offset goes in while the sample is noisy, where
|eps|^2 is about the dimension and the relative change below is small; as sigma -> 0 the noise
prediction of a sample near the data vanishes and a constant rate would need an unbounded change, s
vanishing with it. In lambda-time the drift of x / alpha is -e^{-lambda} eps and grad log p_t =
-eps / sigma_t, so the change is a rescaling of the noise prediction, per example,

    eps~ = eps (1 + rho s(lambda_t) / |eps|^2),   rho = delta / int s dlambda
         = delta / (S(lambda(t_start)) - S(lambda(t_end))),   S(lam) = log(1 + e^{-2 lam}) / 2,

the same for every schedule (flow, VP, VE), finite for t_end = 0 of a flow; the solver integrates the
guided ODE. The offset is exact for an exact ODE solve; a log-density above the modes' cannot be reached,
so large positive ``delta`` (beyond about d/2 nats in d dimensions) is not meaningful. No extra model
calls.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.addons.core import Addon, identity, stateless
from samplers.checks import check_number
from samplers.addons.guidance import shift_eps
from samplers.param import check_prediction, to_x0_eps
from samplers.schedules import Schedule


def density_guidance(schedule: Schedule, delta: float, t_start: float | None = None, t_end: float | None = None,
                     predicts: str = "eps") -> Addon:
    """Add ``delta`` nats to log p of the sample over a deterministic run from ``t_start`` (default
    ``t_max``) to ``t_end`` (default ``t_min``); 0 is the base solver."""
    check_prediction(predicts)
    delta = check_number("delta", delta)
    t0 = float(schedule.t_max) if t_start is None else check_number("t_start", t_start)
    t1 = float(schedule.t_min) if t_end is None else check_number("t_end", t_end)
    with np.errstate(divide="ignore"):
        lam0, lam1 = (float(schedule.lambda_(np.float64(t))) for t in (t0, t1))
    mass = 0.5 * (np.logaddexp(0.0, -2.0 * lam0) - np.logaddexp(0.0, -2.0 * lam1))
    if not (schedule.t_min <= t1 < t0 <= schedule.t_max and np.isfinite(mass) and mass > 0):
        raise ValueError(f"t_end < t_start must lie in [{schedule.t_min}, {schedule.t_max}] with a finite log-SNR at "
                         f"t_start, got t_start={t0!r}, t_end={t1!r}")
    if delta == 0:
        return identity()
    rho = delta / mass

    def wrap(fn):
        def guided(x, t):
            out = fn(x, t)
            eps = to_x0_eps(out, x, t, schedule, predicts)[1]
            norm2 = jnp.sum(eps * eps, axis=tuple(range(1, x.ndim)), keepdims=True)
            rate = rho * jax.nn.sigmoid(-2.0 * schedule.lambda_(jnp.asarray(t, x.dtype))).astype(x.dtype)
            return shift_eps(out, rate * eps / jnp.maximum(norm2, jnp.finfo(x.dtype).tiny), x, t, schedule, predicts)

        return guided

    return stateless(wrap)
