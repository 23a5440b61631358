"""Inference-time scaling against closed forms: reward and distance to the exact target vs model calls.

(1) Reward-tilted mixture. Prior p = 0.9 N(-1, 0.25) + 0.1 N(2, 0.25) in 1-D (the reward
r(x) = x prefers the small component), exact eps model under vp_linear (flow schedule for the
flow methods), base kernel DDPM ("large" variance) with 10 steps (the flow SDE, g(t) = t, 10
steps from t = 0.99, for rollover budget forcing). Target: the tilted p exp(lam r), lam = 2, a
mixture in closed form (REFERENCES.md). Methods: best-of-N, SVDD (alpha = 1/lam), block-wise
beam search (K = 4 beams, blocks of 2 steps, the best beam returned), diffusion tree sampling
(width 2, lam = 2, sample mode) and rollover budget forcing. Metrics per returned sample:
model calls, mean reward, worst (lowest) reward, W2 to exact tilted samples (1-D sliced W2 =
W2), each over ``--problems`` independent problems; the mean over ``--seeds`` seeds is shown
with the worst seed's W2 beside it.

(2) Linear inverse problem (MCGdiff's benchmark shape): prior with 25 unit-covariance
components at (8i, 8j) tiled over d = 6 dimensions, i, j in {-2..2}, weights from squared
normals; A (2 x 6) random with sorted U(0, 1) singular values; noise 0.5; y from a prior draw.
Exact posterior: a mixture (``inverse.mixture_posterior``). DPS (zeta fixed by the sweep
printed first) and the SVD-basis SMC, both on DDPM with 100 steps: a run producing N
posterior samples costs N x 100 model calls for either (DPS: N independent chains, SMC: N
particles). Metric: sliced W2 to 8192 exact posterior samples, beside the floor of N exact
samples; mean and worst over seeds.

    python bench/smc_scaling.py [--problems 512] [--seeds 3] [--out bench/smc_scaling.png]
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
from models.analytic import GaussianMixture  # noqa: E402
from models.metrics import sliced_wasserstein  # noqa: E402
from samplers import schedules  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.grids import time_grid  # noqa: E402
from samplers.sde.ancestral import ddpm  # noqa: E402
from samplers.smc import inverse, search  # noqa: E402
from samplers.smc.flow_sde import flow_sde, rollover_budget_forcing  # noqa: E402

LAM = 2.0
PRIOR = GaussianMixture([0.9, 0.1], [[-1.0], [2.0]], [[0.25], [0.25]])
REWARD = lambda x: x[:, 0]  # noqa: E731


def tilted(prior: GaussianMixture, lam: float) -> GaussianMixture:
    """p exp(lam a.x) with a = e_1: each component shifted by lam S a, weight x exp(lam a.m + lam^2 a.S.a / 2)."""
    shift = lam * prior.covs[:, :, 0]
    logw = np.log(prior.weights) + lam * prior.means[:, 0] + 0.5 * lam**2 * prior.covs[:, 0, 0]
    return GaussianMixture(np.exp(logw - logw.max()), prior.means + shift, prior.covs)


def search_rows(problems: int, seeds: int):
    vp, fl = schedules.vp_linear(), schedules.flow()
    base = ddpm(vp, time_grid(vp, 10, "uniform"), variance="large")
    fbase = flow_sde(fl, time_grid(fl, 10, "uniform", t_start=0.99), lambda t: t)
    model, fmodel = PRIOR.model_fn(vp, "eps"), PRIOR.model_fn(fl, "velocity")
    exact = tilted(PRIOR, LAM).sample(jax.random.PRNGKey(123), 8192)

    def bon(n):
        run = jax.jit(jax.vmap(lambda x, k: search.best_of_n(base, model, REWARD, x, k)[0]))
        return lambda x, k: (run(jax.random.normal(k, (x.shape[0], n, 1)), jax.random.split(k, x.shape[0])),
                             n * base.nfe)

    def svdd(m):
        s = search.svdd(base, vp, REWARD, m, alpha=1.0 / LAM)
        run = jax.jit(lambda x, k: sample(s, model, x, k).x)
        return lambda x, k: (run(x, k), s.nfe)

    def beam(el):
        s = search.beam_search(base, vp, REWARD, el, block=2)
        run = jax.jit(jax.vmap(lambda x, k: sample(s, model, x, k).x[0]))
        return lambda x, k: (run(jax.random.normal(k, (x.shape[0], 4, 1)), jax.random.split(k, x.shape[0])),
                             4 * s.nfe)  # K = 4 beams

    def rollover(budget):
        s = rollover_budget_forcing(fbase, fl, REWARD, budget)
        run = jax.jit(lambda x, k: sample(s, fmodel, x, k))

        def go(x, k):
            st = run(x, k)
            return st.x, float(np.mean(st.nfe))  # measured: at most 1 + budget

        return go

    methods = [("base DDPM (10 steps)", "-", [(None, bon(1))])]
    methods += [("best-of-N", "N", [(n, bon(n)) for n in (2, 4, 8, 16, 32)])]
    methods += [("SVDD (alpha = 1/lam)", "M", [(m, svdd(m)) for m in (2, 4, 8, 16)])]
    methods += [("beam search (K = 4, block 2)", "L", [(el, beam(el)) for el in (1, 2, 4, 8)])]
    methods += [("rollover budget forcing (flow SDE)", "budget", [(b, rollover(b)) for b in (10, 20, 40, 80, 160)])]

    tree_budgets = (1, 4, 16, 64)
    tree = search.tree_search(base, REWARD, max(tree_budgets), width=2, lam=LAM, mode="sample")
    tree_run = jax.jit(lambda x, k: sample(tree, model, x, k, trajectory=lambda s: (s.x, jnp.mean(s.nfe))))

    rows, curves = [], {}
    key = jax.random.PRNGKey(0)

    def metrics(xs):
        xs = np.asarray(xs, np.float64)[:, :1]
        return xs[:, 0].mean(), xs[:, 0].min(), float(sliced_wasserstein(jnp.asarray(xs, jnp.float32), exact,
                                                                          jax.random.PRNGKey(7), 1))

    for name, knob, configs in methods:
        for value, fn in configs:
            res, spent = [], []
            for s in range(seeds):
                k = jax.random.fold_in(key, s)
                xs, calls = fn(jax.random.normal(k, (problems, 1)), k)
                res.append(metrics(xs))
                spent.append(calls)
            res, calls = np.array(res), float(np.mean(spent))
            rows.append([name, f"{knob} = {value}" if value is not None else "-", calls, res[:, 0].mean(),
                         res[:, 1].min(), res[:, 2].mean(), res[:, 2].max()])
            curves.setdefault(name, []).append((calls, res[:, 0].mean(), res[:, 2].mean()))
    res = {b: [] for b in tree_budgets}
    calls = {b: [] for b in tree_budgets}
    for s in range(seeds):
        k = jax.random.fold_in(key, s)
        _, (xs, nfe) = tree_run(jax.random.normal(k, (problems, 1)), k)
        for b in tree_budgets:
            res[b].append(metrics(xs[b - 1]))
            calls[b].append(float(nfe[b - 1]))
    for b in tree_budgets:
        r = np.array(res[b])
        c = float(np.mean(calls[b]))
        rows.append(["tree sampling (width 2, lam = 2)", f"expansions = {b}", c, r[:, 0].mean(), r[:, 1].min(),
                     r[:, 2].mean(), r[:, 2].max()])
        curves.setdefault("tree sampling", []).append((c, r[:, 0].mean(), r[:, 2].mean()))
    target_mean = float(tilted(PRIOR, LAM).mean[0])
    return rows, curves, target_mean


def inverse_problem(seed: int = 0, d: int = 6, m: int = 2, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    grid = np.array([(8.0 * i, 8.0 * j) for i in range(-2, 3) for j in range(-2, 3)])
    means = np.tile(grid, (1, d // 2))
    weights = rng.standard_normal(25) ** 2
    prior = GaussianMixture(weights, means, np.ones((25, d)))
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    A = u @ np.diag(np.sort(rng.uniform(0, 1, m))[::-1]) @ v[:m]
    x = np.asarray(prior.sample(jax.random.PRNGKey(seed), 1), np.float64)[0]
    y = A @ x + noise * rng.standard_normal(m)
    return prior, A, y, noise


def inverse_rows(seeds: int):
    vp = schedules.vp_linear()
    prior, A, y, noise = inverse_problem()
    post = inverse.mixture_posterior(prior, A, y, noise)
    exact = post.sample(jax.random.PRNGKey(99), 8192)
    grid = time_grid(vp, 100, "uniform")
    base = ddpm(vp, grid, variance="large")
    model = prior.model_fn(vp, "eps")
    sw = lambda a: float(sliced_wasserstein(a, exact, jax.random.PRNGKey(3), 256))  # noqa: E731
    d = prior.dim

    def dps_run(zeta):
        s = inverse.dps(base, vp, A, y, noise, zeta)
        return jax.jit(lambda x, k: sample(s, model, x, k).x)

    smc = inverse.svd_smc(base, grid, A, y, noise)
    smc_run = jax.jit(lambda x, k: sample(smc, model, x, k).x)
    sweep = []
    for zeta in (0.1, 0.3, 1.0, 3.0):
        run = dps_run(zeta)
        sweep.append([zeta, np.mean([sw(run(jax.random.normal(jax.random.PRNGKey(s), (2048, d)),
                                            jax.random.PRNGKey(100 + s))) for s in range(seeds)])])
    zeta = min(sweep, key=lambda r: r[1])[0]
    dps = dps_run(zeta)
    rows, curves = [], {}
    for n in (64, 256, 1024, 4096):
        out = {"DPS": [], "SVD-basis SMC": [], "exact samples (floor)": []}
        for s in range(seeds):
            x = jax.random.normal(jax.random.PRNGKey(1000 + s), (n, d))
            k = jax.random.PRNGKey(2000 + s)
            out["DPS"].append(sw(dps(x, k)))
            out["SVD-basis SMC"].append(sw(smc_run(x, k)))
            out["exact samples (floor)"].append(sw(post.sample(jax.random.PRNGKey(3000 + s), n)))
        for name, vals in out.items():
            calls = 0 if name.startswith("exact") else n * grid.num_steps
            rows.append([name, n, calls, float(np.mean(vals)), float(np.max(vals))])
            curves.setdefault(name, []).append((n, float(np.mean(vals))))
    return sweep, zeta, rows, curves


def search_axes(ax, curves, target_mean, bold=()):
    """Mean reward (ax[0]) and W2 to the tilted target (ax[1]) vs model calls per sample, one line per
    method of ``curves`` (name -> [(calls, reward, W2)]), the names in ``bold`` drawn thicker."""
    for name, pts in curves.items():
        c, r, w = np.array(pts).T
        lw = 2.2 if name in bold else 1.0
        ax[0].semilogx(c, r, marker="o", ms=3, lw=lw, label=name)
        ax[1].loglog(c, w, marker="o", ms=3, lw=lw, label=name)
    ax[0].axhline(target_mean, color="k", ls=":", label="tilted target's mean")
    ax[0].set(xlabel="model calls per sample", ylabel="mean reward", title="reward-tilted mixture")
    ax[1].set(xlabel="model calls per sample", ylabel="W2 to the exact tilted target", title="distance to p exp(2 r)")


def plot(search_curves, inv_curves, target_mean, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    search_axes(ax, search_curves, target_mean)
    for name, pts in inv_curves.items():
        n, w = np.array(pts).T
        ax[2].loglog(n, w, marker="o", ms=3, ls=":" if name.startswith("exact") else "-", label=name)
    ax[2].set(xlabel="posterior samples N (model calls = 100 N)", ylabel="sliced W2 to the exact posterior",
              title="linear inverse problem (d = 6, 25-component prior)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=512)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".png")))
    args = ap.parse_args()

    print("## Inference-time scaling vs model calls (closed-form targets)\n")
    print(machine_lines())
    rows, curves, target_mean = search_rows(args.problems, args.seeds)
    print(f"\n### (1) Reward-tilted mixture: {args.problems} problems x {args.seeds} seeds; tilted target "
          f"p exp({LAM} x), its mean reward {target_mean:.3f}\n")
    print(markdown_table(["method", "knob", "model calls / sample", "mean reward", "worst reward",
                          "W2 to tilted (mean)", "W2 (worst seed)"], rows))
    sweep, zeta, inv, inv_curves = inverse_rows(args.seeds)
    print("\n### (2) Linear inverse problem: DPS step-size sweep (N = 2048, sliced W2; the best is used below)\n")
    print(markdown_table(["zeta", "sliced W2 to exact posterior"], sweep))
    print(f"\nDPS zeta = {zeta}; both methods on DDPM with 100 steps.\n")
    print(markdown_table(["method", "samples N", "model calls", "sliced W2 (mean)", "sliced W2 (worst seed)"], inv))
    plot(curves, inv_curves, target_mean, args.out)
    print(f"\nplot: {args.out}")


if __name__ == "__main__":
    main()
