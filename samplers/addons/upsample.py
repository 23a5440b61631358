"""Upsample guidance (Hwang, Park & Jo 2024, "Upsample Guidance: Scale Up Diffusion Models without
Training", Sec. 3): a model trained at one resolution samples images m times larger, guided by its own
prediction on the m x m average-pooled image.

Average pooling D maps x_t = alpha_t x0 + sigma_t eps to alpha_t D(x0) + (sigma_t / m) eps' with
eps' ~ N(0, I) at the low resolution, i.e. a noisy low-resolution image of log-SNR lambda_t + log m:
at tau with lambda_tau = lambda_t + log m (clipped to the schedule's range) it is
x_tau = (alpha_tau / alpha_t) D(x_t) (SNR matching, Eq. 8-9). The guided noise prediction replaces the
low-frequency part of eps by the low-resolution model's (Eq. 11),

    eps~ = eps(x_t, t) + w_t U( eps(x_tau, tau) / m - D(eps(x_t, t)) ),

U the nearest upsampling (D U = identity), so at w_t = 1 the pooled trajectory is a low-resolution
sampling run (exactly for DDIM). w_t = w for the first ``eta`` of the time range (t - t_min >=
(1 - eta)(t_max - t_min)), 0 after (the paper's step schedule). x is image-shaped (B, H, W, C) with H and
W divisible by m; each solver call costs two model calls.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from samplers.addons.core import Addon, identity
from samplers.checks import check_number
from samplers.addons.guidance import shift_eps
from samplers.param import check_prediction, to_x0_eps
from samplers.schedules import Schedule


def pool(x, m: int):
    """D: the m x m average pooling of (B, H, W, C) images."""
    b, h, w, c = x.shape
    if h % m or w % m:
        raise ValueError(f"image size {h}x{w} must be divisible by factor={m}")
    return x.reshape(b, h // m, m, w // m, m, c).mean(axis=(2, 4))


def unpool(x, m: int):
    """U: nearest upsampling by m (pool(unpool(x)) == x)."""
    return jnp.repeat(jnp.repeat(x, m, axis=1), m, axis=2)


def upsample_guidance(schedule: Schedule, strength: float = 1.0, factor: int = 2, eta: float = 1.0,
                      predicts: str = "eps") -> Addon:
    """Upsample guidance of weight ``strength`` (0: the base solver) from the ``factor`` x ``factor`` pooled
    image, applied over the first ``eta`` in (0, 1] of the time range."""
    check_prediction(predicts)
    w = check_number("strength", strength)
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 2:
        raise ValueError(f"factor must be an integer >= 2, got {factor!r}")
    eta = check_number("eta", eta, 0.0, open_lo=True)
    if eta > 1:
        raise ValueError(f"eta must be in (0, 1], got {eta!r}")
    if w == 0:
        return identity()
    m, t_min, t_max = int(factor), float(schedule.t_min), float(schedule.t_max)

    def wrap(carry, key, fn):
        def guided(x, t):
            out = fn(x, t)
            eps = to_x0_eps(out, x, t, schedule, predicts)[1]
            t = jnp.asarray(t, x.dtype)
            tau = jnp.clip(schedule.t_from_lambda(schedule.lambda_(t) + np.log(m)), t_min, t)
            low = (schedule.alpha(tau) / schedule.alpha(t)).astype(x.dtype) * pool(x, m)
            eps_low = to_x0_eps(fn(low, tau), low, tau, schedule, predicts)[1]
            w_t = jnp.where(t - t_min >= (1.0 - eta) * (t_max - t_min), w, 0.0).astype(x.dtype)
            return shift_eps(out, w_t * unpool(eps_low / m - pool(eps, m), m), x, t, schedule, predicts)

        return guided

    return Addon(init=lambda x, key: (), wrap=wrap, calls_per_call=2)
