"""Subprocess worker of tests/test_train_distributed.py (fake CPU devices must be set before JAX starts).

    python tests/train_worker.py dp_step --devices 8 --out result.json
        one train step on a 1-device mesh and on an all-device mesh from the same state and batch;
        writes the largest difference of the new states.
    python tests/train_worker.py train --devices 2 --workdir DIR [--coordinator HOST:PORT
            --num_processes 2 --process_id I]
        ``train.jobs.train`` of ``tiny_config()`` (several processes when a coordinator is given).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def tiny_config():
    """A small MLP on a 2-D Gaussian mixture, a few steps, checkpoints every 2 steps."""
    from train.config import resolve

    return resolve({
        "seed": 1,
        "model": {"name": "mlp", "kwargs": {"hidden": 32, "depth": 2, "embed_dim": 8}},
        "data": {"name": "gmm", "kwargs": {"n": 256, "dim": 2}},
        "train": {"num_steps": 4, "batch_size": 32, "checkpoint_every": 2, "log_every": 1, "lr": 1e-2,
                  "ema_decay": 0.9},
    })


def max_state_diff(a, b) -> float:
    import jax
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def dp_step(out: str) -> None:
    import jax

    from train import distributed
    from train.config import build_network, build_objective
    from train.data import Batches, load
    from train.loop import init_state, keys, make_train_step, shard_step
    from train.optim import make_optimizer

    config = tiny_config()
    network, objective = build_network(config), build_objective(config)
    tx, _ = make_optimizer(config.train)
    init_key, train_key = keys(config.seed)
    batch = Batches(load("gmm", **config.data.kwargs), config.train.batch_size, config.seed)(0)
    states = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = distributed.make_mesh(devices)
        state = jax.jit(lambda k: init_state(network, tx, k), out_shardings=distributed.replicated(mesh))(init_key)
        step = shard_step(make_train_step(network, objective, tx, train_key, config.train.ema_decay), mesh)
        new, metrics = step(state, distributed.global_batch(batch, mesh))
        states.append((jax.device_get(new), float(metrics["loss"]), len(new.params["Dense_0"]["kernel"].sharding.device_set)))
    (one, loss1, _), (many, loss8, ndev) = states
    with open(out, "w") as f:
        json.dump({"devices": len(jax.devices()), "state_devices": ndev, "max_diff": max_state_diff(one, many),
                   "loss_diff": abs(loss1 - loss8), "changed": max_state_diff(one.params, jax.device_get(
                       jax.jit(lambda k: network.init(k))(init_key)))}, f)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["dp_step", "train"])
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--out", default=None)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, ROOT)

    from train import distributed

    if args.coordinator:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.role == "dp_step":
        dp_step(args.out)
    else:
        from train import jobs

        jobs.train(tiny_config(), args.workdir)


if __name__ == "__main__":
    main()
