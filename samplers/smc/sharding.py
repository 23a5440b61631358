"""Particles sharded over the devices of a mesh's data axis, resampling global.

``shard_particles(smc_sampler, sharding)`` keeps every per-particle array of an SMC state (every
leaf whose leading axis is the particle axis N: particles, the proposal's state, log-weights,
ancestors, the potential's cache) laid out by ``sharding`` -- e.g.
``NamedSharding(mesh, P("data"))`` (``train.distributed.batch_sharded``) -- after ``init`` and
after every step (``jax.lax.with_sharding_constraint``). Everything else is the wrapped sampler's
own jit-compiled code: the model runs on each device's particles, and the global reductions and
gathers of a step (logsumexp of the weights, the ESS, the resampling CDF and the gather of the
ancestors) are partitioned by XLA with collectives across devices and processes, so the run
computes the same numbers as on one device for the same key (up to the order of floating-point
sums). Unsharded leaves (log-Z, the step index) are replicated.
"""
from __future__ import annotations

import jax
from jax.sharding import Sharding

from samplers.core import Sampler


def _check_sharding(sharding):
    if not isinstance(sharding, Sharding):
        raise ValueError(f"sharding must be a jax.sharding.Sharding of the particle axis (e.g. "
                         f"NamedSharding(mesh, P('data'))), got {type(sharding).__name__}")
    return sharding


def constrain(state, sharding: Sharding):
    """``state`` with every leaf whose leading axis has the particles' size constrained to ``sharding``."""
    n = state.x.shape[0]
    fix = lambda a: jax.lax.with_sharding_constraint(a, sharding) if a.ndim >= 1 and a.shape[0] == n else a
    return jax.tree_util.tree_map(fix, state)


def shard_particles(sampler: Sampler, sharding: Sharding) -> Sampler:
    """``sampler`` (an SMC sampler: particles on the leading axis of its state's x) with its
    per-particle state sharded by ``sharding`` (module docstring). Run it under ``jax.jit``;
    the number of particles must divide evenly over the sharded devices."""
    if not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be a Sampler, got {type(sampler).__name__}")
    _check_sharding(sharding)

    def init(x, key=None, model_fn=None):
        if x.ndim < 1 or x.shape[0] % sharding.num_devices:
            raise ValueError(f"x must hold particles on a leading axis divisible by the {sharding.num_devices} "
                             f"devices of sharding, got shape {x.shape}")
        return constrain(sampler.init(jax.lax.with_sharding_constraint(x, sharding), key=key, model_fn=model_fn),
                         sharding)

    def step(state, key, model_fn):
        return constrain(sampler.step(state, key, model_fn), sharding)

    return sampler._replace(init=init, step=step)
