"""Resampling schemes of sequential Monte Carlo, each ``(key, weights, n) -> indices`` (Douc, Cappe &
Moulines 2005; blackjax's ``smc.resampling``), and the effective sample size.

With normalised weights w (N,) and W = cumsum(w), an index is ``searchsorted(W, u)`` for
uniforms u in [0, 1):

* ``multinomial``: n sorted i.i.d. uniforms;
* ``stratified``:  u_k = (k + U_k) / n, one uniform per stratum;
* ``systematic``:  u_k = (k + U) / n, one uniform for all;
* ``residual``:    floor(n w_i) copies of i, the remaining r = n - sum floor(n w) drawn
  multinomially from the residual weights n w - floor(n w).

All four are unbiased: E[#copies of i] = n w_i.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp


def _search(weights, u):
    cdf = jnp.cumsum(weights)
    return jnp.clip(jnp.searchsorted(cdf / cdf[-1], u, side="right"), 0, weights.shape[0] - 1).astype(jnp.int32)


def multinomial(key, weights, n: int):
    return _search(weights, jnp.sort(jax.random.uniform(key, (n,), weights.dtype)))


def stratified(key, weights, n: int):
    return _search(weights, (jnp.arange(n, dtype=weights.dtype) + jax.random.uniform(key, (n,), weights.dtype)) / n)


def systematic(key, weights, n: int):
    return _search(weights, (jnp.arange(n, dtype=weights.dtype) + jax.random.uniform(key, (), weights.dtype)) / n)


def residual(key, weights, n: int):
    scaled = n * weights / jnp.sum(weights)
    copies = jnp.floor(scaled).astype(jnp.int32)
    # deterministic part: index i repeated copies[i] times, at positions [start_i, start_i + copies_i)
    ends = jnp.cumsum(copies)
    fixed = jnp.clip(jnp.searchsorted(ends, jnp.arange(n), side="right"), 0, weights.shape[0] - 1)
    rest = scaled - copies
    # i.i.d. (unsorted) draws from the residual weights fill the positions after the copies
    extra = _search(jnp.where(jnp.sum(rest) > 0, rest, jnp.ones_like(rest)), jax.random.uniform(key, (n,), weights.dtype))
    return jnp.where(jnp.arange(n) < ends[-1], fixed, extra).astype(jnp.int32)


RESAMPLERS = {"multinomial": multinomial, "stratified": stratified, "systematic": systematic, "residual": residual}


def check_resampler(name: str):
    """The resampling function called ``name``; a ValueError naming ``resampler`` otherwise."""
    if name not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {sorted(RESAMPLERS)}, got {name!r}")
    return RESAMPLERS[name]


def normalise(log_w):
    """Normalised log-weights log w - logsumexp(log w)."""
    return log_w - logsumexp(log_w)


def ess(log_w):
    """Effective sample size (sum w)^2 / sum w^2 of (unnormalised) log-weights."""
    return jnp.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w))
