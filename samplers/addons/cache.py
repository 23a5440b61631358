"""Block caching (Wimbauer et al. 2024, "Cache Me if You Can: Accelerating Diffusion Models through
Block Caching", Sec. 3): the outputs of a network's blocks change little between neighbouring steps,
so block j is recomputed only at the steps of a static per-block refresh schedule and its cached output
is reused at the others. The schedule is derived from the measured change: with the relative L1 change
delta[i, j] = |o_i - o_{i-1}| / |o_{i-1}| of block j between steps, block j is refreshed at step 0
and whenever the change accumulated since its last refresh exceeds ``threshold`` (Sec. 3.2).

The model is one that takes and returns its cache (``models.dit.DiT(..., cache=, refresh=)``); the
cache, the step counter and the count of evaluated blocks are the add-on's carry, so cached and
uncached sampling share one ``step``. A schedule that refreshes every block at every step calls the
plain model (the base solver bit for bit). For solvers of one model call a step.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.addons.core import Addon
from samplers.addons.guidance import check_number


def cached_model(module, params) -> Callable:
    """fn(x, t, cache, refresh) of a DiT: the plain output when ``cache`` is None, else
    (output, new cache, blocks evaluated)."""
    return lambda x, t, cache, refresh: module.apply({"params": params}, x, t, cache=cache, refresh=refresh)


def block_cache(module, refresh=None) -> Addon:
    """Block caching of the DiT ``module`` with the boolean ``refresh`` table (steps, depth); None
    evaluates every block through the cache (the calibration run of ``measure_changes``). The add-on
    takes ``cached_model(module, params)`` as the model and must be the first add-on."""
    depth, p = module.depth, module.patch_size
    if refresh is not None:
        refresh = np.asarray(refresh)
        if refresh.dtype != bool or refresh.ndim != 2 or refresh.shape[1] != depth or not refresh[0].all():
            raise ValueError(f"refresh must be a boolean (steps, {depth}) table whose first row is all True, got "
                             f"{refresh.dtype} {refresh.shape}")
    plain = refresh is not None and bool(refresh.all())

    def init(x, key):
        b, h, w, _ = x.shape
        cache = jnp.zeros((depth, b, (h // p) * (w // p), module.hidden), x.dtype)
        return cache, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)

    def wrap(carry, key, fn):
        cache, k, _ = carry
        if plain:
            return lambda x, t: fn(x, t, None, None)
        row = jnp.ones((depth,), bool) if refresh is None else jnp.asarray(refresh)[k]
        return lambda x, t: fn(x, t, cache, row)[0]

    def update(carry, calls):
        cache, k, evals = carry
        for x, t, res in calls:
            if plain:
                evals = evals + depth
            else:
                cache, evals = res[1], evals + res[2]
        return cache, k + 1, evals

    return Addon(init=init, wrap=wrap, update=update, conditional=True)


def measure_changes(caches) -> np.ndarray:
    """delta[i, j] (steps - 1, depth): relative L1 change of block j's output from step i to i + 1, from
    the stacked caches (steps, depth, ...) of a calibration run."""
    c = np.asarray(caches, np.float64).reshape(*np.shape(caches)[:2], -1)
    return np.abs(np.diff(c, axis=0)).mean(-1) / np.maximum(np.abs(c[:-1]).mean(-1), 1e-12)


def refresh_schedule(changes, threshold: float) -> np.ndarray:
    """The (steps, depth) refresh table: step 0, then where the change accumulated since the last
    refresh exceeds ``threshold`` (>= 0; 0 refreshes every block at every step)."""
    threshold = check_number("threshold", threshold, 0.0)
    changes = np.asarray(changes, np.float64)
    table = np.ones((changes.shape[0] + 1, changes.shape[1]), bool)
    acc = np.zeros(changes.shape[1])
    for i, d in enumerate(changes, start=1):
        acc += d
        table[i] = acc > threshold if threshold > 0 else True
        acc[table[i]] = 0.0
    return table


def calibrate(sampler, module, params, x, threshold: float, key=None) -> np.ndarray:
    """The refresh table of ``sampler`` for the DiT (``module``, ``params``) from one calibration run at ``x``."""
    from samplers.addons.core import with_addons
    from samplers.core import sample

    s = with_addons(sampler, block_cache(module))
    _, caches = jax.jit(lambda x: sample(s, cached_model(module, params), x, key,
                                         trajectory=lambda st: st.carry[0][0]))(x)
    return refresh_schedule(measure_changes(caches), threshold)
