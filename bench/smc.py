"""SMC against closed forms and against blackjax: three tables, each with a PNG plot.

(a) Reward-tilted mixture, reward and distance to the exact tilted target vs model calls. The
problem, the metrics and the search methods (best-of-N, SVDD, beam search, tree sampling,
rollover budget forcing) are bench/smc_scaling.py's (1) (``search_rows``: prior 0.9 N(-1, 0.25)
+ 0.1 N(2, 0.25), reward r = x, target p exp(2 r), DDPM "large" with 10 steps, one returned sample
per problem); added here, on the SMC engine with N particles per problem (the returned sample drawn
by the final weights; model calls per sample = N x the run's model calls per particle): the twisted
diffusion sampler (``samplers.smc.tds``, lam r as the log-likelihood) and the Feynman-Kac reward
tilt (``fk.tilt``: FK steering's difference potential on x0_hat, no extra model call).

(b) Product of two 2-D Gaussian-mixture experts p1 p2 / Z (closed form: a 4-component mixture and
its log Z), against blackjax's adaptive tempered SMC (MALA moves, ``--mcmc-steps`` per temperature,
target ESS 0.5, systematic resampling) from N(0, I) at a fixed particle count. Ours, on a DDPM of
expert 1 ("large"): the Feynman-Kac product-of-experts corrector (``fk.product_of_experts``, expert
2's eps model, resampling at every step) on 50, 100 and 200 log-SNR steps (all reported), and the
engine with the TDS potential (20 steps, the likelihood p2's exact log-density, differentiated).
Cost = gradient evaluations per run (blackjax: one grad of log p1 p2 per MALA step and particle,
counted from its tempering steps; FK: one score of each expert, i.e. one grad of log p1 p2, per step
and particle; TDS: its model calls per particle); each of ours gets the particle count with no more
gradient evaluations than blackjax's mean. Blackjax's MALA also evaluates log p1 p2 itself (an exact
density our score-only FK corrector does not use). Metrics over ``--repeats`` independent runs: log-Z
RMSE against the exact log Z (FK targets the experts' product at the grid's last level, sigma = 0.01,
whose log Z differs by < 1e-3), and the sliced W2 of the (weight-resampled) particles to exact
product samples (mean and worst run). Ours with exact weights (``samplers.smc.path``): SMC along the
path p_{1,t} p_{2,t} of the experts' exact noised log-densities (VP linear, ``PathKnobs.levels`` levels
from t = 1 to t = 0 uniform in alpha(t), ``path_times``; at t = 0 the path is p1 p2 itself, so its
log Z is exact), reference N(0, I / 2) (the product of two N(0, I) experts at t = 1), ``moves``
MALA moves a level with the fixed step size ``step`` (``accept``: None, or the acceptance it adapts
to), ``final_moves`` MALA moves on p1 p2 after a final resampling (none if 0), and ``final_resample``
(the last level resamples before its own moves); cost = every call of log p_{1,t} p_{2,t} with its
gradient, per particle (``Sampler.nfe``: the level's first call, which also gives the incremental
weight, one per MALA move; the one density-only call at init counted as one too). Three rows:
``PATH_FIRST``, whose knobs (levels, moves, step rule, grid, reference) were fixed on two other products
of 2-D mixtures (tests/test_smc_fk.py's E1 E2 and a random pair, ``random_mixture`` seeds 11 and 12) at
the same budget by log-Z RMSE, before this table was run with them; ``PATH_SECOND``, a second attempt
made after that table was seen, its levels, moves and final moves chosen on the same two other problems
by ``selection_rows`` (``--tables s --selection second``: the max over the problems of the larger of its
log-Z RMSE and mean sliced W2 ratios to blackjax's); and ``PATH``, a third attempt made after the second's
table was seen, chosen by the same criterion on the same problems over ``SELECTION_GRIDS["third"]`` (MALA
step 0.3 or 0.5, the last level resampling or not). Bootstrap SEs (over the runs) of the log-Z RMSE and
of the mean sliced W2 are printed beside them.

(c) Cost at 1,024 and 16,384 particles with an MLP model (``models.mlp.MLP``, hidden 256, depth
3, d = 16, random weights): wall time of a jitted run of the SMC sampler divided by the base
sampler's (DDPM, 20 steps), both timed in alternation (``time_paired``): the engine with the
plain proposal (``base_potential``: weights, ESS, resampling at threshold 1, i.e. every step; goal
<= 1.05) and TDS (a forward and backward twist evaluation a step: expected about 3 x).

    python bench/smc.py [--quick] [--tables abc] [--out bench/smc] [--repeats N --seed K (table (b)'s runs)]
    python bench/smc.py --tables s [--selection third|second]     (path SMC's knob selection)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_lines, markdown_table, time_paired  # noqa: E402
from bench.smc_scaling import LAM, PRIOR, REWARD, search_axes, search_rows, tilted  # noqa: E402
from models.analytic import GaussianMixture  # noqa: E402
from models.metrics import sliced_wasserstein  # noqa: E402
from models.mlp import MLP, init_mlp, mlp_model_fn  # noqa: E402
from samplers import schedules  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.grids import time_grid  # noqa: E402
from samplers.mcmc import mala  # noqa: E402
from samplers.sde.ancestral import ddpm  # noqa: E402
from samplers.smc import engine, fk, path, resampling, tds  # noqa: E402

# (b) the experts and their exact product
E1 = GaussianMixture([0.5, 0.5], [[-1.5, 0.0], [1.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])
E2 = GaussianMixture([0.6, 0.4], [[0.0, -1.0], [1.0, 1.5]], [[0.8, 0.4], [0.6, 0.6]])


def product(p: GaussianMixture, q: GaussianMixture) -> tuple[GaussianMixture, float]:
    """p q / Z as a mixture (REFERENCES.md: a Gaussian product per pair of components, weight
    w_i w_j N(m_i; m_j, S_i + S_j)) and log Z."""
    logw, means, covs = [], [], []
    for wi, mi, si in zip(p.weights, p.means, p.covs):
        for wj, mj, sj in zip(q.weights, q.means, q.covs):
            s = si + sj
            r = mi - mj
            logw.append(np.log(wi * wj) - 0.5 * (r @ np.linalg.solve(s, r) + np.linalg.slogdet(2 * np.pi * s)[1]))
            prec = np.linalg.inv(si) + np.linalg.inv(sj)
            cov = np.linalg.inv(prec)
            means.append(cov @ (np.linalg.solve(si, mi) + np.linalg.solve(sj, mj)))
            covs.append((cov + cov.T) / 2)
    logw = np.array(logw)
    return GaussianMixture(np.exp(logw - logw.max()), np.array(means), np.array(covs)), float(np.logaddexp.reduce(logw))


def draw_by_weight(key, st):
    """One particle of each SMC state drawn with probability softmax(log_w)."""
    return st.x[jax.random.categorical(key, st.log_w)]


# -- (a) ----------------------------------------------------------------------------------------------

def engine_rows(name: str, potential, problems: int, seeds: int, particles=(2, 4, 8, 16, 32)):
    """Rows of one of our SMC methods on the engine (``potential(base, schedule)``, lam r as the
    log-tilt): N particles per problem, the returned sample drawn by the final weights, model calls
    per sample = N x the run's model calls per particle."""
    vp = schedules.vp_linear()
    base = ddpm(vp, time_grid(vp, 10, "uniform"), variance="large")
    model = PRIOR.model_fn(vp, "eps")
    exact = tilted(PRIOR, LAM).sample(jax.random.PRNGKey(123), 8192)
    s = engine.smc(base, potential(base, vp))

    def one(x, k):
        k1, k2 = jax.random.split(k)
        st = sample(s, model, x, k1)
        return draw_by_weight(k2, st), st.nfe

    run = jax.jit(jax.vmap(one))
    rows, curve = [], []
    for n in particles:
        res, calls = [], []
        for seed in range(seeds):
            k = jax.random.fold_in(jax.random.PRNGKey(0), seed)
            xs, nfe = run(jax.random.normal(k, (problems, n, 1)), jax.random.split(k, problems))
            xs = np.asarray(xs, np.float64)
            res.append((xs[:, 0].mean(), xs[:, 0].min(),
                        float(sliced_wasserstein(jnp.asarray(xs, jnp.float32), exact, jax.random.PRNGKey(7), 1))))
            calls.append(float(n * np.mean(nfe)))
        res, c = np.array(res), float(np.mean(calls))
        rows.append([name, f"N = {n}", c, res[:, 0].mean(), res[:, 1].min(), res[:, 2].mean(), res[:, 2].max()])
        curve.append((c, res[:, 0].mean(), res[:, 2].mean()))
    return rows, curve


