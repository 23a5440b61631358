"""History-guided sampling, HiGS (Sadat et al. 2025, "History-Guided Sampling for Plug-and-Play
Enhancement of Diffusion Models", Eq. 5-6): the model output pushed away from a weighted average of
the outputs at earlier steps,

    D'(x_t) = D(x_t) + w (D(x_t) - H),   H <- decay H + (1 - decay) D(x_t) after each step,

H the exponentially weighted history (the first output sets it; no push before there is one), and w
active only for normalised times u = (t - t_min)/(t_max - t_min) in [u_min, u_max] (the paper's
window). The history is the carry of the add-on; ``space`` picks the parameterisation pushed (the
paper pushes the denoiser, x0). Zero strength (w = 0) is the inner model itself.
"""
from __future__ import annotations

import jax.numpy as jnp

from samplers.addons.core import Addon, identity
from samplers.checks import check_number
from samplers.param import check_prediction, convert
from samplers.schedules import Schedule


def higs(schedule: Schedule, predicts: str = "eps", strength: float = 0.5, decay: float = 0.5, space: str = "x0",
         u_min: float = 0.0, u_max: float = 1.0) -> Addon:
    """HiGS with weight ``strength`` (the paper's is > 0; < 0 pulls towards the history), history
    ``decay`` in [0, 1) and window [u_min, u_max] in [0, 1]."""
    check_prediction(predicts)
    check_prediction(space, "space")
    w = check_number("strength", strength)
    decay = check_number("decay", decay, 0.0)
    if decay >= 1:
        raise ValueError(f"decay must be in [0, 1), got {decay!r}")
    u_min, u_max = check_number("u_min", u_min, 0.0), check_number("u_max", u_max, 0.0)
    if not u_min < u_max <= 1:
        raise ValueError(f"u_min and u_max must satisfy 0 <= u_min < u_max <= 1, got {u_min!r}, {u_max!r}")
    if w == 0:
        return identity()
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)

    def init(x, key):
        return jnp.zeros_like(x), jnp.zeros((), x.dtype)  # (H, 1 once there is a history)

    def wrap(carry, key, fn):
        hist, seen = carry

        def guided(x, t):
            d = convert(fn(x, t), x, t, schedule, predicts, space)
            u = (t - t_min) / (t_max - t_min)
            on = seen * ((u >= u_min) & (u <= u_max)).astype(x.dtype)
            return convert(d + w * on * (d - hist), x, t, schedule, space, predicts)

        return guided

    def update(carry, calls):
        hist, seen = carry
        x, t, out = calls[-1]
        d = convert(out, x, t, schedule, predicts, space)
        return jnp.where(seen > 0, decay * hist + (1 - decay) * d, d), jnp.ones_like(seen)

    return Addon(init=init, wrap=wrap, update=update)
