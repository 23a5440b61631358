"""Exponential moving average of parameters (Polyak averaging; Song & Ermon 2020, Ho et al. 2020):

    ema <- d ema + (1 - d) params,   d = min(decay, (1 + step) / (10 + step)) with warmup,

the warmup keeping early averages from being dominated by the random initialisation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def ema_decay(step, decay: float, warmup: bool = True):
    """The decay used at ``step`` (0-based count of updates already applied)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must lie in [0, 1), got {decay!r}")
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))


def ema_update(ema, params, decay):
    """One EMA step of every leaf."""
    return jax.tree_util.tree_map(lambda e, p: e + (1.0 - decay).astype(e.dtype) * (p - e), ema, params)
