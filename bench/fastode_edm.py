"""AYS and Gaussian teleportation on an EDM model (sigma 0.002-80, the registry's Karras defaults): RMS
against the exact PF-ODE solution (float64, 256 fixed draws), ratios to the same solver on its default grid
at the same number of model calls (below 1: better).

(1) Align Your Steps, Euler: ``ays.optimise_grid(..., init_spacing="karras", sweeps=1)``, one
coordinate-descent sweep of the Girsanov KL upper bound from the Karras grid of N + 1 points (the last
replaced by sigma = 0), on 1024 data samples of the mixture (the paper starts from EDM's schedule and stops
early; run to convergence the bound makes Euler worse: column "converged", 10 sweeps). "AYS from <other>":
the grid searched on another mixture, applied unchanged.

(2) Gaussian teleportation (``samplers.ode.teleport``): the closed-form PF-ODE of N(mean, cov) fitted to
4096 data samples carries the noise from sigma 80 to ``SIGMA_1`` = 20, then the solver runs its default
grid from there (``registry.build(..., t_start)``) with the same number of calls as the base run from 80.
Euler and DPM-Solver++(2M).

Both protocols (one sweep from Karras; sigma_1 = 20 for Euler and 2M) were chosen on exploratory mixtures
(8-d seeds 0 and 1, 32-d seed 0); the table's mixtures were not looked at before they were fixed.

    python bench/fastode_edm.py [--nfes 5,10] [--out bench/fastode_edm]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_lines, markdown_table  # noqa: E402
from models.analytic import random_mixture  # noqa: E402
from samplers import registry, schedules  # noqa: E402
from samplers.accuracy import Reference, rms  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.grids import time_grid  # noqa: E402
from samplers.ode import ays  # noqa: E402
from samplers.ode.teleport import teleport  # noqa: E402
from samplers.ode.ddim import ddim  # noqa: E402
from train.report import plot_error_vs_nfe  # noqa: E402

EDM = schedules.edm()
MIXTURES = {"8-d s2": (8, 4, 2), "8-d s3": (8, 4, 3), "8-d s4": (8, 4, 4), "32-d s1": (32, 6, 1)}
OTHER = {"8-d s2": "8-d s3", "8-d s3": "8-d s4", "8-d s4": "8-d s2"}  # the 32-d mixture has no partner
SIGMA_1 = 20.0  # teleportation's end (EDM: t = sigma)
TELEPORTED = ("euler", "dpm_solver_pp_2m")
run = jax.jit(sample, static_argnums=(0, 1))


def problem(dim: int, components: int, seed: int):
    """(mixture, its 1024 data samples, error function of a sampler: its RMS vs the exact PF-ODE from the
    noise at sigma 80)."""
    gmm = random_mixture(dim=dim, num_components=components, seed=seed)
    ref = Reference(gmm.denoise, np.asarray(jax.random.normal(jax.random.PRNGKey(7), (256, dim), jnp.float64)))
    a0, s0 = float(EDM.alpha(EDM.t_max)), float(EDM.sigma(EDM.t_max))

    def error(sampler) -> float:
        return rms(run(sampler, gmm.model_fn(EDM, "eps"), jnp.asarray(ref.start(a0, s0))).x, ref(a0, s0, 1.0, 0.0))

    return gmm, np.asarray(gmm.sample(jax.random.PRNGKey(3), 1024, jnp.float64)), error


def ays_euler(gmm, x0, nfe: int, sweeps: int):
    """Euler (DDIM: alpha = 1 on EDM) on the AYS grid of ``sweeps`` sweeps from Karras."""
    art = ays.optimise_grid(EDM, gmm.model_fn(EDM, "eps"), x0, nfe, init_spacing="karras", sweeps=sweeps)
    return ddim(EDM, time_grid(EDM, timesteps=np.asarray(art["t"], np.float64), final="zero"))


def gaussian_fit(gmm):
    """(mean, covariance) of 4096 data samples of ``gmm``: the Gaussian teleportation follows."""
    data = np.asarray(gmm.sample(jax.random.PRNGKey(4), 4096, jnp.float64))
    return data.mean(0), np.cov(data.T)


def teleported(fit, name: str, nfe: int):
    """``name`` on its default grid from SIGMA_1, started by the flow of the Gaussian ``fit`` from sigma 80."""
    return teleport(registry.build(name, EDM, nfe, t_start=SIGMA_1), EDM, *fit, EDM.t_max, SIGMA_1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nfes", default="5,10")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix("")), help="prefix of the PNG plot")
    args = ap.parse_args()
    nfes = [int(n) for n in args.nfes.split(",")]
    jax.config.update("jax_enable_x64", True)
    print(f"## AYS and Gaussian teleportation on EDM vs the default grids\n\n{machine_lines()}\n", flush=True)
    probs = {name: problem(*spec) for name, spec in MIXTURES.items()}
    fits = {name: gaussian_fit(g) for name, (g, _, _) in probs.items()}
    ays_rows, tele_rows, curves = [], [], {}

    def curve(label, nfe, value):
        curves.setdefault(label, ([], []))
        curves[label][0].append(nfe)
        curves[label][1].append(value)

    for nfe in nfes:
        grids = {name: ays_euler(g, x0, nfe, 1) for name, (g, x0, _) in probs.items()}
        for name, (g, x0, error) in probs.items():
            base = error(registry.build("euler", EDM, nfe))
            own, conv = error(grids[name]), error(ays_euler(g, x0, nfe, 10))
            other = error(grids[OTHER[name]]) / base if name in OTHER else None
            ays_rows.append([name, nfe, base, own, own / base, other, conv / base])
            curve(f"Euler, default ({name})", nfe, base)
            curve(f"Euler, AYS ({name})", nfe, own)
            for solver in TELEPORTED:
                plain, tele = error(registry.build(solver, EDM, nfe)), error(teleported(fits[name], solver, nfe))
                tele_rows.append([name, solver, nfe, plain, tele, tele / plain])
                curve(f"{solver} teleported ({name})", nfe, tele)
            print(f"  {name} NFE {nfe} done", flush=True)
    print("### (1) AYS, Euler\n")
    print(markdown_table(["mixture", "NFE", "default Karras RMS", "AYS RMS", "AYS / default",
                          "AYS from the other mixture / default", "converged (10 sweeps) / default"], ays_rows))
    print(f"\nworst AYS / default: {max(r[4] for r in ays_rows):.3f}\n")
    print(f"### (2) Gaussian teleportation to sigma {SIGMA_1:g}\n")
    print(markdown_table(["mixture", "solver", "NFE", "default RMS", "teleported RMS", "teleported / default"],
                         tele_rows))
    print(f"\nworst teleported / default: {max(r[5] for r in tele_rows):.3f}")
    plot_error_vs_nfe(curves, f"{args.out}.png", "EDM: AYS and teleportation vs the defaults",
                      dashed=lambda label: "default" in label)
    print(f"plot: {args.out}.png")


if __name__ == "__main__":
    main()
