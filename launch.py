"""The user-facing entry point: ``python launch.py --config=configs/X.py [--config.a.b=value ...] [--workdir=DIR]``.

The config (an ``ml_collections`` ConfigDict file; any field can be overridden on the
command line) names a ``mode``; the job is a ``Job(check, run)`` of ``GMM_MODES`` (configs
with a ``gmm`` section) or ``TRAIN_MODES`` (``train``/``sample``/``eval`` of a network): ``check(config)``
validates every field up front (a ``ValueError`` naming the field and its allowed values,
before any work starts), ``run(config, workdir)`` does the work and writes its outputs.
The resolved config is saved as ``workdir/config.json``.

Modes:
* ``train`` / ``sample`` / ``eval`` -- ``train.jobs`` (configs/digits.py, configs/dpm_cifar.py):
  train a network with checkpoints and exact resume, sample it with any solver x NFE (PNG
  grids + .npz), evaluate it (sliced Wasserstein, MMD, FID); multi-host with
  ``--coordinator_address --num_processes --process_id``.
* ``sample`` of a ``gmm`` config -- ``sample_gmm``: an analytic Gaussian mixture sampled by one solver, and a
  solver x NFE table of RMS errors against the exact probability-flow ODE solution and of
  the exact log-likelihood of the samples (configs/gmm.py).
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags

from bench.common import Progress, Reference, endpoints, markdown_table, plot_error_vs_nfe, solver_error
from models.analytic import random_mixture
from samplers import registry
from samplers.grids import FINALS, SPACINGS
from samplers.ode.common import check_choice
from samplers.param import PREDICTIONS
from samplers.schedules import SCHEDULES, get_schedule
from train import distributed as train_distributed
from train import jobs as train_jobs

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py); override any field with --config.<field>=<value>.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: ./workdir/<config file name>).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (or JAX_COORDINATOR_ADDRESS, MASTER_ADDR/MASTER_PORT)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (or JAX_NUM_PROCESSES / WORLD_SIZE)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (or JAX_PROCESS_ID / RANK)")


class Job(NamedTuple):
    check: Callable[[ConfigDict], None]  # raises ValueError on a bad config, does no work
    run: Callable[[ConfigDict, str], dict]  # (config, workdir) -> summary


# -- checks -----------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_gmm(config: ConfigDict) -> None:
    """Validate the fields of a Gaussian-mixture sampling config (configs/gmm.py)."""
    names = registry.names()
    check_choice("config.schedule", config.schedule, sorted(SCHEDULES))
    check_choice("config.predicts", config.predicts, PREDICTIONS)
    check_choice("config.sampler.name", config.sampler.name, names)
    _check_int("config.sampler.nfe", config.sampler.nfe)
    check_choice("config.sampler.spacing", config.sampler.spacing, (None,) + SPACINGS)
    check_choice("config.sampler.final", config.sampler.final, FINALS)
    if not config.table.solvers:
        raise ValueError(f"config.table.solvers must name at least one of {names}")
    for name in config.table.solvers:
        check_choice("config.table.solvers entry", name, names)
    if not config.table.nfes:
        raise ValueError("config.table.nfes must list at least one NFE")
    for nfe in config.table.nfes:
        _check_int("config.table.nfes entry", nfe)
    _check_int("config.batch_size", config.batch_size)
    _check_int("config.seed", config.seed, 0)
    _check_int("config.gmm.dim", config.gmm.dim)
    _check_int("config.gmm.num_components", config.gmm.num_components)
    _check_positive("config.gmm.spread", config.gmm.spread)
    _check_positive("config.gmm.scale", config.gmm.scale)
    _check_positive("config.reference_tol", config.reference_tol)
    # the chosen sampler must build (e.g. enough calls for its stages, a compatible final point)
    registry.build(config.sampler.name, get_schedule(config.schedule), config.sampler.nfe, config.predicts,
                   spacing=config.sampler.spacing, final=config.sampler.final)


# -- the Gaussian-mixture job -------------------------------------------------------------------


def _scatter(data: np.ndarray, samples: np.ndarray, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(data[:, 0], data[:, 1], s=3, alpha=0.4, label="data (exact samples)")
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.4, label="solver samples")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.set_title(title, fontsize=9)
    ax.legend(markerscale=4)
    ax.set_aspect("equal", "datalim")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sample_gmm(config: ConfigDict, workdir: str) -> dict:
    """Sample the mixture with ``config.sampler``; tabulate every ``config.table`` solver x NFE."""
    t_start = time.perf_counter()
    gmm = random_mixture(**config.gmm)
    schedule = get_schedule(config.schedule)
    model_fn = gmm.model_fn(schedule, config.predicts)
    key_z, key_data = jax.random.split(jax.random.PRNGKey(config.seed))
    z = np.asarray(jax.random.normal(key_z, (config.batch_size, gmm.dim), jnp.float32), np.float64)
    ref = Reference(gmm.denoise, z, tol=config.reference_tol)
    log_prob = jax.jit(gmm.log_prob)
    mean_log_prob = lambda x: float(jnp.mean(log_prob(jnp.asarray(x, jnp.float32))))
    s = config.sampler
    sp, fin = s.spacing, s.final
    chosen = solver_error(s.name, schedule, s.nfe, model_fn, ref, predicts=config.predicts, spacing=sp, final=fin)
    chosen_ref = ref(*endpoints(registry.grid(s.name, schedule, s.nfe, spacing=sp, final=fin)))
    data = np.asarray(gmm.sample(key_data, config.batch_size))
    print(f"{s.name} at NFE {s.nfe} ({chosen['nfe']} calls): RMS error {chosen['rms']:.3g} vs the exact PF-ODE, "
          f"mean log p {mean_log_prob(chosen['samples']):.4f} (exact PF-ODE solution {mean_log_prob(chosen_ref):.4f}, "
          f"data {mean_log_prob(data):.4f})", flush=True)

    rows = []
    cells = [(n, f) for n in config.table.solvers for f in config.table.nfes]
    progress = Progress(len(cells), "table ")
    for name, nfe in cells:
        try:
            registry.build(name, schedule, nfe, config.predicts, spacing=sp, final=fin)
        except ValueError as err:
            rows.append(dict(solver=name, nfe=nfe, nfe_used=None, rms_error=None, mean_log_prob=None,
                             seconds_with_compile=None))
            progress.update(f"{name} nfe={nfe}: skipped ({err})")
            continue
        r = solver_error(name, schedule, nfe, model_fn, ref, predicts=config.predicts, spacing=sp, final=fin)
        rows.append(dict(solver=name, nfe=nfe, nfe_used=r["nfe"], rms_error=r["rms"],
                         mean_log_prob=mean_log_prob(r["samples"]), seconds_with_compile=r["seconds"]))
        progress.update(f"{name} nfe={nfe}: rms {r['rms']:.3g}")

    by = {(r["solver"], r["nfe"]): r for r in rows}
    header = ["solver"] + [f"NFE {f}" for f in config.table.nfes]

    def cell(r, field):  # "(k)": the solver made k < NFE calls (its stages do not divide NFE)
        if r["nfe_used"] is None or r["nfe_used"] == r["nfe"]:
            return r[field]
        return f"{r[field]:.3g} ({r['nfe_used']})"

    for field, what in (("rms_error", "RMS error vs the exact PF-ODE solution"),
                        ("mean_log_prob", f"mean exact log p of the samples (data: {mean_log_prob(data):.4f})")):
        print(f"\n{what} ({config.schedule}, predicts={config.predicts}, {config.batch_size} samples; "
              f"(k): k model calls were made)")
        print(markdown_table(header, [[n] + [cell(by[n, f], field) for f in config.table.nfes]
                                      for n in config.table.solvers]))

    out = Path(workdir)
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    curves = {n: ([by[n, f]["nfe_used"] for f in config.table.nfes if by[n, f]["nfe_used"]],
                  [by[n, f]["rms_error"] for f in config.table.nfes if by[n, f]["nfe_used"]])
              for n in config.table.solvers}
    plot_error_vs_nfe(curves, str(out / "error_vs_nfe.png"), f"Gaussian mixture (dim {gmm.dim}), {config.schedule}")
    _scatter(data, chosen["samples"], f"{s.name}, NFE {chosen['nfe']}: RMS error {chosen['rms']:.2g} vs exact PF-ODE",
             str(out / "samples.png"))
    np.save(out / "samples.npy", chosen["samples"])
    seconds = time.perf_counter() - t_start
    print(f"\nwrote {', '.join(sorted(os.listdir(out)))} to {out} in {seconds:.1f}s", flush=True)
    return {"rms_error": chosen["rms"], "nfe": chosen["nfe"], "samples": chosen["samples"], "table": rows}


# analytic-model jobs (configs with a ``gmm`` section) and the train/sample/eval jobs of a network
GMM_MODES: dict[str, Job] = {"sample": Job(check_gmm, sample_gmm)}
TRAIN_MODES: dict[str, Job] = {mode: Job(train_jobs.validate, fn) for mode, fn in train_jobs.MODES.items()}


# -- entry point ------------------------------------------------------------------------------


def check(config: ConfigDict) -> tuple[Job, ConfigDict]:
    """The config's job and its resolved config, after validating the mode and every field
    (no work is done)."""
    modes = GMM_MODES if "gmm" in config else TRAIN_MODES
    check_choice("config.mode", config.get("mode"), sorted(modes))
    job = modes[config.mode]
    resolved = job.check(config)
    return job, (config if resolved is None else resolved)


def run(config: ConfigDict, workdir: str) -> dict:
    """Validate ``config``, then create ``workdir``, save the resolved config there (process 0
    only) and run the job."""
    job, resolved = check(config)
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(resolved.to_json_best_effort(indent=2, sort_keys=True))
        print(f"mode {config.mode!r}, workdir {workdir}\n{resolved}", flush=True)
    return job.run(config, workdir)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config=configs/<name>.py is required")
    train_distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    name = Path(config_flags.get_config_filename(flags.FLAGS["config"])).stem
    run(_CONFIG.value, _WORKDIR.value or os.path.join("workdir", name))


if __name__ == "__main__":
    app.run(main)
