"""Subprocess worker of tests/test_parallel_mesh.py: runs the sharded time-parallel sampler on a
(batch, window) mesh over all devices of all processes and writes the result (process 0).

Device count comes from XLA_FLAGS (``--xla_force_host_platform_device_count``) set by the caller;
with ``--coordinator`` it joins a multi-process run (gloo CPU collectives).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def problem(name: str):
    """(sampler, scale, model_fn, x, key): a small DDIM / DDPM problem on a Gaussian mixture."""
    import jax
    import numpy as np

    from models.analytic import random_mixture
    from samplers import schedules
    from samplers.grids import time_grid
    from samplers.ode.ddim import ddim
    from samplers.parallel import step_scale
    from samplers.sde.ancestral import ddpm, ddpm_noise

    sch = schedules.vp_linear()
    grid = time_grid(sch, 24, "logsnr")
    gmm = random_mixture(dim=8, num_components=3, seed=3)
    if name == "ddpm":
        smp, scale = ddpm(sch, grid), step_scale(grid, ddpm_noise(grid))
    else:
        smp, scale = ddim(sch, grid), step_scale(grid)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (4, 8)))
    key = np.asarray(jax.random.PRNGKey(7))
    return smp, scale, gmm.model_fn(sch, "eps"), x, key


def run(name: str, window: int, tol: float, mesh=None, slope: str = "one"):
    """The final sample and stats of the time-parallel run, as numpy (readable on every process)."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    from samplers.parallel import parallel_sample, time_parallel

    smp, scale, model_fn, x, key = problem(name)
    par = time_parallel(smp, window, tol, scale, slope=slope, mesh=mesh)
    if mesh is not None:  # global (replicated) inputs for a multi-process jit
        put = lambda a: jax.make_array_from_callback(a.shape, NamedSharding(mesh, P()), lambda i: a[i])
        x, key = put(x), put(key)
    out, stats = jax.jit(parallel_sample, static_argnums=(0, 1))(par, model_fn, x, key)
    local = lambda a: np.asarray(a.addressable_data(0))
    return local(out.x), int(local(stats.rounds)), int(local(stats.model_calls))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sampler", default="ddpm", choices=["ddim", "ddpm"])
    ap.add_argument("--slope", default="one", choices=["one", "secant", "tangent", "jacobian"])
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--batch-devices", type=int, default=2)
    ap.add_argument("--coordinator", default=None)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--process-id", type=int, default=0)
    ap.add_argument("--check-errors", action="store_true", help="also check that a window the mesh's window "
                    "axis does not divide is a build-time ValueError")
    args = ap.parse_args()

    import jax
    import numpy as np

    if args.coordinator is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    from samplers.parallel import window_mesh

    mesh = window_mesh(batch_devices=args.batch_devices)
    raised = False
    if args.check_errors:
        from samplers.parallel import time_parallel

        smp = problem(args.sampler)[0]
        try:
            time_parallel(smp, mesh.shape["window"] + 2, 0.1, mesh=mesh)
        except ValueError as e:
            raised = "divide" in str(e)
    x, rounds, calls = run(args.sampler, args.window, args.tol, mesh, args.slope)
    if jax.process_index() == 0:
        np.savez(args.out, x=x, rounds=rounds, calls=calls, devices=jax.device_count(),
                 processes=jax.process_count(), mesh=np.array(list(mesh.shape.values())),
                 mesh_error_raised=raised)
    if args.coordinator is not None:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
