"""Window and convergence control shared by the parallel drivers (ParaDiGMS, Shih et al. 2023).

A driver keeps a window of ``p`` unknowns after a known (exact) point, updates
all of them at once each round, and measures each unknown's change against its
own tolerance: unknown ``j`` has converged when ``change_j <= tol^2 g_j^2``,
``change_j`` being a mean squared change and ``g_j`` a per-unknown scale (the
noise standard deviation of the step that produced it). The window then slides
past the converged prefix *plus one*: the first unconverged unknown was computed
from converged predecessors in this round, so it is accurate too (the ParaDiGMS
rule). Every round therefore advances by at least one, and a window never needs
more rounds than it has unknowns.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def check_window(window, num_unknowns: int, what: str = "num_steps") -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= num_unknowns:
        raise ValueError(f"window must be an integer in [1, {what}={num_unknowns}], got {window!r}")
    return int(window)


def check_tol(tol) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)) or not math.isfinite(tol) \
            or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return float(tol)


def check_scale(scale, n: int) -> tuple[float, ...]:
    """Per-unknown scales g (n,), positive and finite; ``None`` means g = 1 (an absolute tolerance)."""
    if scale is None:
        return (1.0,) * n
    g = np.asarray(scale, np.float64)
    if g.shape != (n,) or not np.all(np.isfinite(g)) or np.any(g <= 0):
        bad = "" if g.shape != (n,) else " with non-positive or non-finite values"
        raise ValueError(f"scale must be an array of {n} positive finite numbers (one per step), "
                         f"got shape {g.shape}{bad}")
    return tuple(float(v) for v in g)


def mean_square(delta):
    """Mean squared change of one unknown per sample (leading axis), the worst sample: shape ()."""
    flat = delta.reshape(delta.shape[0], -1) if delta.ndim > 1 else delta.reshape(1, -1)
    return jnp.max(jnp.mean(flat.astype(jnp.float32) ** 2, axis=1))


def stride(converged, limit):
    """How far the window slides: 1 + the length of the converged prefix of ``converged`` (p,),
    at most ``p`` and at most ``limit`` (the unknowns left)."""
    p = converged.shape[0]
    first_bad = jnp.argmin(jnp.concatenate([converged, jnp.zeros((1,), bool)]))
    return jnp.minimum(jnp.minimum(first_bad + 1, p), limit).astype(jnp.int32)
