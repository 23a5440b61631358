"""The jobs of ``launch.py``: ``train``, ``sample`` and ``evaluate`` a diffusion / flow model from a config.

* ``train(config, workdir)``: ``train.loop.fit`` on ``config.data`` (resumes from
  ``workdir/checkpoints``).
* ``sample(config, workdir)``: for every solver x NFE of ``config.sampler``, draws
  ``sampler.num_samples`` samples from the latest checkpoint (EMA parameters by
  default) with ``samplers.registry.build`` and writes ``samples/<solver>_nfe<N>.png``
  (an image grid, or a scatter plot for 2-D data) and ``.npz`` (``x``: float32 samples
  in data space; ``images``: uint8 for image data; ``nfe``).
* ``evaluate(config, workdir)``: ``eval.num_samples`` samples per solver x NFE, each
  metric of ``eval.metrics`` (``models.metrics``) against the held-out split: ``swd``
  (sliced Wasserstein-2), ``mmd2`` (RBF, median bandwidth), ``log_likelihood`` (exact,
  Gaussian-mixture data); ``confident`` (the digits classifier's share of confident labels);
  ``fid`` (only with ``eval.inception_weights``) against the
  training set; prints one table per metric and writes ``eval.csv`` and
  ``eval_<metric>.png``.

All three use every device of every process: samples are generated with the batch
split over the ``data`` mesh axis. ``validate(config)`` checks a config up front.
"""
from __future__ import annotations

import csv
import math
import os
import time

import jax
import numpy as np

from samplers import registry
from samplers.core import sample as run_sampler
from train import data as data_lib
from train import discrete, distributed
from train.checkpoint import Checkpointer
from train.config import as_tuple, build_network, build_objective, build_schedule, solvers, validate
from train.loop import CHECKPOINT_DIR, fit, read_metrics, restore_or_init
from train.optim import make_optimizer
from train.report import markdown_table

SAMPLES_DIR = "samples"
EVAL_CSV = "eval.csv"
FID_BATCH = 50  # Inception images per forward pass


def _log(*args) -> None:
    if distributed.is_main():
        print(*args, flush=True)


# -- train -----------------------------------------------------------------------------------------

def make_batches(config, split: str = "train") -> data_lib.Batches:
    d = config.data
    ds = data_lib.load(d.name, split, d.dir, **dict(d.kwargs))
    return data_lib.Batches(ds, config.train.batch_size, config.seed, jax.process_index(), jax.process_count(),
                            d.random_flip)


def train(config, workdir: str) -> dict:
    """Train (or resume training) the model of ``config`` in ``workdir``; returns a summary."""
    config = validate(config)
    network = build_network(config)
    objective = distill_method(config, network) or (discrete.build_objective(config, network)
                                                     if discrete.is_discrete(config) else build_objective(config))
    batches = make_batches(config)
    t0 = time.perf_counter()
    state = fit(network, objective, batches, config.train, workdir, config.seed)
    records = read_metrics(workdir) if distributed.is_main() else []
    return {"step": int(state.step), "loss": records[-1]["loss"] if records else None,
            "seconds": time.perf_counter() - t0}


def distill_method(config, network, with_teacher: bool = True):
    """The loop ``Method`` of ``config.distill`` (``train.distill``), or None for plain training."""
    if not config.distill.method:
        return None
    from train import distill

    return distill.method_of(config, network, with_teacher)


# -- generation ------------------------------------------------------------------------------------

def load_params(config, workdir: str, mesh=None):
    """The (EMA, if ``sampler.use_ema``) parameters of the latest checkpoint in ``workdir``, replicated."""
    mesh = distributed.make_mesh() if mesh is None else mesh
    if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):  # before orbax starts its cleanup thread
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}: run mode=train first")
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR))
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}: run mode=train first")
    network = build_network(config)
    method = distill_method(config, network, with_teacher=False)  # a distilled state: only its shapes matter
    state, _ = restore_or_init(network, make_optimizer(config.train)[0], config.seed, mesh, ckpt,
                               *([method.init_state] if method is not None else []))
    ckpt.close()
    return (state.ema if config.sampler.use_ema else state.params), int(state.step)


def init_scale(schedule) -> float:
    """Standard deviation of x at t_max for unit-variance data: sqrt(alpha^2 + sigma^2)."""
    t = np.float64(schedule.t_max)
    return float(np.sqrt(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2))


