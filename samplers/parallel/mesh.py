"""Device meshes for time-parallel sampling and the sharded window call.

The window's steps are one batched call: ``vmap`` of the sampler's ``step`` over
the window axis. On a mesh with axes (batch, window) that call is a
``jax.shard_map`` that is *manual* over the window axis (each device steps its
slice of window points) and *automatic* over the batch axis (the compiler
partitions the batch, so a stochastic step's noise, drawn from its key for the
whole batch, is the same values as on one device: threefry is partitionable).
A manual batch axis would make every device draw noise of its local shape and
change the samples; ``pmap`` is not needed. Meshes span ``jax.devices()``, i.e.
all devices of all processes after ``jax.distributed.initialize``.
"""
from __future__ import annotations

from typing import Callable

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def window_mesh(window_devices: int | None = None, batch_devices: int = 1, devices=None) -> Mesh:
    """A (batch, window) mesh with axis names ("batch", "window") over ``devices`` (default: all
    devices of all processes); ``window_devices`` defaults to the devices left after the batch."""
    devices = jax.devices() if devices is None else list(devices)
    n = len(devices)
    if not isinstance(batch_devices, int) or batch_devices < 1 or n % batch_devices:
        raise ValueError(f"batch_devices must be a positive divisor of the {n} devices, got {batch_devices!r}")
    if window_devices is None:
        window_devices = n // batch_devices
    if not isinstance(window_devices, int) or window_devices < 1 or batch_devices * window_devices != n:
        raise ValueError(f"window_devices * batch_devices must equal the {n} devices, "
                         f"got window_devices={window_devices!r}, batch_devices={batch_devices}")
    return jax.make_mesh((batch_devices, window_devices), ("batch", "window"),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def check_mesh(mesh, window: int, window_axis: str, batch_axis: str | None) -> None:
    """Build-time checks: the axes exist, are automatic, and the window axis divides the window."""
    if mesh is None:
        return
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")
    names = tuple(mesh.axis_names)
    for what, axis in (("window_axis", window_axis), ("batch_axis", batch_axis)):
        if axis is not None and axis not in names:
            raise ValueError(f"{what} must be one of the mesh axes {list(names)}, got {axis!r}")
    if batch_axis == window_axis:
        raise ValueError("batch_axis and window_axis must be different mesh axes")
    if any(t != AxisType.Auto for t in mesh.axis_types):
        raise ValueError("mesh axes must be of type AxisType.Auto (build it with window_mesh)")
    size = mesh.shape[window_axis]
    if window % size:
        raise ValueError(f"the mesh axis {window_axis!r} has {size} devices, which must divide the window ({window})")


def replicate(tree, mesh):
    """Constrain every leaf to be replicated over ``mesh`` (readable on every process)."""
    if mesh is None:
        return tree
    rep = NamedSharding(mesh, P())
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, rep), tree)


def window_map(step: Callable, mesh, window_axis: str = "window", batch_axis: str | None = "batch") -> Callable:
    """``(states, keys) -> vmap(step)(states, keys)`` over the leading window axis, sharded over
    ``mesh[window_axis]`` (and the states' ``x`` batch over ``mesh[batch_axis]``) when a mesh is given."""
    batched = jax.vmap(step)
    if mesh is None:
        return batched
    sharded = jax.shard_map(batched, mesh=mesh, in_specs=(P(window_axis), P(window_axis)),
                            out_specs=P(window_axis), axis_names=frozenset({window_axis}))

    def call(states, keys):
        if batch_axis is not None:
            x = jax.lax.with_sharding_constraint(states.x, NamedSharding(mesh, P(window_axis, batch_axis)))
            states = states.replace(x=x)
        return sharded(states, keys)

    return call
