"""Mode-interpolation (hallucination) detection (Aithal et al. 2024, "Understanding Hallucinations in
Diffusion Models through Mode Interpolation", Sec. 5): samples that land between the modes of the data
have a predicted x0 that keeps switching in the final steps, so the variance of x0_hat over the
trajectory's last part separates them from samples on a mode.

``x0_variance`` is an add-on carrying per sample the count, sum and sum of squares of x0_hat over the
model calls at normalised times u = (t - t_min)/(t_max - t_min) <= ``u_max``; it never touches the
model output. ``trajectory_variance(state)`` reads the variance (summed over features) from the final
state of ``with_addons``; ``keep_mask`` / ``drop_flagged`` filter the samples above a threshold.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from samplers.addons.core import Addon, AddonState
from samplers.checks import check_number
from samplers.param import check_prediction, convert
from samplers.schedules import Schedule


def x0_variance(schedule: Schedule, predicts: str = "eps", u_max: float = 0.3) -> Addon:
    """Carry the running moments of x0_hat over the calls with u <= ``u_max`` (0 < u_max <= 1)."""
    check_prediction(predicts)
    u_max = check_number("u_max", u_max, 0.0, open_lo=True)
    if u_max > 1:
        raise ValueError(f"u_max must be in (0, 1], got {u_max!r}")
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)

    def init(x, key):
        return jnp.zeros((), x.dtype), jnp.zeros_like(x), jnp.zeros_like(x)

    def update(carry, calls):
        n, s1, s2 = carry
        for x, t, out in calls:
            x0 = convert(out, x, t, schedule, predicts, "x0")
            on = ((t - t_min) / (t_max - t_min) <= u_max).astype(x.dtype)
            n, s1, s2 = n + on, s1 + on * x0, s2 + on * x0 * x0
        return n, s1, s2

    return Addon(init=init, wrap=lambda carry, key, fn: fn, update=update)


def trajectory_variance(state: AddonState, index: int = 0) -> jnp.ndarray:
    """Per-sample variance of x0_hat (summed over features) of the ``index``-th add-on's carry."""
    n, s1, s2 = state.carry[index]
    n = jnp.maximum(n, 1)
    var = s2 / n - (s1 / n) ** 2
    return jnp.sum(jnp.maximum(var, 0).reshape(var.shape[0], -1), axis=1)


def keep_mask(variance, threshold: float) -> np.ndarray:
    """True for the samples kept (variance <= ``threshold``)."""
    threshold = check_number("threshold", threshold, 0.0)
    return np.asarray(variance) <= threshold


def drop_flagged(x, variance, threshold: float) -> np.ndarray:
    """The samples of ``x`` whose x0_hat variance is at most ``threshold`` (host-side, variable count)."""
    return np.asarray(x)[keep_mask(variance, threshold)]
