"""Inverting autoregressive affine flows (TarFlow: Zhai et al. 2024, "Normalizing Flows are Capable
Generative Models"): sequentially, and in parallel by Jacobi iteration (Song et al. 2021,
"Accelerating Feedforward Computation via Parallel Nonlinear Equation Solving").

A flow of K blocks maps data to noise; block k reads its input ``u`` (B, T, D) in its own token
order (reversed for every other block) and returns ``z_t = (u_t - mu_t(u_<t)) exp(-a_t(u_<t))``,
with (mu, a) from a causal network (``ARFlow.params(k, u)``, position t seeing u_<t only). Its
inverse ``u_t = z_t exp(a_t(u_<t)) + mu_t(u_<t)`` is sequential in t: T network calls a block.

The parallel inverse runs the blocks backwards one after another (Gauss-Seidel across blocks)
and, inside a block, the Jacobi iteration ``u <- z exp(a(u)) + mu(u)`` on every position at
once, with the window control of ``control``: positions before ``s`` are final and frozen,
position ``s`` is exact after every iteration (its inputs are frozen), later positions are
converged when their mean squared change is at most tol^2, and ``s`` slides past the converged
prefix plus one. So a block takes at most T iterations, and tol = 0 gives the sequential inverse
up to round-off.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from samplers.parallel import control


class ARFlow(NamedTuple):
    """An autoregressive affine flow: ``params(k, u) -> (mu, log_scale)`` of block k on its input
    ``u`` (B, T, D) in the block's token order; ``reverse[k]``: block k reads the tokens reversed."""

    params: Callable[[int, jax.Array], tuple[jax.Array, jax.Array]]
    reverse: tuple


@struct.dataclass
class InverseStats:
    iterations: jax.Array  # (K,) Jacobi iterations (network calls) of each block, in flow order
    residual: jax.Array  # (K,) last iteration's worst sqrt(mean squared change) of each block


def _order(flow: ARFlow, k: int, x):
    return jnp.flip(x, axis=1) if flow.reverse[k] else x


def forward(flow: ARFlow, x):
    """Data -> noise: (z, log|det dz/dx|) per sample."""
    logdet = jnp.zeros(x.shape[0], x.dtype)
    for k in range(len(flow.reverse)):
        u = _order(flow, k, x)
        mu, a = flow.params(k, u)
        x = _order(flow, k, (u - mu) * jnp.exp(-a))
        logdet = logdet - jnp.sum(a, axis=(1, 2))
    return x, logdet


def _invert_block_sequential(flow: ARFlow, k: int, z):
    def body(t, u):
        mu, a = flow.params(k, u)
        return u.at[:, t].set(z[:, t] * jnp.exp(a[:, t]) + mu[:, t])

    return jax.lax.fori_loop(0, z.shape[1], body, z)


def inverse_sequential(flow: ARFlow, z):
    """Noise -> data, one position at a time: T network calls a block (the reference)."""
    for k in reversed(range(len(flow.reverse))):
        z = _order(flow, k, _invert_block_sequential(flow, k, _order(flow, k, z)))
    return z


def _invert_block_jacobi(flow: ARFlow, k: int, z, tol2):
    t_len = z.shape[1]
    pos = jnp.arange(t_len)

    def body(carry):
        u, s, it, _ = carry
        mu, a = flow.params(k, u)
        new = jnp.where((pos < s)[None, :, None], u, z * jnp.exp(a) + mu)
        change = jax.vmap(control.mean_square, in_axes=1)(new - u)  # (T,), worst sample
        ahead = jnp.minimum(s + pos, t_len - 1)
        converged = (change[ahead] <= tol2) | (s + pos >= t_len)
        shift = control.stride(converged, t_len - s)
        return new, s + shift, it + 1, jnp.sqrt(jnp.max(change))

    zero = jnp.zeros((), jnp.int32)
    u, _, it, res = jax.lax.while_loop(lambda c: c[1] < t_len, body, (z, zero, zero, jnp.zeros((), jnp.float32)))
    return u, it, res


def inverse_jacobi(flow: ARFlow, z, tol: float):
    """Noise -> data by Gauss-Seidel over blocks and Jacobi inside each: ``(x, InverseStats)``."""
    tol2 = jnp.float32(control.check_tol(tol) ** 2)
    its, res = [], []
    for k in reversed(range(len(flow.reverse))):
        u, it, r = _invert_block_jacobi(flow, k, _order(flow, k, z), tol2)
        z = _order(flow, k, u)
        its.append(it)
        res.append(r)
    return z, InverseStats(jnp.stack(its[::-1]), jnp.stack(res[::-1]))
