"""Accuracy of every registered ODE solver, and of diffusers' schedulers, against the exact PF-ODE.

Problem: a Gaussian mixture (dim 8 by default) whose exact noise prediction is the model,
under the DDPM ``vp_discrete`` schedule (linear betas 1e-4..0.02, 1000 steps) that
diffusers' schedulers use. Every method starts from the same noise x_T = z at t = 999
and is compared, in RMS over the batch, with a float64 tight-tolerance solve of the
probability-flow ODE from x_T to the method's own end point (sigma = 0 for most; t = 0,
sigma ~ 0.01, for diffusers' DEIS and for our solvers that cannot take the last step to
sigma = 0, marked "t=0"). Everything runs in float64 (``--float32`` for ours in float32).

    python bench/ode_accuracy.py [--dim 8] [--batch 256] [--nfes 5,10,20] [--solvers ddim,heun] [--out DIR]

Prints the machine, a markdown table (rows: methods, columns: NFE; "(k)": k model calls
were made instead) and writes it with a log-log plot to ``--out``.

Learnt grids (``samplers.ode.learnt_grid``, rows "learnt <base>"): for each NFE of
``--learnt-nfes`` the grid of each ``--learnt-bases`` method is searched against the exact
PF-ODE solution from ``--train-batch`` other noise draws (seed 1) on the same mixture, saved with
orbax to ``--out``/grids, loaded back and evaluated on the benchmark noise; rows "learnt <base>
(other mixture)" use grids searched on a different mixture (seed 1) instead; ":decoupled" also
searches the times the model is called at (LD3), ":orders" the per-step orders (USF-style; flags
joined by "+"); the base "usf" (``samplers.ode.usf``) searches every step's order, prediction type and UniC
corrector with the grid. Rows "gits <base>": the GITS grid
(``samplers.ode.gits``: dynamic programming over a 100-point log-SNR grid of DDIM step costs along
``--gits-batch`` exact trajectories from other noise, seed 1) run with <base>. Rows "ays ..." and
"dualfast <base>" (``--fast-ode``, ``fast_ode_rows``): DDIM on Align Your Steps grids (the KLUB-optimised
one, the Gaussian closed form, the SD1.5 table) and DualFast on DPM-Solver++(3M) / UniPC. The last lines give
the ratio of diffusers' DPM-Solver++ 3M error to the best of ours at each learnt NFE. Row "dpm_solver_v3"
(``--v3-points``, ``v3_row``): DPM-Solver-v3 at the learnt NFEs on the registry's grid (time-uniform, last step
to sigma = 0) with statistics computed from ``--v3-samples`` mixture samples (seed 2) on ``--v3-points`` log-SNR
points, saved with orbax to ``--out``/v3_stats and loaded back. Rows "dc <base>" (``--dc-bases``, ``dc_rows``):
DC-Solver on UniPC at the learnt NFEs on the registry's grid, its ratios searched (``dc_solver.fit_rho``, fixed
knobs: bound 0.5, 41 candidates) against the exact PF-ODE trajectory of ``--dc-train`` other draws (seed 1) and
shrunk on ``--dc-val`` validation draws (seed 2), saved with orbax to ``--out``/dc and loaded back; "(other
mixture)" rows search on the mixture of seed 1 instead; "dc <base> (CPR)" rows: the ratios at the learnt NFEs
predicted by the cascade polynomial regression (``dc_solver.fit_cpr``) of ratios searched the same way at
``--cpr-nfes`` (the learnt NFEs left out), shrunk on the same validation draws. Rows "learnt, selected on validation (<spec>)"
(``--select-specs``, ``--select-nfes``): ``learnt_grid.fit_select`` fits every spec on the ``--train-batch``
draws (seed 1) and keeps, per NFE, the one with the lowest RMS on ``--select-val`` validation draws (seed 2),
so the variant is chosen without the benchmark's noise; the per-candidate validation RMS and the ratio of
diffusers' DPM-Solver++ 3M to the selected row are printed under the table. The issue's
goal setting is

    python bench/ode_accuracy.py --dim 32 --components 6 --nfes 5,10,15,20 --solvers ddim,ipndm,dpm_solver_pp_3m,unipc_3
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (DDPM, Progress, Reference, diffusers_loop, diffusers_methods, machine_lines,  # noqa: E402
                          markdown_table, plot_error_vs_nfe, rms, solver_error)
from models.analytic import random_mixture  # noqa: E402
from samplers import registry  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.grids import time_grid  # noqa: E402
from samplers.addons.core import with_addons  # noqa: E402
from samplers.ode import ays, dc_solver, dpm_solver_v3, dualfast, gits, learnt_grid  # noqa: E402
from samplers.ode.ddim import ddim  # noqa: E402
from samplers.reference import pf_ode_trajectory  # noqa: E402
from samplers.schedules import ddpm_betas, vp_discrete  # noqa: E402

NFES = (5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
# fixed before the run; these are the variants tried in earlier sessions, some of them seen on this benchmark,
# the choice among them is made on validation draws only
SELECT_SPECS = ("ipndm", "dpm_solver_pp_3m:decoupled", "dpm_solver_pp_2m:decoupled",
                "dpm_solver_pp_3m_taylor:orders+decoupled", "dpm_solver_pp_3m:orders+decoupled",
                "dpm_solver_pp_3m_taylor:orders", "usf", "usf:decoupled")


def run_diffusers(make, steps: int, sigma_space: bool, denoise, ref: Reference, a0: float, s0: float):
    """(rms error, model calls, ends at sigma = 0?) of one diffusers scheduler whose model is the exact
    eps of ``denoise(x, alpha, sigma) -> (x0, eps)``, in float64."""
    import torch

    sched = make(steps)
    calls = [0]

    def model(inp, t):
        if sigma_space:  # Euler/Heun: the scaled input is x_vp at s = sigmas[step_index]
            s = float(sched.sigmas[sched.step_index].double())
        else:
            s = float(((1 - sched.alphas_cumprod.double()[int(t)]) / sched.alphas_cumprod.double()[int(t)]) ** 0.5)
        alpha = 1.0 / np.sqrt(1.0 + s * s)
        calls[0] += 1
        _, eps = denoise(jnp.asarray(inp.numpy()), alpha, s * alpha)
        return torch.from_numpy(np.array(eps))

    x_vp = ref.start(a0, s0)
    x_T = torch.from_numpy(x_vp / a0 if sigma_space else x_vp)
    out = diffusers_loop(sched, model, x_T).numpy()
    s_end = float(sched.sigmas[-1]) if hasattr(sched, "sigmas") else 0.0  # DDIM ends at alpha = 1
    a1 = 1.0 / np.sqrt(1.0 + s_end**2)
    x_end = out * a1 if sigma_space else out  # Euler/Heun work on x / alpha
    return rms(x_end, ref(a0, s0, a1, s_end * a1)), calls[0], s_end == 0.0


def fast_ode_rows(args, schedule, gmm, ref, x_start, learnt_nfes, nfes) -> dict:
    """Rows "ays klub ddim" (``ays.optimise_grid`` on ``--ays-batch`` data samples, seed 1), "ays gaussian
    ddim" (the closed form with c = the data's RMS std), "ays_sd15 ddim" (the published table) and
    "dualfast <base>" (``dualfast`` c = 0.2 on the registry's default grid) at each learnt NFE."""
    model = gmm.model_fn(schedule, "eps")
    run = jax.jit(sample, static_argnums=(0, 1))
    exact = ref(float(schedule.alpha(schedule.t_max)), float(schedule.sigma(schedule.t_max)), 1.0, 0.0)
    err = lambda smp: (rms(run(smp, model, x_start).x, exact), smp.nfe)
    x0 = np.asarray(gmm.sample(jax.random.PRNGKey(1), args.ays_batch, jnp.float64))
    c = float(np.sqrt(np.mean(np.diag(gmm.cov))))
    rows = {"ays klub ddim": {}, "ays gaussian ddim": {}, "ays_sd15 ddim": {}}
    rows.update({f"dualfast {b}": {} for b in ("dpm_solver_pp_3m", "unipc")})
    for nfe in learnt_nfes:
        art = ays.optimise_grid(schedule, model, x0, nfe)
        rows["ays klub ddim"][nfe] = err(learnt_grid.learnt_grid_sampler(schedule, art))
        rows["ays gaussian ddim"][nfe] = err(ddim(schedule, ays.gaussian_grid(schedule, nfe, c)))
        rows["ays_sd15 ddim"][nfe] = err(ddim(schedule, time_grid(schedule, nfe, "ays_sd15", final="zero")))
        for b in ("dpm_solver_pp_3m", "unipc"):
            smp = registry.build(b, schedule, nfe)
            rows[f"dualfast {b}"][nfe] = err(with_addons(smp, dualfast.dualfast(schedule, smp, 0.2)))
    return {k: {n: v.get(n) for n in nfes} for k, v in rows.items()}


def v3_row(args, schedule, gmm, ref, v3_nfes, nfes, dtype) -> dict:
    """DPM-Solver-v3 (registry defaults, last step to sigma = 0) at ``v3_nfes`` with statistics of the mixture's
    exact model from ``--v3-samples`` samples, saved and loaded back with orbax."""
    data = gmm.sample(jax.random.PRNGKey(2), args.v3_samples, jnp.float64)
    stats = dpm_solver_v3.model_statistics(schedule, gmm.model_fn(schedule, "eps"), data, jax.random.PRNGKey(3),
                                           num_points=args.v3_points, batch_size=min(args.v3_samples, 1024))
    path = os.path.abspath(os.path.join(args.out, "v3_stats"))
    dpm_solver_v3.save_statistics(path, stats)
    stats = dpm_solver_v3.load_statistics(path)
    row = {n: None for n in nfes}
    for nfe in v3_nfes:
        r = solver_error("dpm_solver_v3", schedule, nfe, gmm.model_fn(schedule, "eps"), ref, final="zero", dtype=dtype,
                         stats=stats)
        row[nfe] = (r["rms"], r["nfe"])
    return row


def dc_rows(args, schedule, gmm, ref, x_start, learnt_nfes, nfes) -> dict:
    """Rows "dc <base>", "dc <base> (CPR)" and their "(other mixture)" twins at ``learnt_nfes`` (module
    docstring)."""
    rows = {}
    run = jax.jit(sample, static_argnums=(0, 1))
    a0, s0 = float(schedule.alpha(schedule.t_max)), float(schedule.sigma(schedule.t_max))
    draws = lambda seed, n: np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, args.dim), jnp.float64))
    x = np.hypot(a0, s0) * np.concatenate([draws(1, args.dc_train), draws(2, args.dc_val)])
    t = args.dc_train
    cpr_nfes = [n for n in (int(v) for v in args.cpr_nfes.split(",") if v) if n not in learnt_nfes]
    out_dir = os.path.abspath(os.path.join(args.out, "dc"))
    bases = [b for b in args.dc_bases.split(",") if b]
    progress = Progress(2 * len(bases) * (len(cpr_nfes) + len(learnt_nfes)), "DC searches ")

    def evaluate(art, name):
        learnt_grid.save_grid(os.path.join(out_dir, name), art)
        out = run(dc_solver.dc_sampler(schedule, learnt_grid.load_grid(os.path.join(out_dir, name))),
                  gmm.model_fn(schedule, "eps"), x_start)
        return rms(out.x, ref(a0, s0, 1.0, 0.0)), int(out.nfe)

    for base in bases:
        for mixture_seed, suffix in ((0, ""), (1, " (other mixture)")):
            tuned = random_mixture(dim=args.dim, num_components=args.components, seed=mixture_seed)
            model = tuned.model_fn(schedule, "eps")

            def search(nfe):
                g = registry.grid(base, schedule, nfe, final="zero")
                traj = pf_ode_trajectory(tuned.denoise, x, g, rtol=1e-7, atol=1e-7)[1:]
                art = dc_solver.fit_rho(schedule, model, g, x[:t], traj[:, :t], x[t:], traj[-1, t:], base=base)
                progress.update(f"{base}, mixture seed {mixture_seed}, {nfe} calls")
                return g, traj, art

            cpr = None
            if cpr_nfes:  # fitted on budgets the table does not show, saved and loaded back
                path = os.path.join(out_dir, f"cpr_{base}_mix{mixture_seed}")
                learnt_grid.save_grid(path, dc_solver.fit_cpr([search(n)[2] for n in cpr_nfes]))
                cpr = learnt_grid.load_grid(path)
            row, cpr_row = {}, {}
            for nfe in learnt_nfes:
                g, traj, art = search(nfe)
                row[nfe] = evaluate(art, f"{base}_mix{mixture_seed}_nfe{nfe}")
                if cpr is not None:
                    cpr_art = dc_solver.cpr_artefact(schedule, model, g, cpr, x[t:], traj[-1, t:])
                    cpr_row[nfe] = evaluate(cpr_art, f"{base}_mix{mixture_seed}_nfe{nfe}_cpr")
            rows[f"dc {base}{suffix}"] = {n: row.get(n) for n in nfes}
            if cpr is not None:
                rows[f"dc {base} (CPR){suffix}"] = {n: cpr_row.get(n) for n in nfes}
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--components", type=int, default=4)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--nfes", default=",".join(map(str, NFES)))
    p.add_argument("--solvers", default="all", help="comma-separated registered names, or 'all'")
    p.add_argument("--no-diffusers", action="store_true")
    p.add_argument("--float32", action="store_true", help="run our solvers in float32")
    p.add_argument("--learnt-nfes", default="5,10", help="NFEs to search grids for ('' for none)")
    p.add_argument("--learnt-bases",
                   default="ipndm,dpm_solver_pp_3m,dpm_solver_pp_3m:decoupled,dpm_solver_pp_2m:decoupled,"
                           "dpm_solver_pp_3m_taylor:orders+decoupled,usf,usf:decoupled",
                   help="learnt_grid.BASES names, ':decoupled' to also search the model times, ':orders' the "
                        "per-step orders (flags joined by '+')")
    p.add_argument("--train-batch", type=int, default=1024)
    p.add_argument("--select-specs", default=",".join(SELECT_SPECS),
                   help="variant specs (as --learnt-bases) fitted on the train draws, one kept per NFE and mixture by "
                        "its RMS on --select-val validation draws ('' for none)")
    p.add_argument("--select-nfes", default="5,10", help="NFEs of the selected rows ('' for none)")
    p.add_argument("--select-val", type=int, default=512, help="validation draws (seed 2) of the variant selection")
    p.add_argument("--gits-bases", default="ddim,ipndm", help="learnt_grid.BASES names run on GITS grids ('' for none)")
    p.add_argument("--gits-batch", type=int, default=256)
    p.add_argument("--fast-ode", type=int, default=1, help="rows for AYS and DualFast at the learnt NFEs (0: none)")
    p.add_argument("--ays-batch", type=int, default=256, help="data samples for the AYS KLUB")
    p.add_argument("--v3-points", type=int, default=1200, help="DPM-Solver-v3 statistics grid points (0: no v3 row)")
    p.add_argument("--v3-samples", type=int, default=4096, help="data samples for the DPM-Solver-v3 statistics")
    p.add_argument("--dc-bases", default="unipc,unipc_3", help="DC-Solver bases (dc_solver.BASES, '' for none)")
    p.add_argument("--dc-train", type=int, default=32, help="search draws of DC-Solver's ratios")
    p.add_argument("--dc-val", type=int, default=64, help="validation draws of DC-Solver's shrinkage")
    p.add_argument("--cpr-nfes", default="4,6,7,8,9,11,12,14,16",
                   help="budgets whose searched DC ratios CPR regresses (the learnt NFEs are left out; '' for none)")
    p.add_argument("--out", default="workdir/bench")
    args = p.parse_args()
    jax.config.update("jax_enable_x64", True)
    nfes = [int(n) for n in args.nfes.split(",")]
    names = registry.names() if args.solvers == "all" else args.solvers.split(",")
    for n in names:
        if n not in registry.names():
            raise ValueError(f"--solvers entries must be among {registry.names()}, got {n!r}")
    for spec in [b for b in args.select_specs.split(",") if b]:  # bad specs fail before the run
        learnt_grid.parse_spec(spec, "--select-specs entry")
    print(f"# ODE solver accuracy\n\n{machine_lines()}\n", flush=True)

    gmm = random_mixture(dim=args.dim, num_components=args.components, seed=0)
    schedule = vp_discrete(ddpm_betas(**DDPM))
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (args.batch, args.dim), jnp.float64))
    ref = Reference(gmm.denoise, z)
    a0, s0 = float(schedule.alpha(schedule.t_max)), float(schedule.sigma(schedule.t_max))
    dtype = jnp.float32 if args.float32 else jnp.float64
    denoise = jax.jit(gmm.denoise)

    results: dict[str, dict[int, tuple[float, int] | None]] = {}
    methods = {} if args.no_diffusers else diffusers_methods()
    progress = Progress(len(names) + len(methods), "methods ")
    for name in names:
        row, label = {}, name
        for nfe in nfes:
            row[nfe] = None
            for final in ("zero", None):  # rk solvers integrate in t and end at t = 0 instead
                try:
                    registry.build(name, schedule, nfe, spacing=None, final=final)
                except ValueError:
                    continue
                r = solver_error(name, schedule, nfe, gmm.model_fn(schedule, "eps"), ref, final=final, dtype=dtype)
                row[nfe] = (r["rms"], r["nfe"])
                label = name if final == "zero" else f"{name} (t=0)"
                break
        results[label] = row
        progress.update(label)
    learnt_nfes = [int(n) for n in args.learnt_nfes.split(",") if n]
    x_start = jnp.asarray(ref.start(a0, s0), dtype)

    def draws_teacher(mixture, seed: int, n: int):
        """(x_start, exact PF-ODE solution at sigma = 0) of ``n`` noise draws of PRNGKey(seed) on ``mixture``."""
        teacher = Reference(mixture.denoise, np.asarray(jax.random.normal(
            jax.random.PRNGKey(seed), (n, args.dim), jnp.float64)))
        return teacher.start(a0, s0), teacher(a0, s0, 1.0, 0.0)

    def evaluate(art, name: str):
        """(RMS on the benchmark noise, model calls) of ``art`` saved to --out/grids/<name> and loaded back."""
        path = os.path.abspath(os.path.join(args.out, "grids", name))
        learnt_grid.save_grid(path, art)
        smp = learnt_grid.learnt_grid_sampler(schedule, learnt_grid.load_grid(path))
        out = jax.jit(sample, static_argnums=(0, 1))(smp, gmm.model_fn(schedule, "eps"), x_start)
        return rms(out.x, ref(a0, s0, 1.0, 0.0)), int(out.nfe)

    for spec in [b for b in args.learnt_bases.split(",") if b] if learnt_nfes else []:
        base, opts = learnt_grid.parse_spec(spec, "--learnt-bases entry")
        for mixture_seed, suffix in ((0, ""), (1, " (other mixture)")):
            tuned = random_mixture(dim=args.dim, num_components=args.components, seed=mixture_seed)
            train = draws_teacher(tuned, 1, args.train_batch)
            row = {}
            for nfe in learnt_nfes:
                art = learnt_grid.fit_grid(schedule, tuned.model_fn(schedule, "eps"), base, nfe, *train,
                                           init_spacing="linspace", **opts)
                row[nfe] = evaluate(art, f"{spec.replace(':', '_').replace('+', '_')}_mix{mixture_seed}_nfe{nfe}")
            results[f"learnt {spec}{suffix}"] = {n: row.get(n) for n in nfes}
    select_nfes = [int(n) for n in args.select_nfes.split(",") if n]
    select_specs = [b for b in args.select_specs.split(",") if b]
    selection, selected = "", {}
    for mixture_seed, suffix in ((0, ""), (1, " (other mixture)")) if select_nfes and select_specs else ():
        tuned = random_mixture(dim=args.dim, num_components=args.components, seed=mixture_seed)
        train = draws_teacher(tuned, 1, args.train_batch)
        validation = draws_teacher(tuned, 2, args.select_val)  # disjoint from train's and the benchmark's noise
        row, chosen = {}, {}
        for nfe in select_nfes:
            art = learnt_grid.fit_select(schedule, tuned.model_fn(schedule, "eps"), select_specs, nfe, train,
                                         validation, init_spacing="linspace")
            row[nfe], chosen[nfe] = evaluate(art, f"selected_mix{mixture_seed}_nfe{nfe}"), art["spec"]
            selection += (f"- NFE {nfe}, mixture seed {mixture_seed}: chosen {art['spec']}; validation RMS: "
                          + ", ".join(f"{k} {v:.3g}" for k, v in art["validation_rms"].items()) + "; train RMS: "
                          + ", ".join(f"{k} {v:.3g}" for k, v in art["train_rms"].items()) + "\n")
        picks = sorted(set(chosen.values()))
        picked = picks[0] if len(picks) == 1 else "; ".join(f"NFE {n}: {c}" for n, c in chosen.items())
        selected[suffix] = f"learnt, selected on validation ({picked}){suffix}"
        results[selected[suffix]] = {n: row.get(n) for n in nfes}
    gits_bases = [b for b in args.gits_bases.split(",") if b] if learnt_nfes else []
    if gits_bases:
        fine = time_grid(schedule, 100, "logsnr", final="zero")
        z_train = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (args.gits_batch, args.dim), jnp.float64))
        traj = pf_ode_trajectory(gmm.denoise, np.hypot(a0, s0) * z_train, fine, rtol=1e-7, atol=1e-7)
        costs = gits.step_costs(schedule, gmm.model_fn(schedule, "eps"), fine, traj)
        for base in gits_bases:
            row = {}
            for nfe in learnt_nfes:
                smp = learnt_grid.learnt_grid_sampler(schedule, {"t": fine.t[gits.best_path(costs, nfe)[0][:-1]],
                                                                 "base": base})
                out = jax.jit(sample, static_argnums=(0, 1))(smp, gmm.model_fn(schedule, "eps"), x_start)
                row[nfe] = (rms(out.x, ref(a0, s0, 1.0, 0.0)), int(out.nfe))
            results[f"gits {base}"] = {n: row.get(n) for n in nfes}
    if learnt_nfes and args.fast_ode:
        results.update(fast_ode_rows(args, schedule, gmm, ref, x_start, learnt_nfes, nfes))
    if learnt_nfes and args.dc_bases:
        results.update(dc_rows(args, schedule, gmm, ref, x_start, learnt_nfes, nfes))
    if learnt_nfes and args.v3_points:
        results["dpm_solver_v3"] = v3_row(args, schedule, gmm, ref, learnt_nfes, nfes, dtype)
    for label, (make, steps, sigma_space) in methods.items():
        runs = {nfe: run_diffusers(make, steps(nfe), sigma_space, denoise, ref, a0, s0) for nfe in nfes}
        to_zero = all(r[2] for r in runs.values())
        results[f"diffusers {label}" + ("" if to_zero else " (t=0)")] = {n: r[:2] for n, r in runs.items()}
        progress.update(label)

    def cell(v, nfe):
        if v is None:
            return None
        return v[0] if v[1] == nfe else f"{v[0]:.3g} ({v[1]})"

    table = markdown_table(["method"] + [f"NFE {n}" for n in nfes],
                           [[label] + [cell(row[n], n) for n in nfes] for label, row in results.items()])
    title = (f"RMS error vs the exact PF-ODE solution: Gaussian mixture dim {args.dim}, {args.components} components, "
             f"{args.batch} samples, vp_discrete (DDPM linear betas), from t=999, "
             f"{'float32' if args.float32 else 'float64'} (ours)")
    goal = ""
    if "diffusers DPM-Solver++ 3M" in results:
        for nfe in [n for n in learnt_nfes if n in nfes]:
            ours = {k: r[nfe][0] for k, r in results.items() if not k.startswith("diffusers") and r.get(nfe)
                    and r[nfe][1] == nfe and "other mixture" not in k}
            best = min(ours, key=ours.get)
            goal += (f"- NFE {nfe}: diffusers DPM-Solver++ 3M {results['diffusers DPM-Solver++ 3M'][nfe][0]:.3g}, "
                     f"best of ours {best} {ours[best]:.3g}: ratio "
                     f"{results['diffusers DPM-Solver++ 3M'][nfe][0] / ours[best]:.2f}x\n")
    for label in selected.values() if "diffusers DPM-Solver++ 3M" in results else ():
        for nfe in [n for n in select_nfes if n in nfes and results[label].get(n)]:
            ratio = results["diffusers DPM-Solver++ 3M"][nfe][0] / results[label][nfe][0]
            goal += f"- NFE {nfe}: diffusers DPM-Solver++ 3M / {label}: {ratio:.2f}x\n"
    if selection:
        goal += ("\nVariant selection on validation draws (PRNGKey(2), "
                 f"{args.select_val}; fit on PRNGKey(1), {args.train_batch}):\n\n{selection}")
    print(f"{title}\n\n{table}\n\n{goal}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ode_accuracy.md"), "w") as f:
        f.write(f"# ODE solver accuracy\n\n{machine_lines()}\n\n{title}\n\n{table}\n\n{goal}")
    short = {label: f"learnt, selected on validation{suffix}" for suffix, label in selected.items()}  # legend
    curves = {short.get(label, label): ([v[1] for v in row.values() if v], [v[0] for v in row.values() if v])
              for label, row in results.items()}
    plot_error_vs_nfe(curves, os.path.join(args.out, "ode_accuracy.png"), f"GMM dim {args.dim}, vp_discrete",
                      dashed=lambda label: label.startswith("diffusers"))
    print(f"wrote {args.out}/ode_accuracy.md and ode_accuracy.png")


if __name__ == "__main__":
    main()