ENGINE_METHODS = {  # (a)'s SMC rows: name -> potential(base, schedule) for the target p exp(lam r)
    "TDS (twisted SMC)": lambda base, vp: tds.tds(base, vp, lambda x: LAM * REWARD(x)),
    "FK steering (fk.tilt)": lambda base, vp: fk.tilt(base, vp, lambda x: LAM * REWARD(x)),
}


def plot_search(curves, target_mean, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    search_axes(ax, curves, target_mean, bold=set(ENGINE_METHODS))
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- (b) ----------------------------------------------------------------------------------------------

def blackjax_run(n: int, mcmc_steps: int, step_size: float, experts=(E1, E2)):
    """jit(vmap over keys) of blackjax's adaptive tempered SMC to p1 p2 (``experts``) from N(0, I):
    -> (particles resampled by the final weights, log Z-hat, gradient evaluations)."""
    import blackjax
    from blackjax.smc import resampling as bres

    log_prior = lambda x: jnp.sum(jax.scipy.stats.norm.logpdf(x))
    log_lik = lambda x: sum(e.log_prob(x[None])[0] for e in experts) - log_prior(x)
    alg = blackjax.adaptive_tempered_smc(log_prior, log_lik, blackjax.mala.build_kernel(), blackjax.mala.init,
                                         dict(step_size=jnp.array([step_size])), bres.systematic, 0.5,
                                         num_mcmc_steps=mcmc_steps)

    def one(key):
        k0, k1, k2 = jax.random.split(key, 3)
        st = alg.init(jax.random.normal(k0, (n, 2)))

        def body(c):
            st, lz, k, it = c
            k, kk = jax.random.split(k)
            st, info = alg.step(kk, st)
            return st, lz + info.log_likelihood_increment, k, it + 1

        st, lz, _, it = jax.lax.while_loop(lambda c: c[0].tempering_param < 1, body,
                                           (st, jnp.zeros(()), k1, jnp.zeros((), jnp.int32)))
        idx = bres.systematic(k2, st.weights, n)
        return st.particles[idx], lz, it * mcmc_steps * n

    return jax.jit(jax.vmap(one))


FK_STEPS = (50, 100, 200)  # the FK corrector's grids, all reported (none chosen by its error)


class PathKnobs(NamedTuple):
    """Path SMC's knobs (``path_times`` levels, MALA moves a level, fixed MALA step or None,
    acceptance it adapts to or None, final moves after the last level, and whether the last level
    resamples before its moves (always when there are final moves))."""
    levels: int
    moves: int
    step: float
    accept: float | None
    final_moves: int
    final_resample: bool = False


# path SMC's knobs, fixed on other problems before table (b) was run with them (module docstring): the
# first attempt's (chosen by log-Z RMSE), the second attempt's (made after the first attempt's table (b)
# was seen; chosen on the same other problems by the joint criterion of selection_rows) and the third's
# (made after the second's table (b) was seen; same problems and criterion, SELECTION_GRIDS["third"])
PATH_FIRST = PathKnobs(levels=10, moves=1, step=0.3, accept=None, final_moves=0)
PATH_SECOND = PathKnobs(levels=5, moves=3, step=0.3, accept=None, final_moves=0)
PATH = PathKnobs(levels=5, moves=1, step=0.5, accept=None, final_moves=0, final_resample=True)


def path_times(schedule, levels: int) -> np.ndarray:
    """``levels`` + 1 model times from t = 1 to t = 0 uniform in the schedule's alpha(t)."""
    fine = np.linspace(0.0, 1.0, 20001)
    alpha = schedule.alpha(fine)  # increasing as t falls
    return np.interp(np.linspace(alpha[-1], 1.0, levels + 1), alpha[::-1], fine[::-1])


def ours_run(n: int, method: str, steps, experts=(E1, E2)):
    """jit(vmap over keys) of one of our SMC runs to p1 p2 from N(0, I) on a DDPM of expert 1 ("large"):
    ``method`` "tds" (20 uniform steps, the likelihood p2's exact log-density differentiated) or "fk"
    (``fk.product_of_experts`` with expert 2's eps model, log-SNR grid, resampling at every step),
    or "path" (``path.path_smc`` on log p_{1,t} + log p_{2,t} with the ``PathKnobs`` ``steps``, no DDPM;
    the only method run on other ``experts``)
    -> (particles resampled by the final weights, log Z-hat, gradient evaluations); and the
    gradient evaluations per particle and run (tds: its model calls, the twist's backward pass
    included; fk: one evaluation of both experts' scores, i.e. of grad log p1 p2, per step; path: its
    calls of log p_{1,t} p_{2,t} with its gradient, the one density-only call at init included)."""
    vp = schedules.vp_linear()
    model = E1.model_fn(vp, "eps")
    if method == "path":
        s = path.path_smc(path_times(vp, steps.levels), mala(steps.step, steps.moves), reference_std=np.sqrt(0.5),
                          target_accept=steps.accept, final_resample=steps.final_resample or steps.final_moves > 0,
                          final_moves=steps.final_moves)
        model = path.product_log_density(*(e.log_prob_fn(vp) for e in experts))
        per_particle = s.nfe
    elif method == "tds":
        base = ddpm(vp, time_grid(vp, steps, "uniform"), variance="large")
        s = engine.smc(base, tds.tds(base, vp, E2.log_prob))
        per_particle = s.nfe
    else:
        grid = time_grid(vp, steps, "logsnr")
        base = ddpm(vp, grid, variance="large")
        s = engine.smc(base, fk.product_of_experts(base, vp, grid, (1.0, 1.0), (E2.model_fn(vp, "eps"),)),
                       ess_threshold=1.0)
        per_particle = steps

    def one(key):
        k0, k1, k2 = jax.random.split(key, 3)
        st = sample(s, model, jax.random.normal(k0, (n, 2)), k1)
        return st.x[resampling.systematic(k2, jax.nn.softmax(st.log_w), n)], st.log_z, per_particle * n

    return jax.jit(jax.vmap(one)), per_particle


def blackjax_rows(repeats: int, particles: int, mcmc_steps: int, step_size: float = 0.5, seed: int = 5):
    target, log_z = product(E1, E2)
    exact = target.sample(jax.random.PRNGKey(99), 8192)
    keys = jax.random.split(jax.random.PRNGKey(seed), repeats)
    runs = [("blackjax adaptive tempered SMC (MALA)", particles, *blackjax_run(particles, mcmc_steps, step_size)(keys))]
    grads = float(np.mean(runs[0][4]))
    for name, method, steps in ([(path_name(PATH, "third attempt"), "path", PATH),
                                 (path_name(PATH_SECOND, "second attempt"), "path", PATH_SECOND),
                                 (path_name(PATH_FIRST, "first attempt"), "path", PATH_FIRST),
                                 ("ours: engine + TDS (20-step DDPM of p1, likelihood p2)", "tds", 20)] +
                                [(f"ours: FK product of experts ({k} DDPM steps)", "fk", k) for k in FK_STEPS]):
        n = max(int(grads // ours_run(1, method, steps)[1]), 1)
        runs.append((name, n, *ours_run(n, method, steps)[0](keys)))
    rows, pts = [], {}
    for name, n, xs, lz, g in runs:
        rmse, rmse_se, bias, sw = run_metrics(xs, lz, log_z, exact)
        rows.append([name, n, float(np.mean(g)), rmse, rmse_se, bias, sw.mean(), bootstrap_se(sw, np.mean), sw.max()])
        pts[name] = (float(np.mean(g)), rmse, sw.mean())
    return rows, pts, log_z


# the path SMC knob grids of the second and third attempts, each fixed before its selection run
SELECTION_GRIDS = {
    "second": [PathKnobs(levels, moves, 0.3, None, final) for levels in (5, 10, 20) for moves in (1, 3)
               for final in (0, 10, 30)],
    "third": [PathKnobs(levels, moves, step, None, 0, last) for levels in (5, 10) for moves in (1, 3)
              for step in (0.3, 0.5) for last in (False, True)],
}


def selection_rows(grid: str, repeats: int = 64, mcmc_steps: int = 10, step_size: float = 0.5):
    """The second and third attempts' selection of path SMC's knobs on two other products of 2-D mixtures
    (never table (b)'s): tests/test_smc_fk.py's E1 E2 and ``random_mixture(2, 2, seed=11/12, spread=1.5, scale=0.7)``.
    On each, blackjax (as in table (b)) and every ``SELECTION_GRIDS[grid]`` config at blackjax's mean gradient
    evaluations per run, ``repeats`` runs; the score of a config is the max over the problems of
    max(log-Z RMSE / blackjax's, mean sliced W2 / blackjax's), the chosen config the lowest score.
    -> (rows: config, then per problem the two ratios, then the score; blackjax's metrics per problem)."""
    from models.analytic import random_mixture
    from tests.test_smc_fk import E1 as F1, E2 as F2

    problems = {"E1 E2": (F1, F2), "random pair": tuple(random_mixture(2, 2, seed=s, spread=1.5, scale=0.7)
                                                        for s in (11, 12))}
    keys = jax.random.split(jax.random.PRNGKey(5), repeats)
    ratios, ref = {}, {}
    for pname, experts in problems.items():
        target, log_z = product(*experts)
        exact = target.sample(jax.random.PRNGKey(99), 8192)
        xs, lz, g = blackjax_run(1024, mcmc_steps, step_size, experts)(keys)
        rmse, _, _, sw = run_metrics(xs, lz, log_z, exact)
        ref[pname] = (float(np.mean(g)), rmse, sw.mean())
        for knobs in SELECTION_GRIDS[grid]:
            n = max(int(ref[pname][0] // ours_run(1, "path", knobs, experts)[1]), 1)
            r, _, _, s = run_metrics(*ours_run(n, "path", knobs, experts)[0](keys)[:2], log_z, exact)
            ratios.setdefault(knobs, []).extend([r / rmse, s.mean() / sw.mean()])
    rows = [[knobs_label(k), *r, max(r)] for k, r in ratios.items()]
    return rows, ref


def knobs_label(k: PathKnobs) -> str:
    return f"{k.levels} x {k.moves} + {k.final_moves}, step {k.step}" + (", last level resamples" if k.final_resample
                                                                       else "")


def path_name(knobs: PathKnobs, attempt: str) -> str:
    step = knobs.step if knobs.accept is None else f"adapted to acceptance {knobs.accept}"
    final = f", {knobs.final_moves} final moves" if knobs.final_moves else ""
    final += ", last level resamples" if knobs.final_resample and not knobs.final_moves else ""
    return (f"ours: path SMC, exact weights ({knobs.levels} levels, {knobs.moves} MALA moves, step {step}{final}; "
            f"{attempt})")


def bootstrap_se(values, statistic, draws: int = 2000) -> float:
    """Standard error of ``statistic(values)`` by the bootstrap over the runs (fixed seed)."""
    rng = np.random.default_rng(0)
    values = np.asarray(values)
    return float(np.std([statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(draws)]))


def run_metrics(xs, lz, log_z: float, exact):
    """Over runs: (log-Z RMSE, its bootstrap SE, log-Z bias, sliced W2 of each run's particles to
    ``exact`` (R,))."""
    err = np.asarray(lz, np.float64) - log_z
    sw = np.array([float(sliced_wasserstein(x, exact, jax.random.PRNGKey(3), 128)) for x in xs])
    rmse = lambda e: float(np.sqrt(np.mean(e**2)))
    return rmse(err), bootstrap_se(err, rmse), float(np.mean(err)), sw


def plot_blackjax(pts, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    names = list(pts)
    for i, (label, title) in enumerate((("log-Z RMSE", "log-Z error"), ("sliced W2 to the exact product", "distance"))):
        ax[i].barh(range(len(names)), [pts[n][1 + i] for n in names],
                   color=["tab:gray"] + ["tab:blue"] * (len(names) - 1))
        ax[i].set_yticks(range(len(names)), [n.replace("ours: ", "") for n in names], fontsize=7)
        ax[i].set_xscale("log")
        ax[i].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax[i].set(xlabel=label, title=title)
        ax[i].grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle("product of two mixture experts, equal gradient evaluations per run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- (c) ----------------------------------------------------------------------------------------------

def cost_rows(particles=(1024, 16384), dim: int = 16, steps: int = 20, repeats: int = 10):
    vp = schedules.vp_linear()
    base = ddpm(vp, time_grid(vp, steps, "uniform"))
    module = MLP(hidden=256, depth=3)
    model = mlp_model_fn(module, init_mlp(module, jax.random.PRNGKey(0), dim))
    reward = lambda x: -jnp.sum(x**2, -1)
    samplers = {"base DDPM": base,
                "SMC, plain proposal (resample every step)": engine.smc(base, engine.base_potential(),
                                                                         ess_threshold=1.0),
                "SMC + TDS twist": engine.smc(base, tds.tds(base, vp, reward))}
    rows = []
    for n in particles:
        x = jax.random.normal(jax.random.PRNGKey(1), (n, dim))
        key = jax.random.PRNGKey(2)
        fns = [jax.jit(lambda x, k, s=s: sample(s, model, x, k).x) for s in samplers.values()]
        times = time_paired([lambda f=f: f(x, key) for f in fns], repeats=repeats, warmup=1)
        for name, t in zip(samplers, times):
            rows.append([name, n, 1e3 * t / steps, t / times[0]])
    return rows


def plot_cost(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    names = list(dict.fromkeys(r[0] for r in rows))
    ns = sorted({r[1] for r in rows})
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        ratios = [next(r[3] for r in rows if r[0] == name and r[1] == n) for n in ns]
        ax.bar(np.arange(len(ns)) + j * width, ratios, width, label=name)
    ax.axhline(1.05, color="k", ls=":", label="goal 1.05 (plain SMC)")
    ax.set_xticks(np.arange(len(ns)) + width, [f"N = {n}" for n in ns])
    ax.set(ylabel="time / base sampler's time", title="SMC step cost, MLP model")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_a(out, problems, seeds):
    rows, curves, target_mean = search_rows(problems, seeds)
    for name, potential in ENGINE_METHODS.items():
        erows, curves[name] = engine_rows(name, potential, problems, seeds)
        rows += erows
    print(f"\n### (a) Reward-tilted mixture: {problems} problems x {seeds} seeds; tilted target p exp({LAM} x), "
          f"its mean reward {target_mean:.3f}\n")
    print(markdown_table(["method", "knob", "model calls / sample", "mean reward", "worst reward",
                          "W2 to tilted (mean)", "W2 (worst seed)"], rows))
    plot_search(curves, target_mean, f"{out}_search.png")
    print(f"\nplot: {out}_search.png")


def table_b(out, repeats, particles_bj, mcmc_steps, seed):
    brows, pts, log_z = blackjax_rows(repeats, particles_bj, mcmc_steps, seed=seed)
    print(f"\n### (b) Product of two mixture experts vs blackjax adaptive tempered SMC: {repeats} runs (key seed "
          f"{seed}), exact "
          f"log Z = {log_z:.4f}; blackjax {particles_bj} particles, {mcmc_steps} MALA steps per temperature\n")
    print(markdown_table(["method", "particles", "gradient evals / run", "log-Z RMSE", "(bootstrap SE)", "log-Z bias",
                          "sliced W2 (mean)", "(bootstrap SE)", "sliced W2 (worst run)"], brows))
    plot_blackjax(pts, f"{out}_blackjax.png")
    print(f"\nplot: {out}_blackjax.png")


def table_selection(grid: str):
    rows, ref = selection_rows(grid)
    print(f"\n### Path SMC knob selection, {grid} attempt's grid (other problems, 64 runs): ratios to blackjax, "
          "score = max ratio\n")
    print("blackjax (gradient evals / run, log-Z RMSE, mean sliced W2): " +
          "; ".join(f"{p}: {g:.4g}, {r:.4f}, {w:.4f}" for p, (g, r, w) in ref.items()) + "\n")
    print(markdown_table(["levels x moves + final moves, step", "E1 E2: log-Z RMSE ratio", "E1 E2: W2 ratio",
                          "random pair: log-Z RMSE ratio", "random pair: W2 ratio", "score"],
                         sorted(rows, key=lambda r: r[-1])))


def table_c(out, quick):
    crows = cost_rows(repeats=5 if quick else 10)
    print("\n### (c) Cost: SMC run / base DDPM run (20 steps), MLP (hidden 256, depth 3, d = 16)\n")
    print(markdown_table(["sampler", "particles", "ms / step", "time / base time"], crows))
    plot_cost(crows, f"{out}_cost.png")
    print(f"\nplot: {out}_cost.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer problems, seeds and repeats (a few minutes)")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix("")), help="prefix of the PNG plots")
    ap.add_argument("--tables", default="abc", help="which tables to run, e.g. 'b' (default all: abc; 's': path "
                    "SMC's knob selection on other problems, not in the default)")
    ap.add_argument("--selection", default="third", choices=sorted(SELECTION_GRIDS),
                    help="the attempt whose knob grid --tables s runs")
    ap.add_argument("--repeats", type=int, default=0, help="table (b)'s runs (0: 100, --quick 32)")
    ap.add_argument("--seed", type=int, default=5, help="table (b)'s key seed (the runs' keys split from it)")
    args = ap.parse_args()
    if not args.tables or set(args.tables) - set("abcs"):
        ap.error(f"--tables must be letters among a, b, c, s, got {args.tables!r}")
    problems, seeds, repeats = (128, 1, 32) if args.quick else (512, 3, 100)

    print("## SMC: closed-form targets, blackjax, cost\n")
    print(machine_lines())
    if "a" in args.tables:
        table_a(args.out, problems, seeds)
    if "b" in args.tables:
        table_b(args.out, args.repeats or repeats, particles_bj=1024, mcmc_steps=10, seed=args.seed)
    if "c" in args.tables:
        table_c(args.out, args.quick)
    if "s" in args.tables:
        table_selection(args.selection)


if __name__ == "__main__":
    main()
