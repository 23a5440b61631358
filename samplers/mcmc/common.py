"""Shared pieces of the MCMC kernels: build-time checks, the model wrappers and the
Metropolis-Hastings accept/reject.

A plain kernel (ULA, MALA, HMC, slice) declares its ``model_fn`` by ``target``:

* ``"logdensity"``: ``model_fn(x, t) -> (B,)``, the log-density of each chain
  (unnormalised is fine); gradients are ``jax.grad`` of the sum, so one call of
  :func:`evaluator` is one forward and one backward pass and counts as one
  model call in ``nfe``.
* ``"score"``: ``model_fn(x, t) -> grad log p(x)`` of the shape of ``x``; no
  log-density is known, so Metropolis-adjusted kernels refuse it.

The kernels built on a diffusion model (annealed Langevin, the chain of
log-concave Markov chains, denoising MCMC) take ``predicts`` among
``samplers.param.PREDICTIONS`` or ``"logdensity"`` (``model_fn(x, t) = log p_t(x)``,
e.g. ``GaussianMixture.log_prob_fn(schedule)``), converted by :func:`as_model`.
Chains are the leading axis of ``x``; every other axis is one chain's event.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from samplers.ode.common import check_choice
from samplers.param import PREDICTIONS, convert
from samplers.schedules import Schedule

TARGETS = ("logdensity", "score")
MODEL_OUTPUTS = PREDICTIONS + ("logdensity",)


def check_target(target: str, method: str, adjusted: bool = False, why: str = "it is Metropolis-adjusted") -> str:
    """``target`` must be one of TARGETS; methods that evaluate densities (``adjusted``) need ``"logdensity"``."""
    check_choice("target", target, TARGETS)
    if adjusted and target != "logdensity":
        raise ValueError(f"{method} needs target='logdensity' (model_fn returning log-densities) because {why}; "
                         f"got target={target!r}")
    return target


def sum_event(a: jax.Array) -> jax.Array:
    """Per-chain sum over every axis but the leading one: (B, ...) -> (B,)."""
    return a.reshape(a.shape[0], -1).sum(-1)


def per_chain(v: jax.Array, like: jax.Array) -> jax.Array:
    """A (B,) array reshaped to broadcast against ``like`` of shape (B, ...)."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


def evaluator(target: str, t: float) -> Callable:
    """``evaluate(model_fn, x) -> (logdensity (B,) or None, grad)`` at model time ``t``."""
    def evaluate(model_fn, x):
        tt = jnp.asarray(t, x.dtype)
        if target == "score":
            return None, model_fn(x, tt)

        def total(y):
            ld = model_fn(y, tt)
            return ld.sum(), ld

        (_, ld), g = jax.value_and_grad(total, has_aux=True)(x)
        return ld, g

    return evaluate


def metropolis(key, log_accept: jax.Array, proposed, current):
    """Accept ``proposed`` chain by chain with probability min(1, exp(log_accept)).

    ``proposed`` and ``current`` are matching pytrees whose leaves have the chain
    axis first. Returns (selected pytree, accepted (B,) bool, log_accept with NaN
    (a proposal with undefined density) mapped to -inf).
    """
    log_accept = jnp.where(jnp.isnan(log_accept), -jnp.inf, log_accept)
    u = jax.random.uniform(key, log_accept.shape, log_accept.dtype)
    accepted = jnp.log(u) < log_accept
    pick = lambda a, b: jnp.where(per_chain(accepted, a), a, b)
    return jax.tree.map(pick, proposed, current), accepted, log_accept


def accept_prob(log_accept: jax.Array) -> jax.Array:
    """min(1, exp(log_accept))."""
    return jnp.exp(jnp.minimum(log_accept, 0.0))


def native(model_fn: Callable, predicts: str) -> tuple[Callable, str]:
    """(fn, kind): ``model_fn`` as a prediction of a kind ``samplers.param.convert`` knows
    (``"logdensity"`` becomes its autodiff score)."""
    if predicts == "logdensity":
        return (lambda x, t: jax.grad(lambda y: model_fn(y, t).sum())(x)), "score"
    return model_fn, predicts


def as_model(model_fn: Callable, schedule: Schedule, predicts: str, space: str) -> Callable:
    """``fn(x, t)`` giving ``space`` (``"score"``, ``"x0"``, ...) from a diffusion ``model_fn``
    that outputs ``predicts`` (one of MODEL_OUTPUTS)."""
    fn, kind = native(model_fn, predicts)
    return lambda x, t: convert(fn(x, t), x, t, schedule, kind, space)


def check_model_output(predicts: str) -> str:
    return check_choice("predicts", predicts, MODEL_OUTPUTS)
