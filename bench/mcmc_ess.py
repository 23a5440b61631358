"""Effective samples per gradient evaluation and per second: our MALA and HMC vs blackjax's.

Targets: a correlated Gaussian in d = 100 (random rotation, covariance eigenvalues
log-uniform in [0.1, 1]), Neal's funnel (v ~ N(0, 3^2), x_1..9 | v ~ N(0, e^v)), and a
3-component Gaussian mixture in d = 4 (``models.analytic.random_mixture``). For each
target and kernel the step size is tuned once by our dual averaging
(``samplers.mcmc.adaptation``; targets 0.57 for MALA, 0.8 for HMC) and then used by both
implementations, with the same number of leapfrog steps, chains, start points, warm-up and
draws. Ours runs the batch of chains through ``jax.jit(sample)``; blackjax's kernel is
``jax.vmap``-ed over the chains inside ``lax.scan``, both storing every draw. ESS is
``samplers.diagnostics.ess`` (Stan's / blackjax's estimator; the minimum over
coordinates); gradient evaluations are chains x draws x (1 for MALA, L for HMC), equal for
both by construction; seconds are the median wall time of the compiled run (compilation
excluded). The ratios are ours / blackjax (> 1: ours better); "speed" is blackjax's wall
time over ours for the same run (free of the ESS estimate's noise). ESS is only meaningful
where R-hat is near 1: fixed-step MALA/HMC do not converge on the funnel's neck, and
local kernels rarely cross between the mixture's modes.

    python bench/mcmc_ess.py [--chains 64] [--draws 2000] [--warmup 500] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import Progress, machine_lines, markdown_table, time_call  # noqa: E402
from models.analytic import random_mixture  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.diagnostics import ess, split_rhat  # noqa: E402
from samplers.mcmc.adaptation import adapt_step_size  # noqa: E402
from samplers.mcmc.hmc import hmc  # noqa: E402
from samplers.mcmc.langevin import mala  # noqa: E402


def gaussian_target(d: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    prec = (q / np.geomspace(0.1, 1.0, d)) @ q.T
    prec = jnp.asarray((prec + prec.T) / 2, jnp.float32)
    return (lambda x, t=None: -0.5 * jnp.einsum("bi,ij,bj->b", x, prec, x)), d


def funnel_target(d: int = 10):
    def logdensity(x, t=None):
        v, z = x[:, 0], x[:, 1:]
        return -v**2 / 18.0 - 0.5 * jnp.exp(-v) * jnp.sum(z**2, -1) - 0.5 * (d - 1) * v
    return logdensity, d


def mixture_target():
    gm = random_mixture(dim=4, num_components=3, seed=0, spread=1.5, scale=0.5)
    return (lambda x, t=None: gm.log_prob(x)), 4


TARGETS = {"gaussian-100": gaussian_target, "funnel-10": funnel_target, "mixture-4": mixture_target}
KERNELS = {"mala": (0.57, 1), "hmc": (0.8, 10)}  # (target acceptance, leapfrog steps)


def build(name: str, step_size: float, num_steps: int):
    target, num_lf = KERNELS[name]
    return mala(step_size, num_steps) if name == "mala" else hmc(step_size, num_lf, num_steps)


def blackjax_kernel(name: str, logdensity, step_size: float, d: int):
    single = lambda x: logdensity(x[None])[0]
    if name == "mala":
        return blackjax.mala(single, step_size)
    return blackjax.hmc(single, step_size, jnp.ones(d), KERNELS["hmc"][1])


def run_ours(sampler, logdensity):
    fn = lambda x, k: sample(sampler, logdensity, x, k, trajectory=lambda s: (s.x, s.log_accept))[1]
    return jax.jit(fn)


def run_blackjax(kernel, num_steps: int):
    def one(key, x):
        def body(s, k):
            s, info = kernel.step(k, s)
            return s, (s.position, info.acceptance_rate)
        return jax.lax.scan(body, kernel.init(x), jax.random.split(key, num_steps))[1]

    def fn(x, key):
        pos, acc = jax.vmap(one)(jax.random.split(key, x.shape[0]), x)
        return pos.swapaxes(0, 1), acc.T

    return jax.jit(fn)


def summarise(draws, accept, grads: int, seconds: float):
    e = ess(draws)
    return dict(acc=float(np.mean(accept)), ess=float(e.min()), per_grad=1000 * float(e.min()) / grads,
                per_s=float(e.min()) / seconds, rhat=float(split_rhat(draws).max()), s=seconds)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    total = args.warmup + args.draws
    rows = []
    prog = Progress(len(TARGETS) * len(KERNELS), "mcmc_ess ")
    for tname, make in TARGETS.items():
        logdensity, d = make()
        x0 = jax.random.normal(jax.random.PRNGKey(0), (args.chains, d))
        for kname, (target_acc, num_lf) in KERNELS.items():
            adapt = jax.jit(adapt_step_size, static_argnums=(0, 1, 4, 5))
            _, h, _ = adapt(build(kname, 1e-2, 1), logdensity, x0, jax.random.PRNGKey(1), args.warmup, target_acc)
            h = float(h)
            ours = run_ours(build(kname, h, total), logdensity)
            theirs = run_blackjax(blackjax_kernel(kname, logdensity, h, d), total)
            key = jax.random.PRNGKey(2)
            t_ours = time_call(ours, x0, key, warmup=1, repeats=args.repeats)
            t_bj = time_call(theirs, x0, key, warmup=1, repeats=args.repeats)
            xs, la = ours(x0, key)
            bx, bacc = theirs(x0, key)
            grads = args.chains * args.draws * num_lf
            a = summarise(np.asarray(xs)[args.warmup:], np.exp(np.minimum(np.asarray(la)[args.warmup:], 0)),
                          grads, t_ours * args.draws / total)
            b = summarise(np.asarray(bx)[args.warmup:], np.asarray(bacc)[args.warmup:], grads,
                          t_bj * args.draws / total)
            rows.append([tname, kname, h, num_lf, a["acc"], b["acc"], a["per_grad"], b["per_grad"],
                         a["per_grad"] / b["per_grad"], a["per_s"], b["per_s"], a["per_s"] / b["per_s"],
                         t_bj / t_ours, a["rhat"], b["rhat"]])
            prog.update(f"{tname}/{kname}: ours {t_ours:.3f}s, blackjax {t_bj:.3f}s")
    print("## MCMC efficiency: ours vs blackjax (same step size, trajectory length, chains, draws)\n")
    print(machine_lines())
    print(f"\n{args.chains} chains, {args.warmup} warm-up + {args.draws} draws; ESS = min over coordinates; "
          "ratios are ours / blackjax; speed = blackjax time / our time.\n")
    print(markdown_table(
        ["target", "kernel", "step", "L", "acc ours", "acc bj", "ESS/1k grad ours", "ESS/1k grad bj", "ratio",
         "ESS/s ours", "ESS/s bj", "ratio", "speed", "R-hat ours", "R-hat bj"], rows))


if __name__ == "__main__":
    main()
