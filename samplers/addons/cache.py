"""Block caching (Wimbauer et al. 2024, "Cache Me if You Can: Accelerating Diffusion Models through
Block Caching", Sec. 3) and early exit: the outputs of a network's blocks change little between
neighbouring steps, so block j is recomputed only at the steps of a static per-block refresh schedule
and its cached output is reused at the others. The schedule is derived from the measured change: with
the relative L1 change delta[i, j] = |o_i - o_{i-1}| / |o_{i-1}| of block j between steps, block j is
refreshed at step 0 and whenever the change accumulated since its last refresh exceeds ``threshold``
(Sec. 3.2). Early exit is the static per-step depth k_i: the first k_i blocks run, the rest are reused.

The model is one that takes and returns its cache (``models.dit.DiT`` and ``models.unet.UNet`` with
``cache=, refresh=``: a tuple of block outputs); the cache, the step counter and the count of evaluated
blocks are the add-on's carry, so cached and uncached sampling share one ``step``, whatever the network.
A schedule that refreshes every block at every step calls the plain model (the base solver bit for
bit). For solvers of one model call a step.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.addons.core import Addon
from samplers.checks import check_number


def cached_model(module, params) -> Callable:
    """fn(x, t, cache, refresh) of a DiT or UNet: the plain output when ``refresh`` is None, else
    (output, new cache, blocks evaluated)."""
    return lambda x, t, cache, refresh: module.apply({"params": params}, x, t, cache=cache, refresh=refresh)


def block_cache(module, refresh=None) -> Addon:
    """Block caching of ``module`` (DiT or UNet) with the boolean ``refresh`` table (steps, blocks); None
    evaluates every block through the cache (the calibration run of ``calibrate``). The add-on takes
    ``cached_model(module, params)`` as the model and must be the first add-on. The table's width is
    checked against the model's block count at ``init`` (it depends on the image size for a UNet)."""
    if refresh is not None:
        refresh = np.asarray(refresh)
        if refresh.dtype != bool or refresh.ndim != 2 or not refresh[0].all():
            raise ValueError(f"refresh must be a boolean (steps, blocks) table whose first row is all True, got "
                             f"{refresh.dtype} {refresh.shape}")
    plain = refresh is not None and bool(refresh.all())

    def init(x, key):
        t = jnp.zeros((), x.dtype)  # refresh without a cache: every block runs, its outputs returned
        shapes = jax.eval_shape(lambda x: module.init_with_output(jax.random.PRNGKey(0), x, t, refresh=True)[0][1], x)
        if refresh is not None and refresh.shape[1] != len(shapes):
            raise ValueError(f"refresh must have one column per block of the model ({len(shapes)}), "
                             f"got {refresh.shape[1]}")
        cache = tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)
        return cache, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)

    def wrap(carry, key, fn):
        cache, k, _ = carry
        if plain:
            return lambda x, t: fn(x, t, None, None)
        row = jnp.ones((len(cache),), bool) if refresh is None else jnp.asarray(refresh)[k]
        return lambda x, t: fn(x, t, cache, row)[0]

    def update(carry, calls):
        cache, k, evals = carry
        for x, t, res in calls:
            if plain:
                evals = evals + len(cache)
            else:
                cache, evals = res[1], evals + res[2]
        return cache, k + 1, evals

    return Addon(init=init, wrap=wrap, update=update, conditional=True)


def early_exit(depths, num_blocks: int) -> np.ndarray:
    """The refresh table of a static per-step depth: at step i the first ``depths[i]`` of the
    ``num_blocks`` blocks run and the rest reuse their cached outputs; depths[0] must be num_blocks."""
    depths = np.asarray(depths)
    if depths.ndim != 1 or not np.issubdtype(depths.dtype, np.integer) or depths.size == 0 \
            or depths[0] != num_blocks or depths.min() < 0 or depths.max() > num_blocks:
        raise ValueError(f"depths must be integers in [0, {num_blocks}] starting with {num_blocks} (every block "
                         f"at the first step), got {depths.tolist()}")
    return np.arange(num_blocks)[None] < depths[:, None]


def measure_changes(caches) -> np.ndarray:
    """delta[i, j] (steps - 1, blocks): relative L1 change of block j's output from step i to i + 1, from
    the block outputs (steps, ...) of a calibration run (one array a block)."""
    def change(c):
        c = np.asarray(c, np.float64).reshape(len(c), -1)
        return np.abs(np.diff(c, axis=0)).mean(-1) / np.maximum(np.abs(c[:-1]).mean(-1), 1e-12)

    return np.stack([change(c) for c in caches], axis=1)


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
    """The refresh table of ``sampler`` for ``module`` (DiT or UNet) with ``params`` from one calibration run
    at ``x``."""
    from samplers.addons.core import with_addons
    from samplers.core import sample

    s = with_addons(sampler, block_cache(module))
    _, caches = jax.jit(lambda x: sample(s, cached_model(module, params), x, key,
                                         trajectory=lambda st: st.carry[0][0]))(x)
    return refresh_schedule(measure_changes(caches), threshold)
