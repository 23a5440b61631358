"""The user-facing entry point: ``python launch.py --config=configs/X.py [--config.a.b=value ...] [--workdir=DIR]``.

The config (an ``ml_collections`` ConfigDict file; any field can be overridden on the
command line) names a ``mode``; the job is a ``Job(check, run)`` of ``ANALYTIC_MODES`` if the
config has a ``table`` section (the solver x NFE table against the exact probability-flow ODE
solution, which only an analytic model has: configs/gmm.py) and of ``TRAIN_MODES``
(``train``/``sample``/``eval`` of a network) otherwise. ``check(config)`` validates every field
up front (a ``ValueError`` naming the field and its allowed values, before any work starts),
``run(config, workdir)`` does the work and writes its outputs. The resolved config is saved as
``workdir/config.json``. The sections both kinds share (``seed``, ``schedule {name, kwargs}``,
``predicts``, ``data {name, kwargs}``, ``sampler {name, nfe, spacing, final, num_samples}``)
mean the same (``train.config.defaults()``) and are checked by the same functions.

Modes:
* ``train`` / ``sample`` / ``eval`` -- ``train.jobs`` (configs/digits.py, configs/dpm_cifar.py):
  train a network with checkpoints and exact resume, sample it with any solver x NFE (PNG
  grids + .npz), evaluate it (sliced Wasserstein, MMD, FID); multi-host with
  ``--coordinator_address --num_processes --process_id``.
* ``sample`` of an analytic config -- ``sample_analytic``: the Gaussian mixture of ``data`` sampled
  by every solver x NFE of ``sampler`` (``samples/<solver>_nfe<N>.png`` and ``.npz``, as the
  train ``sample`` job writes them), and a ``table`` solver x NFE of RMS errors against the
  exact probability-flow ODE solution and of the exact log-likelihood of the samples.
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

from samplers import registry
from samplers.accuracy import Reference, endpoints, solver_error
from samplers.ode.common import check_choice
from samplers.param import check_prediction
from train import data as data_lib
from train import distributed as train_distributed
from train import jobs as train_jobs
from train.config import (as_tuple, build_schedule, check_float, check_gmm_kwargs, check_int, check_sampler,
                          check_schedule, solvers)
from train.report import Progress, markdown_table, plot_error_vs_nfe

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


# -- the analytic (Gaussian-mixture) job ---------------------------------------------------------

ANALYTIC_DATA = ("gmm",)  # data sets with an exact model (train.data.mixture_of)


def check_analytic(config: ConfigDict) -> None:
    """Validate the fields of an analytic-model config (configs/gmm.py); builds every requested solver."""
    check_int("seed", config.seed, 0)
    schedule = check_schedule(config)
    check_prediction(config.predicts)
    check_choice("data.name", config.data.name, ANALYTIC_DATA)
    check_gmm_kwargs(config.data.kwargs)
    try:
        data_lib.mixture_of(config.data.kwargs)
    except TypeError as err:
        raise ValueError(f"data.kwargs do not fit data set {config.data.name!r}: {err}") from err
    check_sampler(config, schedule)
    names = registry.names()
    if not as_tuple(config.table.solvers):
        raise ValueError(f"table.solvers must name at least one of {names}")
    for name in as_tuple(config.table.solvers):
        check_choice("table.solvers entry", name, names)
    if not as_tuple(config.table.nfes):
        raise ValueError("table.nfes must list at least one NFE")
    for nfe in as_tuple(config.table.nfes):
        check_int("table.nfes entry", nfe)
    check_float("reference_tol", config.reference_tol, 0.0, open_lo=True)


def sample_analytic(config: ConfigDict, workdir: str) -> dict:
    """Sample the mixture with every ``config.sampler`` pair; tabulate every ``config.table`` solver x NFE."""
    t_start = time.perf_counter()
    gmm = data_lib.mixture_of(config.data.kwargs)
    schedule = build_schedule(config)
    model_fn = gmm.model_fn(schedule, config.predicts)
    s = config.sampler
    sp, fin = s.spacing, s.final
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(config.seed), (s.num_samples, gmm.dim), jnp.float32),
                   np.float64)
    ref = Reference(gmm.denoise, z, tol=config.reference_tol)
    log_prob = jax.jit(gmm.log_prob)
    mean_log_prob = lambda x: float(jnp.mean(log_prob(jnp.asarray(x, jnp.float32))))
    data = data_lib.load(config.data.name, "train", **{"n": s.num_samples, **dict(config.data.kwargs)}).x
    out = Path(workdir)
    samples_dir = out / train_jobs.SAMPLES_DIR
    samples_dir.mkdir(exist_ok=True)

    sampled = []
    for name, nfe in solvers(config):
        r = solver_error(name, schedule, nfe, model_fn, ref, predicts=config.predicts, spacing=sp, final=fin)
        exact = ref(*endpoints(registry.grid(name, schedule, nfe, spacing=sp, final=fin)))
        sampled.append(dict(solver=name, nfe=nfe, nfe_used=r["nfe"], rms_error=r["rms"],
                            mean_log_prob=mean_log_prob(r["samples"])))
        print(f"{name} at NFE {nfe} ({r['nfe']} calls): RMS error {r['rms']:.3g} vs the exact PF-ODE, mean log p "
              f"{sampled[-1]['mean_log_prob']:.4f} (exact PF-ODE solution {mean_log_prob(exact):.4f}, data "
              f"{mean_log_prob(data):.4f})", flush=True)
        train_jobs.save_samples(r["samples"], False, str(samples_dir / f"{name}_nfe{nfe}"),
                                f"{name}, NFE {r['nfe']}: RMS error {r['rms']:.2g} vs exact PF-ODE", r["nfe"],
                                reference=data)

    rows = []
    table_solvers, table_nfes = as_tuple(config.table.solvers), as_tuple(config.table.nfes)
    cells = [(n, f) for n in table_solvers for f in table_nfes]
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
    header = ["solver"] + [f"NFE {f}" for f in table_nfes]

    def cell(r, field):  # "(k)": the solver made k < NFE calls (its stages do not divide NFE)
        if r["nfe_used"] is None or r["nfe_used"] == r["nfe"]:
            return r[field]
        return f"{r[field]:.3g} ({r['nfe_used']})"

    for field, what in (("rms_error", "RMS error vs the exact PF-ODE solution"),
                        ("mean_log_prob", f"mean exact log p of the samples (data: {mean_log_prob(data):.4f})")):
        print(f"\n{what} ({config.schedule.name}, predicts={config.predicts}, {s.num_samples} samples; "
              f"(k): k model calls were made)")
        print(markdown_table(header, [[n] + [cell(by[n, f], field) for f in table_nfes] for n in table_solvers]))

    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    curves = {n: ([by[n, f]["nfe_used"] for f in table_nfes if by[n, f]["nfe_used"]],
                  [by[n, f]["rms_error"] for f in table_nfes if by[n, f]["nfe_used"]])
              for n in table_solvers}
    plot_error_vs_nfe(curves, str(out / "error_vs_nfe.png"),
                      f"Gaussian mixture (dim {gmm.dim}), {config.schedule.name}")
    seconds = time.perf_counter() - t_start
    print(f"\nwrote {', '.join(sorted(os.listdir(out)))} to {out} in {seconds:.1f}s", flush=True)
    return {"sampled": sampled, "table": rows}


# analytic-model jobs (configs with a ``table`` section) and the train/sample/eval jobs of a network
ANALYTIC_MODES: dict[str, Job] = {"sample": Job(check_analytic, sample_analytic)}
TRAIN_MODES: dict[str, Job] = {mode: Job(train_jobs.validate, fn) for mode, fn in train_jobs.MODES.items()}


# -- entry point ------------------------------------------------------------------------------


def check(config: ConfigDict) -> tuple[Job, ConfigDict]:
    """The config's job and its resolved config, after validating the mode and every field
    (no work is done)."""
    modes = ANALYTIC_MODES if "table" in config else TRAIN_MODES
    check_choice("mode", config.get("mode"), sorted(modes))
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
