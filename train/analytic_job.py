"""The analytic (Gaussian-mixture) job of ``launch.py`` (configs/gmm.py): every solver x NFE of a
config against the exact probability-flow ODE solution, which only an analytic model has
(``models.analytic.GaussianMixture``: exact denoiser and log-density under any schedule).

* ``check_analytic(config)`` validates every field up front (a ``ValueError`` naming the field).
* ``sample_analytic(config, workdir)`` samples the mixture of ``data`` with every ``sampler``
  solver x NFE (``samples/<solver>_nfe<N>.png`` and ``.npz``, as the train ``sample`` job writes
  them) and tabulates the ``table`` solver x NFE of RMS errors against the exact PF-ODE solution
  and of the exact log-likelihood of the samples (``table.csv``, ``error_vs_nfe.png``).
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from samplers import registry
from samplers.accuracy import Reference, endpoints, solver_error
from samplers.checks import check_int, check_number
from samplers.ode.common import check_choice
from samplers.param import check_prediction
from train import data as data_lib
from train import jobs as train_jobs
from train.config import as_tuple, build_schedule, check_gmm_kwargs, check_sampler, check_schedule, solvers
from train.report import Progress, markdown_table, plot_error_vs_nfe

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
    check_number("reference_tol", config.reference_tol, 0.0, open_lo=True)


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
