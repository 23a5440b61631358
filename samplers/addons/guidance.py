"""Gradient guidance and epsilon scaling: stateless model-output wrappers.

All parameterisations are affine in eps at fixed (x, t) (``samplers.param``), so a change d of the
noise prediction moves x0 by -sigma/alpha d and any output by ``from_x0_eps(-sigma/alpha d, d, 0)``;
adding that to the model output never converts it back and forth. Zero strength is decided at build
time and returns the inner model itself (``identity``): XLA fuses ``out + 0 d`` differently from ``out``
and changes its last bit, so only the identity is the base solver bit for bit.

* Classifier guidance (Dhariwal & Nichol 2021, Alg. 1-2): score + w grad_x log p(y | x_t), i.e.
  d = -sigma w grad log p(y | x_t).
* Energy guidance (Lu et al. 2023, CEP, Eq. 9): p_t(x) exp(-beta E_t(x)) has the score
  score - beta grad E_t; the same shift with log p = -E_t.
* Epsilon scaling (Ning et al. 2024, "Elucidating the Exposure Bias in Diffusion Models", Eq. 12):
  eps / lambda_t with lambda_t = b + k u, u in [0, 1] the normalised model time (1 at t_max), i.e.
  d = (1/lambda_t - 1) eps.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from samplers.addons.core import Addon, identity, stateless
from samplers.checks import check_number
from samplers.param import check_prediction, from_x0_eps, to_x0_eps
from samplers.schedules import Schedule


def shift_eps(out, d_eps, x, t, schedule: Schedule, predicts: str):
    """The model output of type ``predicts`` whose noise prediction is moved by ``d_eps``."""
    a, s = schedule.alpha(t).astype(x.dtype), schedule.sigma(t).astype(x.dtype)
    return out + from_x0_eps(-s / a * d_eps, d_eps, jnp.zeros_like(x), t, schedule, predicts)


def gradient_guidance(model_fn: Callable, log_fn: Callable, scale: float, schedule: Schedule, predicts: str):
    """model_fn guided by ``scale`` grad_x log_fn(x, t) (log_fn returns one number per example)."""
    grad = jax.grad(lambda x, t: jnp.sum(log_fn(x, t)))

    def guided(x, t):
        d = -schedule.sigma(t).astype(x.dtype) * scale * grad(x, t)
        return shift_eps(model_fn(x, t), d, x, t, schedule, predicts)

    return guided


def classifier_guidance(log_likelihood: Callable, scale: float, schedule: Schedule, predicts: str = "eps") -> Addon:
    """Classifier guidance with ``log_likelihood(x, t) -> (B,)``, log p(y | x_t) of the wanted label."""
    check_prediction(predicts)
    scale = check_number("scale", scale)
    if scale == 0:
        return identity()
    return stateless(lambda fn: gradient_guidance(fn, log_likelihood, scale, schedule, predicts))


def energy_guidance(energy: Callable, scale: float, schedule: Schedule, predicts: str = "eps") -> Addon:
    """Energy guidance towards p_t exp(-scale E_t) from a given time-dependent ``energy(x, t) -> (B,)``."""
    check_prediction(predicts)
    scale = check_number("scale", scale)
    if scale == 0:
        return identity()
    return stateless(lambda fn: gradient_guidance(fn, lambda x, t: -energy(x, t), scale, schedule, predicts))


def epsilon_scaling(schedule: Schedule, predicts: str = "eps", scale: float = 1.0, slope: float = 0.0) -> Addon:
    """Epsilon scaling: eps / lambda_t, lambda_t = scale + slope u (u = (t - t_min)/(t_max - t_min)).

    ``scale`` 1 and ``slope`` 0 is the base solver; Ning et al. use lambda_t slightly above 1."""
    check_prediction(predicts)
    b = check_number("scale", scale, 0.0, open_lo=True)
    k = check_number("slope", slope)
    if b + min(k, 0.0) <= 0:
        raise ValueError(f"scale + slope must be > 0 (lambda_t > 0 on the whole schedule), got {b + k!r}")
    if b == 1 and k == 0:
        return identity()
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)

    def wrap(fn):
        def scaled(x, t):
            out = fn(x, t)
            u = (t - t_min) / (t_max - t_min)
            lam = (b + k * u).astype(x.dtype)
            eps = to_x0_eps(out, x, t, schedule, predicts)[1]
            return shift_eps(out, (1.0 / lam - 1.0) * eps, x, t, schedule, predicts)

        return scaled

    return stateless(wrap)
