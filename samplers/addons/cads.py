"""Condition-annealed diffusion sampling, CADS (Sadat et al. 2024, "CADS: Unleashing the Diversity of
Diffusion Models through Condition-Annealed Sampling", Eq. 2-4): the conditioning fed to the model is
noised on a schedule, strongly early (near noise) and not at all late,

    y' = sqrt(gamma(t)) y + s sqrt(1 - gamma(t)) n,   n ~ N(0, I) from the step's key,
    gamma = 1 for u <= tau1, 0 for u >= tau2, linear between (u = (t - t_min)/(t_max - t_min)),

then optionally rescaled to y's mean and std over its features and mixed back with psi (Eq. 4).
The add-on takes a conditional ``model_fn(x, t, c)`` and gives the classifier-free-guided model
(``param.classifier_free_guidance``) with the annealed condition; the unconditional label is not
noised. It must be the first add-on. tau1 >= 1 (gamma = 1 everywhere) is plain CFG.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from samplers.addons.core import Addon, keyed
from samplers.checks import check_number
from samplers.param import classifier_free_guidance
from samplers.schedules import Schedule


def _labels(x, c):
    c = jnp.asarray(c)
    return jnp.broadcast_to(c, (x.shape[0],) + c.shape)


def cads(schedule: Schedule, cond, uncond, guidance: float, noise_scale: float = 0.25, tau1: float = 0.6,
         tau2: float = 0.9, psi: float = 0.0) -> Addon:
    """CADS around CFG with weight ``guidance``; ``cond`` / ``uncond`` are one example's labels."""
    guidance = check_number("guidance", guidance)
    s = check_number("noise_scale", noise_scale, 0.0)
    tau1, tau2 = check_number("tau1", tau1, 0.0), check_number("tau2", tau2, 0.0)
    if not tau1 < tau2:
        raise ValueError(f"tau1 must be < tau2, got tau1={tau1!r}, tau2={tau2!r}")
    psi = check_number("psi", psi, 0.0)
    if psi > 1:
        raise ValueError(f"psi must be in [0, 1], got {psi!r}")
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)

    def wrap(key, fn):
        def guided(x, t):
            y = _labels(x, cond).astype(x.dtype)
            if tau1 < 1:
                u = (t - t_min) / (t_max - t_min)
                gamma = jnp.clip((tau2 - u) / (tau2 - tau1), 0.0, 1.0).astype(x.dtype)
                noisy = jnp.sqrt(gamma) * y + s * jnp.sqrt(1 - gamma) * jax.random.normal(key, y.shape, x.dtype)
                if psi > 0:
                    axes = tuple(range(1, y.ndim))
                    mean = lambda v: jnp.mean(v, axes, keepdims=True)
                    std = lambda v: jnp.std(v, axes, keepdims=True)
                    scaled = (noisy - mean(noisy)) / std(noisy) * std(y) + mean(y)
                    noisy = psi * scaled + (1 - psi) * noisy
                y = noisy
            return classifier_free_guidance(fn, guidance, y, _labels(x, uncond).astype(x.dtype))(x, t)

        return guided

    return keyed(wrap, conditional=True)
