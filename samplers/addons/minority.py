"""Self-guided minority sampling (Um & Ye 2024, "Self-Guided Generation of Minority Samples Using
Diffusion Models", Eq. 6-8): the minority score of x_t is how badly the model reconstructs its own
clean estimate after re-noising it to a fixed time s,

    L(x_t) = || x0_hat(x_t) - x0_hat(alpha_s x0_hat(x_t) + sigma_s n) ||^2,   n ~ N(0, I) (step key),

high on low-density (minority) features; the score is guided up it, score + w grad_x L, i.e. the
noise prediction moves by -sigma_t w grad_x L (``guidance.shift_eps``). Each solver call costs two
model calls (x_t and the re-noised point) and one backward pass; NFE counts both calls.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from samplers.addons.core import Addon, identity
from samplers.addons.guidance import check_number, shift_eps
from samplers.param import check_prediction, convert
from samplers.schedules import Schedule


def self_guided_minority(schedule: Schedule, predicts: str = "eps", strength: float = 1.0,
                         t_perturb: float | None = None) -> Addon:
    """Minority guidance of weight ``strength`` (> 0 seeks minorities; < 0 the majority) with re-noising
    time ``t_perturb`` (default: the middle of the schedule's time range)."""
    check_prediction(predicts)
    w = check_number("strength", strength)
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)
    s = 0.5 * (t_min + t_max) if t_perturb is None else check_number("t_perturb", t_perturb)
    if not t_min <= s <= t_max:
        raise ValueError(f"t_perturb must be in [{t_min}, {t_max}], got {s!r}")
    if w == 0:
        return identity()

    def wrap(carry, key, fn):
        def loss(x, t):
            out = fn(x, t)
            x0 = convert(out, x, t, schedule, predicts, "x0")
            ts = jnp.asarray(s, x.dtype)
            n = jax.random.normal(key, x.shape, x.dtype)
            xs = schedule.alpha(ts).astype(x.dtype) * x0 + schedule.sigma(ts).astype(x.dtype) * n
            x0s = convert(fn(xs, ts), xs, ts, schedule, predicts, "x0")
            return jnp.sum((x0 - x0s) ** 2), out

        def guided(x, t):
            g, out = jax.grad(loss, has_aux=True)(x, t)
            return shift_eps(out, -schedule.sigma(t).astype(x.dtype) * w * g, x, t, schedule, predicts)

        return guided

    return Addon(init=lambda x, key: (), wrap=wrap, calls_per_call=2, differentiates=True)