def generator(config, network, params, mesh):
    """``gen(name, nfe, n) -> (samples (n, *event_shape) float32 numpy, nfe used)``; the same noise for every solver."""
    if discrete.is_discrete(config):  # token samples (all-masked or uniform start), dequantised
        return discrete.generator(config, network, params, mesh)
    schedule = build_schedule(config)
    objective = build_objective(config, schedule)
    scale = init_scale(schedule)
    shape = network.event_shape
    batch = distributed.sampling_batch(config.sampler.batch_size, mesh)
    noise_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    data_sh = distributed.batch_sharded(mesh)
    if config.distill.method:  # a distilled student: its own model_fn per sampler and NFE
        from train import distill

        model_of = distill.student_model_fn(config, network)
        learnt_sampler = distill.student_sampler(config, params)  # a student whose sampler is learnt (LSD)
    else:
        model_of = lambda p, name, nfe: objective.model_fn(network.model_fn(p))
        learnt_sampler = None

    def gen(name: str, nfe: int, n: int):
        smp = (registry.build(name, schedule, nfe, config.predicts, spacing=config.sampler.spacing,
                              final=config.sampler.final) if learnt_sampler is None else learnt_sampler(name, nfe))

        @jax.jit
        def draw(p, key):
            kx, ks = jax.random.split(key)
            x = jax.lax.with_sharding_constraint(jax.random.normal(kx, (batch,) + shape) * scale, data_sh)
            out = run_sampler(smp, model_of(p, name, nfe), x, ks)
            return out.x, out.nfe

        return distributed.draw_batches(draw, params, noise_key, n, batch)

    return gen


# -- output files ----------------------------------------------------------------------------------

def to_uint8(x: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] to uint8 in [0, 255]."""
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(N, H, W, C) uint8 images tiled in a near-square grid with ``pad`` pixels of white between."""
    n, h, w, c = images.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[k]
    return grid


def save_samples(x: np.ndarray, image: bool, path_stem: str, title: str, nfe: int,
                 reference: np.ndarray | None = None) -> list[str]:
    """``<stem>.npz`` and ``<stem>.png`` (grid of images, or scatter of 2-D points drawn over the
    ``reference`` points, e.g. data, when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {"x": x.astype(np.float32), "nfe": np.int64(nfe)}
    if image:
        arrays["images"] = to_uint8(x)
    np.savez(path_stem + ".npz", **arrays)
    if image:
        grid = image_grid(arrays["images"])
        up = max(1, 512 // max(grid.shape[:2]))
        grid = np.repeat(np.repeat(grid, up, 0), up, 1)
        plt.imsave(path_stem + ".png", grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
    else:
        fig, ax = plt.subplots(figsize=(5, 5))
        if reference is not None:
            ax.scatter(reference[:, 0], reference[:, 1], s=2, alpha=0.4, label="data")
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, label="samples")
        if reference is not None:
            ax.legend(markerscale=4)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal", "datalim")
        fig.tight_layout()
        fig.savefig(path_stem + ".png", dpi=110)
        plt.close(fig)
    return [path_stem + ".npz", path_stem + ".png"]


# -- sample ----------------------------------------------------------------------------------------

def _restored(config, workdir: str):
    """(validated config, network, checkpoint step, sample generator) from ``workdir``'s latest checkpoint."""
    config = validate(config)
    mesh = distributed.make_mesh()
    network = build_network(config)
    params, step = load_params(config, workdir, mesh)
    return config, network, step, generator(config, network, params, mesh)


def sample(config, workdir: str) -> dict:
    """Write samples of every solver x NFE of ``config.sampler`` from ``workdir``'s latest checkpoint."""
    config, network, step, gen = _restored(config, workdir)
    image = len(network.event_shape) == 3
    out_dir = os.path.join(workdir, SAMPLES_DIR)
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, nfe in solvers(config):
        t0 = time.perf_counter()
        x, used = gen(name, nfe, config.sampler.num_samples)
        if distributed.is_main():
            stem = os.path.join(out_dir, f"{name}_nfe{nfe}")
            written[(name, nfe)] = save_samples(x, image, stem, f"{name}, NFE {used}, step {step}", used)
        _log(f"[sample] {name} NFE {used}: {len(x)} samples in {time.perf_counter() - t0:.1f}s -> "
             f"{os.path.join(out_dir, f'{name}_nfe{nfe}')}.{{png,npz}}")
    return {"step": step, "files": written}


# -- evaluate --------------------------------------------------------------------------------------

