"""The one train loop of every objective: data-parallel steps, EMA, checkpoints, metrics, progress.

Step s (0-based) draws its randomness from ``fold_in(PRNGKey(seed) -> train key, s)``
and its data from ``Batches(s)``, so the run is a pure function of (config, step)
and resuming from the checkpoint at step s continues exactly as the uninterrupted
run would. The state is replicated over the ``data`` mesh axis and the batch split
along it (``train.distributed``); XLA inserts the gradient all-reduce.

Outputs in ``workdir``: ``checkpoints/`` (orbax, every ``checkpoint_every`` steps
and at exit, including Ctrl-C and SIGTERM), ``metrics.jsonl`` (one JSON record per
``log_every`` steps: loss averaged over the interval, gradient norm, learning rate,
rates) and ``loss.png``; the console shows a progress line with rate and ETA.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from models.common import param_count
from train import distributed
from train.checkpoint import Checkpointer, abstract_like
from train.data import Batches
from train.ema import ema_decay, ema_update
from train.losses import Objective
from train.nets import Network
from train.optim import make_optimizer
from train.report import Progress

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
CHECKPOINT_DIR = "checkpoints"


@struct.dataclass
class TrainState:
    step: jax.Array  # number of updates applied
    params: Any
    ema: Any
    opt_state: Any


def keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(initialisation key, train key) of a run."""
    base = jax.random.PRNGKey(seed)
    return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)


def init_state(network: Network, tx: optax.GradientTransformation, key) -> TrainState:
    params = network.init(key)
    ema = jax.tree_util.tree_map(jnp.copy, params)  # its own buffers: the train step donates the state
    return TrainState(jnp.zeros((), jnp.int32), params, ema, tx.init(params))


def make_train_step(network: Network, objective: Objective, tx: optax.GradientTransformation,
                    train_key, decay: float, warmup: bool = True) -> Callable:
    """``step(state, batch) -> (state, metrics)``: one optimiser update on ``objective``'s loss."""

    def step(state: TrainState, batch):
        key = jax.random.fold_in(train_key, state.step)
        k_loss, k_drop = jax.random.split(key)

        def loss_fn(params):
            apply = lambda x, t: network.apply(params, x, t, rng=k_drop, train=True)
            return objective.loss(apply, batch, k_loss)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema, params, ema_decay(state.step, decay, warmup))
        new = TrainState(state.step + 1, params, ema, opt_state)
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return step


def shard_step(step: Callable, mesh) -> Callable:
    """``step`` jitted for the mesh: state replicated (and donated), batch split along ``data``."""
    rep, data = distributed.replicated(mesh), distributed.batch_sharded(mesh)
    return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


# -- console and files ------------------------------------------------------------------------------

def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _truncate_metrics(workdir: str, step: int) -> None:
    """Drop records logged after ``step`` (they belong to the part of a run that is redone)."""
    records = [r for r in read_metrics(workdir) if r["step"] <= step]
    if not records and not os.path.exists(os.path.join(workdir, METRICS_FILE)):
        return
    with open(os.path.join(workdir, METRICS_FILE), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def plot_loss(workdir: str) -> str | None:
    """``loss.png``: the logged loss (per-interval mean) against the step, log scale."""
    records = read_metrics(workdir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [r["loss"] for r in records], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over log interval)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(workdir, LOSS_PLOT)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class _StopOnSignal:
    """Turns SIGTERM (cluster pre-emption) into a stop request checked between steps."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


# -- the loop ---------------------------------------------------------------------------------------

def restore_or_init(network: Network, tx, seed: int, mesh, ckpt: Checkpointer) -> tuple[TrainState, dict | None]:
    """The latest checkpoint's (state, data record) on ``mesh``, or a fresh state and None."""
    init_key, _ = keys(seed)
    rep = distributed.replicated(mesh)
    shapes = jax.eval_shape(lambda k: init_state(network, tx, k), init_key)
    if ckpt.latest_step() is not None:
        return ckpt.restore(abstract_like(shapes, rep))
    state = jax.jit(lambda k: init_state(network, tx, k), out_shardings=rep)(init_key)
    return state, None


def fit(network: Network, objective: Objective, batches: Batches, cfg, workdir: str, seed: int = 0,
        mesh=None, verbose: bool = True) -> TrainState:
    """Train for ``cfg.num_steps`` steps (``config.train``), resuming from ``workdir``'s checkpoints."""
    mesh = distributed.make_mesh() if mesh is None else mesh
    distributed.check_batch(batches.global_batch, mesh)
    main = distributed.is_main()
    os.makedirs(workdir, exist_ok=True)
    tx, lr_fn = make_optimizer(cfg)
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), cfg.checkpoint_every, cfg.keep_checkpoints)
    state, record = restore_or_init(network, tx, seed, mesh, ckpt)
    start = int(state.step)
    if record is not None:
        expected = batches.state(start)
        changed = {k: (record.get(k), v) for k, v in expected.items() if record.get(k) != v}
        if changed:
            raise ValueError(f"cannot resume {workdir} exactly: the data order changed since the checkpoint "
                             f"(field: (checkpoint, now)) {changed}")
    if main:
        _truncate_metrics(workdir, start)  # records past the checkpoint belong to steps that are redone
        if verbose:
            what = f"resuming at step {start}" if start else "starting"
            print(f"[train] {what}: {param_count(state.params):,} parameters, global batch {batches.global_batch} "
                  f"over {mesh.size} device(s) in {jax.process_count()} process(es)", flush=True)

    _, train_key = keys(seed)
    step_fn = shard_step(make_train_step(network, objective, tx, train_key, cfg.ema_decay, cfg.ema_warmup), mesh)
    progress = Progress(cfg.num_steps, "[train] step ", done=start, per_unit=(batches.global_batch, "img"),
                        skip_first=True, inplace=True)
    pending: list[dict] = []
    step = start

    def save(at: int, force: bool) -> None:
        if ckpt.save(at, state, batches.state(at), force=force) and main:
            plot_loss(workdir)

    finished = False
    with _StopOnSignal() as stop:
        try:
            while step < cfg.num_steps and not stop.requested:
                batch = distributed.global_batch(batches(step), mesh)
                state, metrics = step_fn(state, batch)
                step += 1
                pending.append(metrics)
                if step % cfg.log_every == 0 or step == cfg.num_steps:
                    host = jax.device_get(pending)
                    pending = []
                    loss = float(np.mean([m["loss"] for m in host]))
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"training loss is {loss} at step {step}")
                    rate = progress.advance(step)
                    if main:
                        rec = {"step": step, "loss": loss, "loss_last": float(host[-1]["loss"]),
                               "grad_norm": float(host[-1]["grad_norm"]), "lr": float(lr_fn(step - 1)),
                               "steps_per_s": rate if math.isfinite(rate) else None,
                               "images_per_s": rate * batches.global_batch if math.isfinite(rate) else None,
                               "elapsed_s": progress.elapsed}
                        with open(os.path.join(workdir, METRICS_FILE), "a") as f:
                            f.write(json.dumps(rec) + "\n")
                        if verbose:
                            progress.show(rate, f"loss {loss:.4g}")
                save(step, force=False)
            finished = True
        except KeyboardInterrupt:
            save(int(jax.device_get(state.step)), force=True)  # the state's own count, whatever `step` says
            raise
        finally:
            if finished:
                save(step, force=True)
            ckpt.close()
    if main and verbose and stop.requested:
        print(f"\n[train] stopped by SIGTERM at step {step}; checkpoint saved", flush=True)
    return state
