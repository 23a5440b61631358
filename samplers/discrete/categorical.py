"""Exact categorical draws for discrete samplers, and the logit options (temperature, top-p, greedy).

A draw is the Gumbel race argmax_v (logit_v - log(-log u_v)), u uniform in the sampling ``dtype``.
In float32 the uniforms lie on a 2^-23 grid, so the largest Gumbel is -log(2^-23) ~ 15.9 (36.0 in
float64): a token whose probability is below ~e^-16 of the leader's almost never wins, which lowers
the effective temperature (Zheng et al. 2024, REFERENCES.md "Discrete diffusion"). The dtype is
therefore an option, float64 by default where jax_enable_x64 is on; asking for float64 without x64
(JAX would silently draw in float32) is a ValueError.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = ("float32", "float64")


def sampling_dtype(dtype=None) -> np.dtype:
    """The dtype of categorical draws: float64 by default where jax_enable_x64 is on, else float32."""
    x64 = bool(jax.config.jax_enable_x64)
    if dtype is None:
        return np.dtype(np.float64 if x64 else np.float32)
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if name == "float64" and not x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) "
                         "or jax.enable_x64()); without it JAX would silently draw in float32")
    return np.dtype(name)


def gumbel(key, shape, dtype) -> jax.Array:
    """Standard Gumbel noise -log(-log u), u ~ U[0, 1) in ``dtype`` (u = 0 gives -inf: never wins)."""
    return -jnp.log(-jnp.log(jax.random.uniform(key, shape, dtype)))


def categorical(key, logits, dtype) -> jax.Array:
    """One draw from softmax(logits) over the last axis, computed in ``dtype`` -> int32 ids."""
    logits = logits.astype(dtype)
    return jnp.argmax(logits + gumbel(key, logits.shape, dtype), axis=-1).astype(jnp.int32)


def check_logit_options(temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {temperature!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if greedy not in (True, False):
        raise ValueError(f"greedy must be True or False, got {greedy!r}")


def adjust_logits(logits, temperature: float = 1.0, top_p: float = 1.0) -> jax.Array:
    """Temperature, then nucleus (top-p, Holtzman et al. 2020): keep the smallest set of most likely
    tokens whose mass reaches top_p (the first token always), the rest at -inf. Identity at (1, 1)."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_p >= 1.0:
        return logits
    probs = jax.nn.softmax(logits, axis=-1)
    order = jnp.argsort(-probs, axis=-1)
    sorted_p = jnp.take_along_axis(probs, order, axis=-1)
    before = jnp.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the strictly more likely tokens
    keep = jnp.take_along_axis(before < top_p, jnp.argsort(order, axis=-1), axis=-1)  # the first always
    return jnp.where(keep, logits, -jnp.inf)


def draw_tokens(key, logits, dtype, temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False) -> jax.Array:
    """x0 tokens from model logits with the logit options: argmax when ``greedy``, else a draw."""
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return categorical(key, adjust_logits(logits, temperature, top_p), dtype)
