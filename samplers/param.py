"""Parameterisation converters, guidance and thresholding: the one place they live.

With x = alpha x0 + sigma eps:

* eps   -> x0:  x0 = (x - sigma eps) / alpha
* v     (Salimans & Ho 2022, v = alpha eps - sigma x0):
        x0 = (alpha x - sigma v) / (alpha^2 + sigma^2),  eps = (sigma x + alpha v) / (alpha^2 + sigma^2)
* score = -eps / sigma
* velocity (flow matching, u = dx/dt = alpha' x0 + sigma' eps):
        x0 = (sigma' x - sigma u) / det,  eps = (alpha u - alpha' x) / det,  det = alpha sigma' - sigma alpha'
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from samplers.schedules import Schedule

PREDICTIONS = ("eps", "x0", "v", "score", "velocity")


def check_prediction(name: str, what: str = "predicts") -> str:
    if name not in PREDICTIONS:
        raise ValueError(f"{what} must be one of {list(PREDICTIONS)}, got {name!r}")
    return name


def _coefs(schedule: Schedule, t, need_derivs: bool):
    t = jnp.asarray(t)
    alpha_sigma = lambda s: (schedule.alpha(s), schedule.sigma(s))
    if not need_derivs:
        return alpha_sigma(t), (None, None)
    return jax.jvp(alpha_sigma, (t,), (jnp.ones_like(t),))


def to_x0_eps(pred, x, t, schedule: Schedule, src: str):
    """(x0, eps) from a prediction of type ``src`` at (x, t)."""
    (a, s), (da, ds) = _coefs(schedule, t, src == "velocity")
    a, s = a.astype(x.dtype), s.astype(x.dtype)
    if src == "eps":
        return (x - s * pred) / a, pred
    if src == "x0":
        return pred, (x - a * pred) / s
    if src == "v":
        n = a * a + s * s
        return (a * x - s * pred) / n, (s * x + a * pred) / n
    if src == "score":
        eps = -s * pred
        return (x - s * eps) / a, eps
    da, ds = da.astype(x.dtype), ds.astype(x.dtype)
    det = a * ds - s * da
    return (ds * x - s * pred) / det, (a * pred - da * x) / det


def from_x0_eps(x0, eps, x, t, schedule: Schedule, dst: str):
    """A prediction of type ``dst`` from (x0, eps) at (x, t)."""
    (a, s), (da, ds) = _coefs(schedule, t, dst == "velocity")
    a, s = a.astype(x.dtype), s.astype(x.dtype)
    if dst == "eps":
        return eps
    if dst == "x0":
        return x0
    if dst == "v":
        return a * eps - s * x0
    if dst == "score":
        return -eps / s
    return da.astype(x.dtype) * x0 + ds.astype(x.dtype) * eps


def convert(pred, x, t, schedule: Schedule, src: str, dst: str):
    """Convert a model output of type ``src`` into type ``dst`` at (x, t)."""
    if src == dst:
        return pred
    x0, eps = to_x0_eps(pred, x, t, schedule, src)
    return from_x0_eps(x0, eps, x, t, schedule, dst)


def as_prediction(model_fn: Callable, schedule: Schedule, predicts: str, target: str) -> Callable:
    """Wrap ``model_fn`` (which outputs ``predicts``) to output ``target``."""
    check_prediction(predicts)
    check_prediction(target, "target")
    if predicts == target:
        return model_fn
    return lambda x, t: convert(model_fn(x, t), x, t, schedule, predicts, target)


def classifier_free_guidance(model_fn: Callable, scale: float, cond, uncond) -> Callable:
    """CFG (Ho & Salimans 2022): out = u + w (c - u), one batched call of ``model_fn(x, t, c)``.

    Any of eps/x0/v/score/velocity can be guided: all are affine in each other at fixed (x, t).
    """
    def guided(x, t):
        b = x.shape[0]
        both = model_fn(jnp.concatenate([x, x]), t, jnp.concatenate([cond, uncond]))
        c, u = both[:b], both[b:]
        return u + scale * (c - u)

    return guided


def dynamic_threshold(x0, ratio: float = 0.995, max_value: float = 1.0):
    """Imagen dynamic thresholding: clip x0 to [-s, s] and divide by s, with s the
    per-sample ``ratio`` quantile of |x0| clamped to [1, max_value]."""
    flat = jnp.abs(x0.reshape(x0.shape[0], -1))
    s = jnp.clip(jnp.quantile(flat, ratio, axis=1), 1.0, max_value)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
    return jnp.clip(x0, -s, s) / s
