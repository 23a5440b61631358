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


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation, decay: float,
                    warmup: bool = True) -> TrainState:
    """``state`` after one optimiser update with ``grads`` and the EMA update of its parameters (any
    ``TrainState`` subclass: its other fields are kept)."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema, params, ema_decay(state.step, decay, warmup))
    return state.replace(step=state.step + 1, params=params, ema=ema, opt_state=opt_state)


class ObjectiveMethod:
    """How the loop trains, for a plain ``Objective``: the default ``Method``.

    A ``Method`` (the distillation trainers of ``train.distill`` are others) has

    * ``init_state(network, tx, key) -> state``: a ``TrainState`` (or a subclass carrying e.g. a
      target network); it is what checkpoints hold;
    * ``frozen``: a pytree handed to every step and never trained or checkpointed (a teacher's
      parameters; ``()`` when there is none);
    * ``train_step(network, tx, decay, warmup) -> step(state, batch, key, frozen) -> (state, metrics)``:
      pure, jitted once by the loop; ``metrics`` holds at least ``loss`` and ``grad_norm``;
      curricula are computed from ``state.step`` inside it.
    """

    frozen = ()

    def __init__(self, objective: Objective):
        self.objective = objective

    def init_state(self, network: Network, tx, key) -> TrainState:
        return init_state(network, tx, key)

    def train_step(self, network: Network, tx, decay: float, warmup: bool = True) -> Callable:
        objective = self.objective

        def step(state: TrainState, batch, key, frozen):
            del frozen
            k_loss, k_drop = jax.random.split(key)

            def loss_fn(params):
                apply = lambda x, t: network.apply(params, x, t, rng=k_drop, train=True)
                return objective.loss(apply, batch, k_loss)

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            new = apply_gradients(state, grads, tx, decay, warmup)
            return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

        return step


def as_method(objective):
    """``objective`` as a loop ``Method``: an ``Objective`` is wrapped, a ``Method`` is returned as is."""
    return ObjectiveMethod(objective) if isinstance(objective, Objective) else objective


def make_train_step(network: Network, objective, tx: optax.GradientTransformation,
                    train_key, decay: float, warmup: bool = True) -> Callable:
    """``step(state, batch) -> (state, metrics)``: one update of ``objective`` (an ``Objective`` or a
    ``Method`` without frozen inputs); step s uses the key ``fold_in(train_key, s)``."""
    return bind_step(as_method(objective).train_step(network, tx, decay, warmup), train_key, ())


def bind_step(method_step: Callable, train_key, frozen) -> Callable:
    """A ``Method``'s ``step(state, batch, key, frozen)`` as the loop's ``step(state, batch[, frozen])``:
    the key of step s is ``fold_in(train_key, s)``; without ``frozen`` leaves it takes no third argument."""
    if not has_leaves(frozen):
        return lambda state, batch: method_step(state, batch, jax.random.fold_in(train_key, state.step), ())
    return lambda state, batch, fz: method_step(state, batch, jax.random.fold_in(train_key, state.step), fz)


def has_leaves(tree) -> bool:
    return bool(jax.tree_util.tree_leaves(tree))


def shard_step(step: Callable, mesh, frozen: bool = False) -> Callable:
    """``step`` jitted for the mesh: state replicated (and donated), batch split along ``data``,
    the ``frozen`` third argument (if any) replicated."""
    rep, data = distributed.replicated(mesh), distributed.batch_sharded(mesh)
    ins = (rep, data, rep) if frozen else (rep, data)
    return jax.jit(step, in_shardings=ins, out_shardings=(rep, rep), donate_argnums=0)


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

def restore_or_init(network: Network, tx, seed: int, mesh, ckpt: Checkpointer,
                    init: Callable = init_state) -> tuple[TrainState, dict | None]:
    """The latest checkpoint's (state, data record) on ``mesh``, or a fresh state and None;
    ``init(network, tx, key)`` builds the state (a ``Method``'s ``init_state``)."""
    init_key, _ = keys(seed)
    rep = distributed.replicated(mesh)
    shapes = jax.eval_shape(lambda k: init(network, tx, k), init_key)
    if ckpt.latest_step() is not None:
        return ckpt.restore(abstract_like(shapes, rep))
    state = jax.jit(lambda k: init(network, tx, k), out_shardings=rep)(init_key)
    return state, None


def fit(network: Network, objective, batches: Batches, cfg, workdir: str, seed: int = 0,
        mesh=None, verbose: bool = True) -> TrainState:
    """Train for ``cfg.num_steps`` steps (``config.train``), resuming from ``workdir``'s checkpoints.

    ``objective``: an ``Objective`` or a ``Method`` (see ``ObjectiveMethod``)."""
    method = as_method(objective)
    mesh = distributed.make_mesh() if mesh is None else mesh
    distributed.check_batch(batches.global_batch, mesh)
    main = distributed.is_main()
    os.makedirs(workdir, exist_ok=True)
    tx, lr_fn = make_optimizer(cfg)
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), cfg.checkpoint_every, cfg.keep_checkpoints)
    state, record = restore_or_init(network, tx, seed, mesh, ckpt, method.init_state)
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
    frozen, with_frozen = method.frozen, has_leaves(method.frozen)
    if with_frozen:
        frozen = jax.device_put(frozen, distributed.replicated(mesh))
    step_fn = shard_step(bind_step(method.train_step(network, tx, cfg.ema_decay, cfg.ema_warmup), train_key, frozen),
                         mesh, with_frozen)
    run_step = (lambda st, b: step_fn(st, b, frozen)) if with_frozen else step_fn
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
                state, metrics = run_step(state, batch)
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
