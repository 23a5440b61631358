"""Training-free add-ons around DDIM on a 2-D Gaussian mixture: each add-on's effect at 5, 10 and 20
solver calls on the exact mixture metrics.

Mixture: weights (0.6, 0.3, 0.1), means (-2, 0), (2, 1), (0.5, -2.5), diagonal variances 0.05-0.1,
``vp_linear`` schedule, exact eps model (``models.analytic``). Every row starts from the same noise
(common random numbers, ``--n`` samples) and the same keys. Fixed knobs: epsilon scaling lambda = 1.02;
HiGS w = 0.1 (decay 0.5, x0 space); self-guided minority w = 0.5, re-noising t = 0.3 (2 model calls
per solver call); boost-and-skip boost 1.6, skip = calls // 5; Beta(0.6, 0.6) grid; the hallucination
filter drops the 5% of samples with the largest x0_hat variance over u <= 0.1 (at 5 calls one call
falls there: every variance is 0 and nothing is dropped).

Columns: model calls; mean exact log-likelihood (LL) and the worst sample's (min LL); the fraction of
the smallest component (by the exact posterior at t = 0); sliced Wasserstein-2 to 20k exact samples
(SW, 128 projections, same key) and SW / base SW at the same solver calls (< 1: closer). Writes
``bench/addons.png`` (SW against model calls). A second table: block caching on a small random-weight
DiT (``cache_rows``): blocks evaluated, wall time and speed-up against the uncached model, and the
relative change of the samples.

    python bench/addons.py [--n 4000]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_lines, markdown_table, plot_error_vs_nfe, time_paired  # noqa: E402
from models.analytic import GaussianMixture  # noqa: E402
from models.common import model_fn, random_params  # noqa: E402
from models.dit import DiT  # noqa: E402
from models.metrics import sliced_wasserstein  # noqa: E402
from samplers import registry  # noqa: E402
from samplers.addons.boost import boost, skip_steps  # noqa: E402
from samplers.addons.cache import block_cache, cached_model, calibrate  # noqa: E402
from samplers.addons.core import with_addons  # noqa: E402
from samplers.addons.detect import keep_mask, trajectory_variance, x0_variance  # noqa: E402
from samplers.addons.grids import beta_grid  # noqa: E402
from samplers.addons.guidance import epsilon_scaling  # noqa: E402
from samplers.addons.higs import higs  # noqa: E402
from samplers.addons.minority import self_guided_minority  # noqa: E402
from samplers.core import sample  # noqa: E402
from samplers.ode.ddim import ddim  # noqa: E402
from samplers.schedules import vp_linear  # noqa: E402

SCH = vp_linear()
GM = GaussianMixture([0.6, 0.3, 0.1], [[-2.0, 0.0], [2.0, 1.0], [0.5, -2.5]],
                     [[0.1, 0.05], [0.05, 0.1], [0.05, 0.05]])
SMALLEST = 2


def runs(nfe: int):
    """(label, sampler, initial-noise factor, keep-mask fn or None) of every row at ``nfe`` solver calls."""
    grid = registry.grid("ddim", SCH, nfe)
    base = ddim(SCH, grid)
    filt = lambda st: keep_mask(trajectory_variance(st), float(np.quantile(trajectory_variance(st), 0.95)))
    return [
        ("base (DDIM)", base, None),
        ("eps scaling 1.02", with_addons(base, epsilon_scaling(SCH, scale=1.02)), None),
        ("HiGS 0.1", with_addons(base, higs(SCH, strength=0.1)), None),
        ("self-guided minority 0.5", with_addons(base, self_guided_minority(SCH, strength=0.5, t_perturb=0.3)), None),
        ("boost 1.6 + skip", with_addons(ddim(SCH, skip_steps(grid, nfe // 5)), boost(1.6)), None),
        ("Beta(0.6,0.6) grid", ddim(SCH, beta_grid(SCH, nfe)), None),
        ("hallucination filter 5%", with_addons(base, x0_variance(SCH, u_max=0.1)), filt),
    ]


def metrics(x, ref, key):
    ll = np.asarray(GM.log_prob(x))
    post = jnp.stack([np.log(w) + GaussianMixture([1.0], GM.means[k:k + 1], GM.covs[k:k + 1]).log_prob(x)
                      for k, w in enumerate(GM.weights)], -1)
    frac = float(jnp.mean(jnp.argmax(post, -1) == SMALLEST))
    return float(ll.mean()), float(ll.min()), frac, float(sliced_wasserstein(x, ref, key))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    args = p.parse_args(argv)
    x_T = jax.random.normal(jax.random.PRNGKey(1), (args.n, 2))
    ref = GM.sample(jax.random.PRNGKey(2), 20000)
    sw_key = jax.random.PRNGKey(3)
    model = GM.model_fn(SCH)
    rows, curves, base_sw = [], {}, {}
    print(f"exact samples: LL {float(jnp.mean(GM.log_prob(ref))):.3f}, smallest fraction "
          f"{metrics(ref[:args.n], ref, sw_key)[2]:.3f}")
    for nfe in (5, 10, 20):
        for label, s, keep in runs(nfe):
            state = jax.jit(lambda x, s=s: sample(s, model, x, jax.random.PRNGKey(4)))(x_T)
            x = state.x
            note = ""
            if keep is not None:
                mask = keep(state)
                x, note = x[mask], f" (kept {mask.mean():.2f})"
            ll, worst, frac, sw = metrics(x, ref, sw_key)
            base_sw.setdefault(nfe, sw)
            rows.append([label + note, nfe, int(state.nfe), ll, worst, frac, sw, sw / base_sw[nfe]])
            curves.setdefault(label, ([], []))
            curves[label][0].append(int(state.nfe))
            curves[label][1].append(sw)
            print(f"  {label} @ {nfe}: LL {ll:.3f} SW {sw:.4f}", flush=True)
    print("\n" + machine_lines() + "\n")
    print(markdown_table(["add-on", "solver calls", "model calls", "mean LL", "min LL", "smallest frac.", "SW",
                          "SW / base"], rows))
    out = Path(__file__).with_suffix(".png")
    plot_error_vs_nfe(curves, str(out), "Add-ons around DDIM, 2-D mixture", ylabel="sliced W2 to exact samples")
    print(f"\nplot: {out}\n")
    print(markdown_table(["block caching (DiT)", "solver calls", "blocks evaluated", "of", "ms / run", "speed-up",
                          "rel. change"], cache_rows()))


def cache_rows():
    """Block caching on a DiT (hidden 64, depth 6, patch 2, random weights of scale 0.1) at 16x16x3, batch 16,
    UniPC: refresh tables from one calibration run at thresholds 0 (every block), 0.1, 0.3; wall time
    (median of 7, compiled, timed in alternation with the uncached run) against the uncached model, and the
    relative L2 change of the samples."""
    module = DiT(patch_size=2, hidden=64, depth=6, num_heads=4, freq_dim=64, time_scale=1000.0)
    params = random_params(module, (16, 16, 3), scale=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 16, 16, 3))
    rows = []
    for nfe in (10, 20):
        s = registry.build("unipc", SCH, nfe)
        plain = jax.jit(lambda x, s=s: sample(s, model_fn(module, params), x).x)
        base, runs, outs = plain(x), [], []
        for thr in (0.0, 0.1, 0.3):
            table = calibrate(s, module, params, x, thr)
            run = jax.jit(lambda x, s=s, table=table: sample(with_addons(s, block_cache(module, table)),
                                                             cached_model(module, params), x))
            runs.append(lambda run=run: run(x).x)
            outs.append(run(x))
        t_base, *times = time_paired([lambda: plain(x)] + runs, repeats=7, warmup=1)
        for thr, out, t in zip((0.0, 0.1, 0.3), outs, times):
            rel = float(jnp.linalg.norm(out.x - base) / jnp.linalg.norm(base))
            rows.append([f"threshold {thr}", nfe, int(out.carry[0][2]), nfe * module.depth, 1e3 * t, t_base / t, rel])
    return rows


if __name__ == "__main__":
    main()
