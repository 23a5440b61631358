"""Align Your Steps on an EDM model (the paper's setting): Euler on the KLUB-searched grid vs Euler on the
registry's default Karras grid, RMS against the exact PF-ODE solution (float64, 256 fixed draws).

AYS here is ``ays.optimise_grid(..., init_spacing="karras", sweeps=1)``: one coordinate-descent sweep of
the Girsanov KL upper bound from the Karras grid of N + 1 points (the last replaced by sigma = 0), on
1024 data samples of the mixture (the paper starts from EDM's schedule and stops early; run to
convergence the bound makes Euler worse, row "converged", 10 sweeps). This protocol was chosen on the
mixtures of seeds 0 and 1 (8-d) and 0 (32-d); the table's mixtures were not looked at before it was
fixed. "AYS from <other>": the grid searched on another mixture, applied unchanged. Ratios are to the
default grid (below 1: AYS better).

    python bench/ays_edm.py [--nfes 5,10] [--out bench/ays_edm.png]
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
from samplers.ode.ddim import ddim  # noqa: E402
from train.report import plot_error_vs_nfe  # noqa: E402

EDM = schedules.edm()
MIXTURES = {"8-d s2": (8, 4, 2), "8-d s3": (8, 4, 3), "8-d s4": (8, 4, 4), "32-d s1": (32, 6, 1)}
OTHER = {"8-d s2": "8-d s3", "8-d s3": "8-d s4", "8-d s4": "8-d s2"}  # the 32-d mixture has no partner
run = jax.jit(sample, static_argnums=(0, 1))


def problem(dim: int, components: int, seed: int):
    """(mixture, its 1024 data samples, error function of a grid: Euler's RMS vs the exact PF-ODE)."""
    gmm = random_mixture(dim=dim, num_components=components, seed=seed)
    ref = Reference(gmm.denoise, np.asarray(jax.random.normal(jax.random.PRNGKey(7), (256, dim), jnp.float64)))

    def error(grid) -> float:
        a0, s0 = float(grid.alpha[0]), float(grid.sigma[0])
        return rms(run(ddim(EDM, grid), gmm.model_fn(EDM, "eps"), jnp.asarray(ref.start(a0, s0))).x,
                   ref(a0, s0, 1.0, 0.0))  # DDIM is Euler on EDM (alpha = 1)

    return gmm, np.asarray(gmm.sample(jax.random.PRNGKey(3), 1024, jnp.float64)), error


def ays_grid(gmm, x0, nfe: int, sweeps: int):
    art = ays.optimise_grid(EDM, gmm.model_fn(EDM, "eps"), x0, nfe, init_spacing="karras", sweeps=sweeps)
    return time_grid(EDM, timesteps=np.asarray(art["t"], np.float64), final="zero")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nfes", default="5,10")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".png")))
    args = ap.parse_args()
    nfes = [int(n) for n in args.nfes.split(",")]
    jax.config.update("jax_enable_x64", True)
    print(f"## AYS on EDM: Euler, KLUB-searched grid vs the default Karras grid\n\n{machine_lines()}\n", flush=True)
    probs = {name: problem(*spec) for name, spec in MIXTURES.items()}
    rows, curves = [], {}
    for nfe in nfes:
        grids = {name: ays_grid(g, x0, nfe, 1) for name, (g, x0, _) in probs.items()}
        for name, (g, x0, error) in probs.items():
            base = error(registry.plan("euler", EDM, nfe)[0])
            own, conv = error(grids[name]), error(ays_grid(g, x0, nfe, 10))
            other = error(grids[OTHER[name]]) if name in OTHER else None
            rows.append([name, nfe, base, own, own / base, other if other is None else other / base, conv / base])
            for label, value in (("default Karras", base), ("AYS, one sweep", own)):
                curves.setdefault(f"{label} ({name})", ([], []))
                curves[f"{label} ({name})"][0].append(nfe)
                curves[f"{label} ({name})"][1].append(value)
            print(f"  {name} NFE {nfe} done", flush=True)
    print(markdown_table(["mixture", "NFE", "default Karras RMS", "AYS RMS", "AYS / default",
                          "AYS from the other mixture / default", "converged (10 sweeps) / default"], rows))
    worst = max(r[4] for r in rows)
    print(f"\nworst AYS / default over the rows: {worst:.3f}")
    plot_error_vs_nfe(curves, args.out, "Euler on EDM: AYS vs Karras", dashed=lambda label: label.startswith("default"))
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
