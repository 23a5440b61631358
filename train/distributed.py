"""Multi-host start-up and data-parallel sharding with ``jax.sharding``.

``initialize`` starts JAX's multi-controller runtime (``jax.distributed.initialize``)
when a coordinator is named, by argument or by the environment variables cluster
launchers set, in this order:

* arguments ``coordinator_address``, ``num_processes``, ``process_id``;
* ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
* torchrun-style ``MASTER_ADDR`` + ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``;
* under SLURM or Open MPI (``SLURM_JOB_ID`` with ``SLURM_NTASKS`` > 1, or
  ``OMPI_COMM_WORLD_SIZE`` > 1) JAX's own cluster auto-detection;

and otherwise runs as one process. CPU collectives across processes use gloo.

The mesh has one axis, ``data``, over every device of every process (in
``jax.devices()`` order, grouped by process). Training state is replicated
(``NamedSharding(mesh, P())``) and batches are split along their leading axis
(``NamedSharding(mesh, P("data"))``); each process contributes its own rows
with ``jax.make_array_from_process_local_data``.
"""
from __future__ import annotations

import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None
    return None


def resolve_cluster(coordinator_address: str | None = None, num_processes: int | None = None,
                    process_id: int | None = None) -> dict | None:
    """The arguments for ``jax.distributed.initialize``: a dict, {} for auto-detection, or None for one process."""
    addr = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if addr is None and os.environ.get("MASTER_ADDR"):
        port = os.environ.get("MASTER_PORT")
        if not port:
            raise ValueError("MASTER_ADDR is set but MASTER_PORT is not: both name the coordinator")
        addr = f"{os.environ['MASTER_ADDR']}:{port}"
    n = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES", "WORLD_SIZE")
    pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID", "RANK")
    if addr is not None:
        if n is None or pid is None:
            raise ValueError(
                f"coordinator_address is {addr!r} but num_processes ({n}) or process_id ({pid}) is missing: give "
                "--num_processes/--process_id or JAX_NUM_PROCESSES/JAX_PROCESS_ID (or WORLD_SIZE/RANK)")
        if n < 1 or not 0 <= pid < n:
            raise ValueError(f"process_id must lie in [0, num_processes={n}), got {pid}")
        return {"coordinator_address": addr, "num_processes": n, "process_id": pid}
    if n not in (None, 1) or pid not in (None, 0):
        raise ValueError(f"num_processes={n} / process_id={pid} given without a coordinator address")
    if (_env_int("SLURM_NTASKS") or 1) > 1 and os.environ.get("SLURM_JOB_ID"):
        return {}
    if (_env_int("OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return {}
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> bool:
    """Start the multi-process runtime if a cluster is named (see module doc); True if it was started."""
    args = resolve_cluster(coordinator_address, num_processes, process_id)
    if args is None:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**args, **kwargs)
    return True


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``data`` mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch(global_batch: int, mesh: Mesh) -> None:
    if global_batch % mesh.size:
        raise ValueError(f"batch_size ({global_batch}) must be divisible by the number of devices ({mesh.size})")


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """The global batch array from this process's rows (processes in order along the batch axis)."""
    sharding = batch_sharded(mesh)
    shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    return jax.make_array_from_process_local_data(sharding, local, shape)


def sampling_batch(requested: int, mesh: Mesh) -> int:
    """The largest multiple of the device count <= ``requested`` (``sampler.batch_size``), else a ValueError."""
    batch = requested - requested % mesh.size
    if batch < 1:
        raise ValueError(f"sampler.batch_size must be >= the number of devices ({mesh.size})")
    return batch


def draw_batches(draw, params, key, n: int, batch: int) -> tuple[np.ndarray, int]:
    """``n`` samples from ``draw(params, key_b) -> (samples (batch, ...) sharded, nfe)`` called with
    ``fold_in(key, b)`` for b = 0, 1, ..., gathered over processes: (the first n rows, the last nfe)."""
    chunks, used = [], 0
    for b in range(math.ceil(n / batch)):
        x, used = draw(params, jax.random.fold_in(key, b))
        chunks.append(np.asarray(multihost_utils.process_allgather(x, tiled=True)))
    return np.concatenate(chunks)[:n], int(used)


def is_main() -> bool:
    """True on the process that writes logs, plots and sample files."""
    return jax.process_index() == 0
