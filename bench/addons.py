"""Training-free add-ons around DDIM on a 2-D Gaussian mixture: each add-on's effect at 5, 10 and 20
solver calls on the exact mixture metrics.

Mixture: weights (0.6, 0.3, 0.1), means (-2, 0), (2, 1), (0.5, -2.5), diagonal variances 0.05-0.1,
``vp_linear`` schedule, exact eps model (``models.analytic``). Every row starts from the same noise
(common random numbers, ``--n`` samples) and the same keys. Fixed knobs: epsilon scaling lambda = 1.02;
HiGS w = 0.1 (decay 0.5, x0 space); self-guided minority w = 0.5, re-noising t = 0.3 (2 model calls
per solver call); boost-and-skip boost 1.6, skip = calls // 5; Beta(0.6, 0.6) grid; the hallucination
filter drops the 5% of samples with the largest x0_hat variance over u <= 0.1 (at 5 calls one call
falls there: every variance is 0 and nothing is dropped); minority guidance w = 0.5 with the exact
component classifier (levels ordered common -> rare, target the rarest); density guidance delta = -1 nat
over the grid's range.

Columns: model calls; mean exact log-likelihood (LL) and the worst sample's (min LL); the fraction of
the smallest component (by the exact posterior at t = 0); sliced Wasserstein-2 to 20k exact samples
(SW, 128 projections, same key) and SW / base SW at the same solver calls (< 1: closer). Writes
``bench/addons.png`` (SW against model calls). A second table: block caching on a small random-weight
DiT (``cache_rows``): blocks evaluated, wall time and speed-up against the uncached model, and the
relative change of the samples; the same for a small random-weight UNet, with an early-exit row. A third
table: upsample guidance (strength 1, factor 2) of a single-pixel mixture model applied to 2x2 images
(``upsample_rows``): the log-likelihood of the pooled images under the pixel mixture (what the guidance
is for) and of the single pixels.

    python bench/addons.py [--n 4000] [--quick]   (--quick: 1000 samples, caching at 10 calls only)
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
from models.unet import UNet  # noqa: E402
from models.metrics import sliced_wasserstein  # noqa: E402
from samplers import registry  # noqa: E402
from samplers.addons.boost import boost, skip_steps  # noqa: E402
from samplers.addons.cache import block_cache, cached_model, calibrate, early_exit  # noqa: E402
from samplers.addons.core import with_addons  # noqa: E402
from samplers.addons.density import density_guidance  # noqa: E402
from samplers.addons.detect import keep_mask, trajectory_variance, x0_variance  # noqa: E402
from samplers.addons.grids import beta_grid  # noqa: E402
from samplers.addons.guidance import epsilon_scaling  # noqa: E402
from samplers.addons.higs import higs  # noqa: E402
from samplers.addons.minority import minority_guidance, self_guided_minority  # noqa: E402
from samplers.addons.upsample import pool, upsample_guidance  # noqa: E402
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
        ("minority guidance 0.5", with_addons(base, minority_guidance(component_logits, 0.5, SCH)), None),
        ("density guidance -1", with_addons(base, density_guidance(SCH, -1.0, grid.t[0], grid.t[-1])), None),
    ]


def component_logits(x, t=None):
    """log w_k + log N_k(x) at time t (t None: the data), the exact classifier of the component; the
    components are ordered by weight, so the last level is the rarest (the minority-guidance target)."""
    a, s = (1.0, 0.0) if t is None else (SCH.alpha(t), SCH.sigma(t))
    return jnp.stack([np.log(w) + GaussianMixture([1.0], GM.means[k:k + 1], GM.covs[k:k + 1]).log_prob_t(x, a, s)
                      for k, w in enumerate(GM.weights)], -1)


def metrics(x, ref, key):
    ll = np.asarray(GM.log_prob(x))
    frac = float(jnp.mean(jnp.argmax(component_logits(x), -1) == SMALLEST))
    return float(ll.mean()), float(ll.min()), frac, float(sliced_wasserstein(x, ref, key))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--quick", action="store_true", help="1000 samples; caching rows at 10 solver calls only")
    args = p.parse_args(argv)
    if args.quick:
        args.n = 1000
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
    nfes = (10,) if args.quick else (10, 20)
    header = ["solver calls", "blocks evaluated", "of", "ms / run", "speed-up", "rel. change"]
    dit = DiT(patch_size=2, hidden=64, depth=6, num_heads=4, freq_dim=64, time_scale=1000.0)
    print(markdown_table(["block caching (DiT)"] + header, cache_rows(dit, nfes)))
    print()
    unet = UNet(channels=32, channel_mult=(1, 2), num_res_blocks=2, attn_resolutions=(8,), dropout=0.0,
                norm_groups=8, time_scale=1000.0)
    print(markdown_table(["block caching (UNet)"] + header, cache_rows(unet, nfes, early=True)))
    print()
    print(markdown_table(["upsample guidance", "solver calls", "model calls", "pooled mean LL", "pooled min LL",
                          "pixel mean LL"], upsample_rows(args.n)))


def cache_rows(module, nfes, early: bool = False):
    """Block caching on ``module`` (random weights of scale 0.1) at 16x16x3, batch 16, UniPC: refresh tables
    from one calibration run at thresholds 0 (every block), 0.1, 0.3 (and with ``early``, the early exit
    running the first half of the blocks at every other step), and as the reference for the change, every
    block frozen after the first step; wall time (median of 7, compiled, timed in alternation with the
    uncached run) against the uncached model, and the relative L2 change of the samples."""
    params = random_params(module, (16, 16, 3), scale=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 16, 16, 3))
    rows = []
    for nfe in nfes:
        s = registry.build("unipc", SCH, nfe)
        plain = jax.jit(lambda x, s=s: sample(s, model_fn(module, params), x).x)
        base, runs, outs, labels = plain(x), [], [], []
        tables = [(f"threshold {thr}", calibrate(s, module, params, x, thr)) for thr in (0.0, 0.1, 0.3)]
        blocks = tables[0][1].shape[1]
        if early:
            depths = [blocks if i % 2 == 0 else blocks // 2 for i in range(nfe)]
            tables.append((f"early exit {blocks // 2}/{blocks}, odd steps", early_exit(depths, blocks)))
        tables.append(("never refreshed (reference)", early_exit([blocks] + [0] * (nfe - 1), blocks)))
        for label, table in tables:
            run = jax.jit(lambda x, s=s, table=table: sample(with_addons(s, block_cache(module, table)),
                                                             cached_model(module, params), x))
            runs.append(lambda run=run: run(x).x)
            outs.append(run(x))
            labels.append(label)
        t_base, *times = time_paired([lambda: plain(x)] + runs, repeats=7, warmup=1)
        for label, out, t in zip(labels, outs, times):
            rel = float(jnp.linalg.norm(out.x - base) / jnp.linalg.norm(base))
            rows.append([label, nfe, int(out.carry[0][2]), nfe * blocks, 1e3 * t, t_base / t, rel])
    return rows


def upsample_rows(n: int):
    """Upsample guidance: a model of single pixels (the exact eps of the 1-D mixture 0.5 N(-2, 0.05) +
    0.5 N(2, 0.05), applied to every pixel) samples n 2x2 images with DDIM, unguided and at strength 1; the
    mean and worst log-likelihood of the 2x2-pooled images and the mean of the single pixels under the
    pixel mixture (exact samples: about -0.6)."""
    pixel = GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [[0.05], [0.05]])
    model = lambda x, t: pixel.model_fn(SCH)(x.reshape(-1, 1), t).reshape(x.shape)
    x_T = jax.random.normal(jax.random.PRNGKey(1), (n, 2, 2, 1))
    rows = []
    for nfe in (5, 10, 20):
        base = ddim(SCH, registry.grid("ddim", SCH, nfe))
        for label, s in (("none (DDIM)", base), ("strength 1", with_addons(base, upsample_guidance(SCH, 1.0)))):
            state = jax.jit(lambda x, s=s: sample(s, model, x))(x_T)
            pooled = np.asarray(pixel.log_prob(pool(state.x, 2).reshape(-1, 1)))
            pixels = np.asarray(pixel.log_prob(state.x.reshape(-1, 1)))
            rows.append([label, nfe, int(state.nfe), pooled.mean(), pooled.min(), pixels.mean()])
    return rows


if __name__ == "__main__":
    main()
