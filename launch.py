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

A bad flag, a config field that fails its check, or a missing file (the config file, the
checkpoint of ``mode=sample``) prints one ``error: ...`` line and exits with status 2; a bug
still shows its traceback. absl / orbax / XLA INFO lines are hidden unless ``--verbosity=0``.

Modes:
* ``train`` / ``sample`` / ``eval`` -- ``train.jobs`` (configs/digits.py, configs/dpm_cifar.py):
  train a network with checkpoints and exact resume, sample it with any solver x NFE (PNG
  grids + .npz), evaluate it (sliced Wasserstein, MMD, FID); multi-host with
  ``--coordinator_address --num_processes --process_id``.
* ``sample`` of an analytic config -- ``train.analytic_job.sample_analytic``: the Gaussian
  mixture of ``data`` sampled by every solver x NFE of ``sampler`` (``samples/<solver>_nfe<N>.png`` and ``.npz``, as the
  train ``sample`` job writes them), and a ``table`` solver x NFE of RMS errors against the
  exact probability-flow ODE solution and of the exact log-likelihood of the samples.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import jax
from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from samplers.ode.common import check_choice
from train import distributed as train_distributed
from train import jobs as train_jobs
from train.analytic_job import check_analytic, sample_analytic

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


# -- the jobs ---------------------------------------------------------------------------------

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
    return start(config, workdir, *check(config))


def start(config: ConfigDict, workdir: str, job: Job, resolved: ConfigDict) -> dict:
    """Run ``job`` (checked by ``check``): create ``workdir``, save ``resolved`` there (process 0 only)."""
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(resolved.to_json_best_effort(indent=2, sort_keys=True))
        print(f"mode {config.mode!r}, workdir {workdir}\n{resolved}", flush=True)
    return job.run(config, workdir)


USAGE_ERROR = 2  # exit status of a bad config / flag / missing file (as argparse), after one ``error:`` line


def fail(message) -> None:
    """Print one ``error: <message>`` line (no traceback: the input is wrong, not the code) and exit 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, but a bad flag (a missing config file, an unknown or ill-typed
    ``--config.<field>``) is one ``error:`` line naming the flag instead of absl's usage dump."""
    try:
        argv = flags.FLAGS(argv)
    except flags.Error as err:  # e.g. an ill-typed --config.<field>=<value>
        fail(" ".join(str(err).split()))
    except (AttributeError, KeyError) as err:  # ml_collections: an override of a field the config lacks
        fail(f"no such config field {err} in {[a for a in argv[1:] if a.startswith('--config.')]}")
    if _CONFIG.present:  # ml_collections defers a missing file's error to the first use of the config
        path = config_flags.get_config_filename(flags.FLAGS["config"])
        if not os.path.isfile(path):
            fail(f"--config: no such file {path!r}")
    return argv


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        fail("--config=configs/<name>.py is required")
    if not flags.FLAGS["verbosity"].present:  # keep orbax / absl / XLA INFO lines out of the default output
        logging.set_verbosity(logging.WARNING)
    train_distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    name = Path(config_flags.get_config_filename(flags.FLAGS["config"])).stem
    config = _CONFIG.value
    try:
        job, resolved = check(config)
    except ValueError as err:  # every config check names the field and its allowed values
        fail(err)
    try:
        start(config, _WORKDIR.value or os.path.join("workdir", name), job, resolved)
    except FileNotFoundError as err:  # e.g. mode=sample before mode=train: no checkpoint in the workdir
        fail(err)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
