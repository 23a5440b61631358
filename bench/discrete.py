"""Discrete diffusion: total variation to the exact target vs model calls, for every sampler.

Target: a random mixture of K = 3 product distributions over L = 6 positions and V = 3 tokens
(``models.discrete.random_product_mixture``, Dirichlet concentration 0.5), enumerated (729
sequences); the model is its exact masked x0 predictor (time-agnostic, so caching is valid). Each
sampler draws ``--samples`` sequences per seed, every sequence on its own (``vmap`` over keys, batch 1),
so NFE is the mean number of real model calls per sequence (caching and the first-hitting sampler's
skip count per sequence). TV is the total variation between the sample frequencies and the exact
probabilities; the "exact" row (the target's own sampler) is the Monte Carlo noise floor at this
sample size. Mean and worst TV over ``--seeds`` seeds (common seeds for every sampler). The
ordered samplers use the margin and confidence orders (entropy behaves like margin here). "ReMDM PC"
is the ReMDM predictor-corrector (one remask-and-re-predict step at sigma 0.3 after each predictor step
below alpha = 1: NFE 2 steps - 1). The uniform-noise rows (analytic posterior step on the linear
schedule; Euler and tau-leaping on the log-linear one, whose rate is finite at t = 1) and "DFM uniform"
start from uniform tokens and use the target's exact uniform-noise denoiser
(``samplers.discrete.uniform.uniform_model_fn``); "DFM mask" uses the masked model.

Posterior table: y = a draw of the target with each token flipped with probability 0.2
(``posterior.flip_tokens``); TV to the enumerated posterior p(x | y) ~ p(x) p(y | x) for APS (anchored
posterior sampling, default options, from all-masked) and split Gibbs (``denoise_steps`` 1 and 4 model
calls per step, from y), written to a second plot.

The last table: the model calls the first-hitting sampler (exact, L calls) saves against the ancestral
sampler at equal TV: the fewest ancestral steps (and cached calls) whose mean TV is within 10% of
the first-hitting sampler's.

``--digits`` (``digits_table``) instead measures the digits-token recipe (configs/digits_tokens.py) from a
workdir trained with the config's defaults: for every sampler x NFE of the config, 3 draws of
``DIGITS_SAMPLES`` samples (independent keys, all-masked start), each scored by the digits classifier's share
of confident labels (>= 0.8, bench/digits_quality.py) and the sliced Wasserstein-2 distance (512 projections)
to the 297 held-out digits, samples dequantised to [-1, 1]; mean and worst of the 3 draws.

    python bench/discrete.py [--samples 50000] [--seeds 2] [--out workdir/bench] [--quick]
    python bench/discrete.py --digits [--workdir workdir/digits_tokens] [--out workdir/bench]
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

from bench.common import Progress, machine_lines, markdown_table, plot_error_vs_nfe  # noqa: E402
from models.discrete import random_product_mixture  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.discrete import dfm, posterior, uniform  # noqa: E402
from samplers.discrete.aps import aps  # noqa: E402
from samplers.discrete.block import block_diffusion  # noqa: E402
from samplers.discrete.first_hitting import first_hitting  # noqa: E402
from samplers.discrete.masked import all_masked, ancestral  # noqa: E402
from samplers.discrete.remask import remdm  # noqa: E402

K, L, V = 3, 6, 3
MASK = V


EPS = 0.2  # the posterior problem's flip probability


def samplers(steps: list[int]) -> dict:
    """label -> [(steps, Sampler)] on the fixed grid of step counts (masked model, from all-masked)."""
    return {
        "ancestral": [(n, ancestral(V, n)) for n in steps],
        "ancestral+cache": [(n, ancestral(V, n, cache=True)) for n in steps],
        "margin order": [(n, ancestral(V, n, order="margin")) for n in steps],
        "confidence order": [(n, ancestral(V, n, order="confidence")) for n in steps],
        "ReMDM cap 0.05": [(n, remdm(V, n, strategy="cap", eta=0.05)) for n in steps],
        "ReMDM loop 0.1": [(n, remdm(V, n, strategy="loop", eta=0.1)) for n in steps if n >= 4],
        "block 2x3": [(n, block_diffusion(V, L, 3, n // 2)) for n in steps if n >= 2],
        "first-hitting": [(L, first_hitting(V, L))],
        "ReMDM PC 1x0.3": [(n, remdm(V, n, eta=0.0, corrector_steps=1, corrector_eta=0.3)) for n in steps if n >= 2],
        "DFM mask": [(n, dfm.euler(V, n, source="mask")) for n in steps],
    }


def uniform_samplers(steps: list[int]) -> dict:
    """label -> (schedule of the uniform-noise denoiser, [(steps, Sampler)]), from uniform tokens."""
    return {
        "uniform analytic": ("linear", [(n, uniform.analytic(V, n)) for n in steps]),
        "uniform Euler": ("loglinear", [(n, uniform.euler(V, n)) for n in steps]),
        "uniform tau-leaping": ("loglinear", [(n, uniform.tau_leaping(V, n)) for n in steps]),
        "DFM uniform": ("linear", [(n, dfm.euler(V, n, source="uniform")) for n in steps]),
    }


def posterior_samplers(steps: list[int], y) -> dict:
    """label -> (start from all-masked?, [(steps, Sampler)]) for the flip posterior of y."""
    lik, embedded = posterior.flip_log_likelihood(y, EPS, V), posterior.flip_embedded_log_likelihood(y, EPS, V)
    return {
        "APS": (True, [(n, aps(V, n, embedded)) for n in steps]),
        "split Gibbs d=1": (False, [(n, posterior.split_gibbs(V, n, lik, denoise_steps=1)) for n in steps]),
        "split Gibbs d=4": (False, [(n, posterior.split_gibbs(V, n, lik, denoise_steps=4)) for n in steps]),
    }


def run(sampler, model_fn, n: int, key, start=lambda k: all_masked(1, L, MASK)):
    """n sequences, each sampled on its own from ``start(key)`` (1, L); returns (tokens (n, L), real model
    calls per sequence)."""
    one = lambda k: sample(sampler, model_fn, start(jax.random.fold_in(k, 1)), k)
    final = jax.jit(jax.vmap(one))(jax.random.split(key, n))
    return np.asarray(final.x[:, 0]), np.asarray(final.nfe)


def tv(x, target, p) -> float:
    freq = np.bincount(np.asarray(target.index(x)), minlength=len(p)) / len(x)
    return 0.5 * float(np.abs(freq - p).sum())


def sweep(table: dict, target, p, samples: int, keys, prog):
    """table: label -> (model_fn, start, [(steps, Sampler)]); returns (table rows, curves, results)."""
    rows, curves, results = [], {}, {}
    for label, (model_fn, start, entries) in table.items():
        nfes, tvs = [], []
        for n, s in entries:
            out = [run(s, model_fn, samples, k, start) for k in keys]
            t = [tv(x, target, p) for x, _ in out]
            nfe = float(np.mean([c.mean() for _, c in out]))
            rows.append([label, n, nfe, np.mean(t), np.max(t)])
            nfes.append(nfe)
            tvs.append(float(np.mean(t)))
            prog.update(f"{label} {n}: TV {np.mean(t):.4f} at NFE {nfe:.2f}")
        curves[label] = (nfes, tvs)
        results[label] = list(zip([n for n, _ in entries], nfes, tvs))
    return rows, curves, results


DIGITS_SAMPLES, DIGITS_DRAWS = 1000, 3


def digits_table(workdir: str, out: str) -> None:
    """Quality vs NFE of the digits-token recipe trained in ``workdir`` (module docstring): a table and plots."""
    import time

    from bench.digits_quality import classifier, label_stats, swd
    from configs import digits_tokens
    from train import data as data_lib
    from train import distributed, jobs
    from train.config import build_network, solvers, validate

    config = digits_tokens.get_config()
    config.sampler.batch_size = DIGITS_SAMPLES
    config = validate(config)
    mesh = distributed.make_mesh()
    network = build_network(config)
    params, step = jobs.load_params(config, workdir, mesh)
    gen = jobs.generator(config, network, params, mesh)
    real = data_lib.load_digits("test")
    real = real.decode(real.x)
    clf = classifier()
    pairs = solvers(config)
    prog = Progress(len(pairs), "digits tokens ")
    rows, conf_curves, swd_curves = [], {}, {}
    for name, nfe in pairs:
        t0 = time.perf_counter()
        x, used = gen(name, nfe, DIGITS_DRAWS * DIGITS_SAMPLES)  # one batch (key) per draw
        seconds = time.perf_counter() - t0
        draws = np.split(x, DIGITS_DRAWS)
        conf = [label_stats(clf, d)["confident"] for d in draws]
        dist = [swd(d, real) for d in draws]
        rows.append([name, used, np.mean(conf), np.min(conf), np.mean(dist), np.max(dist), seconds])
        conf_curves.setdefault(name, ([], []))
        swd_curves.setdefault(name, ([], []))
        for curves, value in ((conf_curves, 1.0 - np.mean(conf)), (swd_curves, np.mean(dist))):
            curves[name][0].append(used)
            curves[name][1].append(value)
        prog.update(f"{name} NFE {used}: confident {np.mean(conf):.3f}, SW {np.mean(dist):.4f}")
    real_train = data_lib.load_digits("train")
    real_train = real_train.decode(real_train.x)
    ref = [label_stats(clf, real)["confident"], swd(real_train[:len(real)], real)]
    print(f"## Digits as tokens (configs/digits_tokens.py): quality vs NFE, checkpoint step {step}\n")
    print(machine_lines())
    print(f"\n{DIGITS_DRAWS} draws of {DIGITS_SAMPLES} samples per sampler x NFE; confident = share labelled with "
          f"probability >= 0.8 by the digits classifier; SW = sliced W2 to the {len(real)} held-out digits "
          f"(worst: lowest confident share, highest SW of the draws); seconds for all draws, compile included.\n")
    rows.append([f"real held-out digits (SW: {len(real)} training digits)", "-", ref[0], ref[0], ref[1], ref[1], 0.0])
    print(markdown_table(["sampler", "NFE", "confident mean", "confident worst", "SW mean", "SW worst", "seconds"],
                         rows, digits=4))
    os.makedirs(out, exist_ok=True)
    for curves, name, ylabel in ((swd_curves, "discrete_digits_swd.png", "sliced W2 to held-out digits"),
                                 (conf_curves, "discrete_digits_unconfident.png",
                                  "share of samples NOT confidently classified")):
        path = os.path.join(out, name)
        plot_error_vs_nfe(curves, path, f"Digits as 64 tokens of 17 levels (step {step})", ylabel=ylabel)
        print(f"\nwrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default="workdir/bench")
    ap.add_argument("--quick", action="store_true", help="10k samples, 2 seeds, steps up to 16")
    ap.add_argument("--digits", action="store_true", help="only the digits-token recipe's table (digits_table)")
    ap.add_argument("--workdir", default="workdir/digits_tokens", help="--digits: the recipe's trained workdir")
    args = ap.parse_args()
    if args.digits:
        digits_table(args.workdir, args.out)
        return
    if args.quick:
        args.samples, args.seeds = 10_000, 2
    steps = [1, 2, 4, 8, 16] if args.quick else [1, 2, 4, 8, 16, 32]
    target = random_product_mixture(0, K, L, V, concentration=0.5)
    model_fn = target.masked_model_fn(MASK)
    _, p = target.enumerate()
    keys = [jax.random.PRNGKey(100 + s) for s in range(args.seeds)]
    noise, masked_start = (lambda k: uniform.uniform_tokens(k, 1, L, V)), (lambda k: all_masked(1, L, MASK))
    table = {label: (model_fn, masked_start, entries) for label, entries in samplers(steps).items()}
    table.update({label: (uniform.uniform_model_fn(target, schedule), noise, entries)
                  for label, (schedule, entries) in uniform_samplers(steps).items()})
    y = posterior.flip_tokens(jax.random.PRNGKey(7), target.sample(jax.random.PRNGKey(6), 1), EPS, V)
    xs, _ = target.enumerate()
    post = p * np.exp(np.asarray(posterior.flip_log_likelihood(y, EPS, V)(jnp.asarray(xs)), np.float64))
    post /= post.sum()
    post_table = {label: (model_fn, masked_start if from_mask else (lambda k: y), entries)
                  for label, (from_mask, entries) in posterior_samplers(steps, y).items()}
    prog = Progress(sum(len(v[2]) for v in (*table.values(), *post_table.values())) + 1, "discrete ")
    floor = [tv(np.asarray(target.sample(k, args.samples)), target, p) for k in keys]
    prog.update("exact")
    rows, curves, results = sweep(table, target, p, args.samples, keys, prog)
    rows.insert(0, ["exact (noise floor)", "-", 0.0, np.mean(floor), np.max(floor)])
    post_rows, post_curves, _ = sweep(post_table, target, post, args.samples, keys, prog)
    post_floor = [tv(xs[np.asarray(jax.random.choice(k, len(post), (args.samples,), p=jnp.asarray(post)))], target, post)
                  for k in keys]
    post_rows.insert(0, ["exact posterior (noise floor)", "-", 0.0, np.mean(post_floor), np.max(post_floor)])
    post_curves["exact posterior (noise floor)"] = ([1, max(steps)], [np.mean(post_floor)] * 2)
    print("## Discrete diffusion: TV to the exact target vs model calls\n")
    print(machine_lines())
    print(f"\nTarget: K={K} product mixture, L={L}, V={V} (729 sequences); {args.samples} samples per seed, "
          f"{args.seeds} seeds; NFE = mean real model calls per sequence.\n")
    print(markdown_table(["sampler", "steps", "NFE", "TV mean", "TV worst"], rows, digits=4))
    fh_tv = results["first-hitting"][0][2]
    save = []
    for label in ("ancestral", "ancestral+cache", "ReMDM cap 0.05", "block 2x3"):
        hit = [(n, nfe, t) for n, nfe, t in results[label] if t <= 1.1 * fh_tv]
        n, nfe, t = hit[0] if hit else (None, float("nan"), float("nan"))
        save.append([label, n if n is not None else f"> {steps[-1]}", nfe, t, L, fh_tv, nfe / L])
    print("\n### Model calls at the first-hitting sampler's TV (within 10%)\n")
    print(markdown_table(["sampler", "steps", "NFE", "TV", "first-hitting NFE", "first-hitting TV",
                          "NFE ratio"], save, digits=4))
    os.makedirs(args.out, exist_ok=True)
    curves["exact (noise floor)"] = ([1, max(steps)], [np.mean(floor)] * 2)
    path = os.path.join(args.out, "discrete.png")
    plot_error_vs_nfe(curves, path, f"Discrete diffusion on a product mixture (L={L}, V={V})",
                      dashed=lambda label: label.startswith("exact"), ylabel="TV to the exact distribution")
    print(f"\nwrote {path}")
    print(f"\n### Posterior sampling: TV to the enumerated posterior (y = {np.asarray(y)[0].tolist()}, flips "
          f"with probability {EPS}; the prior is {0.5 * np.abs(p - post).sum():.3f} from it)\n")
    print(markdown_table(["sampler", "steps", "NFE", "TV mean", "TV worst"], post_rows, digits=4))
    path = os.path.join(args.out, "discrete_posterior.png")
    plot_error_vs_nfe(post_curves, path, f"Posterior sampling on a product mixture (L={L}, V={V})",
                      dashed=lambda label: label.startswith("exact"), ylabel="TV to the exact posterior")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