def metric_fns(config, workdir: str):
    """name -> fn(samples (n, *event) float32, held-out (m, *event)) -> float, for ``eval.metrics``."""
    from models import metrics

    e = config.eval
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
    fns = {}
    for m in as_tuple(e.metrics):
        if m == "swd":
            fns[m] = lambda x, ref: float(metrics.sliced_wasserstein(x, ref, key, e.swd_projections))
        elif m == "mmd2":
            fns[m] = lambda x, ref: float(metrics.mmd2(x, ref))
        elif m == "log_likelihood":
            gmm = data_lib.mixture_of(config.data.kwargs)
            fns[m] = lambda x, ref: float(metrics.gmm_log_likelihood(gmm, x))
        elif m == "fid":
            fns[m] = fid_fn(config, workdir)
        elif m == "confident":
            fns[m] = confident_fn()
    return fns


def confident_fn():
    """The share of samples the digits classifier (bench/digits_quality.py: an RBF SVC on the real training
    digits) labels with probability >= 0.8."""
    from bench.digits_quality import classifier, label_stats

    clf = classifier()
    return lambda x, ref: label_stats(clf, x)["confident"]


def fid_fn(config, workdir: str):
    """FID (Heusel et al. 2017) against the CIFAR-10 training set, as DDPM / score_sde / DPM-Solver report it.

    The training set's Inception statistics are computed once and cached in ``workdir``. Inception
    batches hold at most ``eval.num_samples`` images (one compilation for samples and training set;
    a small evaluation is not padded to 50 images per batch).
    """
    from models import inception, metrics

    variables = inception.load_fid_inception(config.eval.inception_weights)
    batch = min(FID_BATCH, config.eval.num_samples)
    features = lambda x: inception.inception_features(variables, x, batch_size=batch, value_range=(-1.0, 1.0))
    cache = os.path.join(workdir, "fid_stats_cifar10_train.npz")

    def reference_stats():
        if os.path.exists(cache):
            with np.load(cache) as f:
                return f["mu"], f["cov"]
        train_set = data_lib.load_cifar10(config.data.dir, "train")
        mu, cov = metrics.feature_stats(features(train_set.decode(train_set.x)))
        if distributed.is_main():
            np.savez(cache, mu=mu, cov=cov)
        return mu, cov

    stats = {}

    def fid(x, ref):
        del ref  # FID is taken against the training set
        if "ref" not in stats:
            stats["ref"] = reference_stats()
        return float(metrics.frechet_distance(*metrics.feature_stats(features(x)), *stats["ref"]))

    return fid


def _plot_metric(rows: list[dict], metric: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["solver"] for r in rows):
        pts = sorted((r["nfe_used"], r[metric]) for r in rows if r["solver"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set_xlabel("NFE (model calls)")
    ax.set_ylabel(metric)
    if all(r[metric] > 0 for r in rows):
        ax.set_yscale("log")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict], metric: str) -> str:
    nfes = sorted(dict.fromkeys(r["nfe"] for r in rows))
    names = list(dict.fromkeys(r["solver"] for r in rows))
    by = {(r["solver"], r["nfe"]): r[metric] for r in rows}
    return markdown_table(["solver"] + [f"NFE {n}" for n in nfes], [[name] + [by.get((name, n)) for n in nfes]
                                                                   for name in names], digits=4)


def evaluate(config, workdir: str) -> dict:
    """Metrics of every solver x NFE against held-out data; ``eval.csv``, one plot and table per metric."""
    config, network, step, gen = _restored(config, workdir)
    fns = metric_fns(config, workdir)
    d = config.data
    held_out = data_lib.load(d.name, "test", d.dir, **dict(d.kwargs))
    reference = held_out.decode(held_out.x)
    rows = []
    for name, nfe in solvers(config):
        t0 = time.perf_counter()
        x, used = gen(name, nfe, config.eval.num_samples)
        seconds = time.perf_counter() - t0
        row = {"solver": name, "nfe": nfe, "nfe_used": used, "sample_seconds": seconds}
        for m, fn in fns.items():
            row[m] = fn(x, reference)
        rows.append(row)
        _log(f"[eval] {name} NFE {used}: " + ", ".join(f"{m} {row[m]:.4g}" for m in fns))
    if distributed.is_main():
        with open(os.path.join(workdir, EVAL_CSV), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        for m in fns:
            against = f"the {d.name} training set" if m == "fid" else f"held-out {d.name}"
            print(f"\n{m} of {config.eval.num_samples} samples vs {against} (checkpoint step {step})")
            print(_table(rows, m), flush=True)
            _plot_metric(rows, m, os.path.join(workdir, f"eval_{m}.png"))
    return {"step": step, "rows": rows}


MODES = {"train": train, "sample": sample, "eval": evaluate, "distill": train}  # distill: train.distill's student
