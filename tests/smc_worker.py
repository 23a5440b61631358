"""Subprocess worker of tests/test_smc_sharding.py: a twisted SMC run (samplers/smc/tds.py on the
engine, resampling at every step) with its particles sharded over the data axis of a mesh of every
device of every process (train/distributed.py), written to --out by process 0.

The device count comes from XLA_FLAGS (``--xla_force_host_platform_device_count``) set by the
caller; with ``--coordinator`` it joins a multi-process run (gloo CPU collectives).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTICLES = 64


def run(mesh=None) -> dict:
    """The final particles, log-weights, ancestors and log-Z of the run as numpy (readable on every
    process); with a mesh also the rows of one local shard of the particles."""
    import jax
    import numpy as np

    from models.analytic import random_mixture
    from samplers import schedules
    from samplers.core import sample
    from samplers.grids import time_grid
    from samplers.sde.ancestral import ddpm
    from samplers.smc.engine import smc
    from samplers.smc.sharding import shard_particles
    from samplers.smc.tds import tds

    sch = schedules.vp_linear()
    base = ddpm(sch, time_grid(sch, 12, "uniform"), variance="large")
    model = random_mixture(dim=2, num_components=3, seed=3).model_fn(sch, "eps")
    sampler = smc(base, tds(base, sch, lambda x: 1.5 * x[:, 0] - x[:, 1]), ess_threshold=1.0)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (PARTICLES, 2)))
    key = np.asarray(jax.random.PRNGKey(7))
    out_sharding = None
    if mesh is not None:
        from train.distributed import batch_sharded, replicated

        sampler = shard_particles(sampler, batch_sharded(mesh))
        put = lambda a, s: jax.make_array_from_callback(a.shape, s, lambda i: a[i])
        x, key = put(x, batch_sharded(mesh)), put(key, replicated(mesh))
        out_sharding = (replicated(mesh), batch_sharded(mesh))

    def go(x, key):
        st = sample(sampler, model, x, key)
        return (st.x, st.log_w, st.ancestors, st.log_z), st.x

    (xs, log_w, anc, log_z), sharded_x = jax.jit(go, out_shardings=out_sharding)(x, key)
    local = lambda a: np.asarray(a.addressable_data(0))
    return {"x": local(xs), "log_w": local(log_w), "ancestors": local(anc), "log_z": local(log_z),
            "shard_rows": sharded_x.addressable_shards[0].data.shape[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--coordinator", default=None)
    ap.add_argument("--num-processes", type=int, default=1)
    ap.add_argument("--process-id", type=int, default=0)
    args = ap.parse_args()

    import jax
    import numpy as np

    from train.distributed import initialize, make_mesh

    if args.coordinator is not None:
        initialize(args.coordinator, args.num_processes, args.process_id)
    got = run(make_mesh())
    if jax.process_index() == 0:
        np.savez(args.out, devices=jax.device_count(), processes=jax.process_count(), **got)
    if args.coordinator is not None:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
