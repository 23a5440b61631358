"""Measured quality of the digits recipe (configs/digits.py): are its samples recognisable digits?

Trains the recipe from scratch (or ``--workdir`` of an earlier run, which is resumed),
draws 1,000 samples, and checks, as the issue asks:

* a scikit-learn classifier fitted on the real training digits labels >= 80% of the
  samples with confidence >= 0.8, and every class gets >= 4% of the samples;
* the sliced Wasserstein distance of the samples to the held-out real digits is at
  least 3x below that of the untrained model (same network at initialisation,
  same solver, same noise).

The classifier is also scored on the held-out real digits, so the thresholds can be
read against real data. Prints the wall time of training (the budget is 10 minutes
on 2 CPU cores) and the machine.

    python bench/digits_quality.py [--steps N] [--solver dpm_solver_pp_3m --nfe 20] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_lines, markdown_table  # noqa: E402
from configs import digits  # noqa: E402
from train import data as data_lib  # noqa: E402
from train import distributed, jobs  # noqa: E402
from train.config import build_network, validate  # noqa: E402
from train.loop import keys  # noqa: E402

NUM_SAMPLES = 1000
CONFIDENCE = 0.8


def classifier():
    """An RBF support-vector classifier with Platt-scaled probabilities (``SVC(probability=True)``,
    scikit-learn's defaults) on the 64 pixels of the real training digits."""
    import warnings

    from sklearn.svm import SVC

    train = data_lib.load_digits("train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # `probability` is deprecated from scikit-learn 1.9 on
        return SVC(probability=True, random_state=0).fit(train.x.reshape(len(train.x), -1), train.y)


def label_stats(clf, x: np.ndarray) -> dict:
    """Fraction labelled with confidence >= CONFIDENCE, and the smallest class share (of all / of confident)."""
    probs = clf.predict_proba(np.clip(x, -1.0, 1.0).reshape(len(x), -1))
    conf, label = probs.max(1), probs.argmax(1)
    sure = conf >= CONFIDENCE
    share_all = np.bincount(label, minlength=10) / len(x)
    share_sure = np.bincount(label[sure], minlength=10) / max(int(sure.sum()), 1)
    return {"confident": float(sure.mean()), "min_class_share": float(share_all.min()),
            "min_class_share_confident": float(share_sure.min()), "class_shares": np.round(share_all, 3).tolist()}


def swd(x: np.ndarray, ref: np.ndarray, seed: int = 0, projections: int = 512) -> float:
    from models import metrics

    flat = lambda a: jax.numpy.asarray(a.reshape(len(a), -1))
    return float(metrics.sliced_wasserstein(flat(x), flat(ref), jax.random.PRNGKey(seed), projections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="train steps (default: the recipe's)")
    parser.add_argument("--solver", default="dpm_solver_pp_3m")
    parser.add_argument("--nfe", type=int, default=20)
    parser.add_argument("--workdir", default=None, help="keep the run here (default: a temporary directory)")
    args = parser.parse_args()

    config = digits.get_config()
    if args.steps:
        config.train.num_steps = args.steps
    config.sampler.name, config.sampler.nfe = (args.solver,), (args.nfe,)
    config.sampler.batch_size = NUM_SAMPLES
    config = validate(config)
    workdir = args.workdir or tempfile.mkdtemp(prefix="digits_quality_")

    t0 = time.perf_counter()
    jobs.train(config, workdir)
    train_seconds = time.perf_counter() - t0

    mesh = distributed.make_mesh()
    network = build_network(config)
    trained, step = jobs.load_params(config, workdir, mesh)
    untrained = jax.device_put(network.init(keys(config.seed)[0]), distributed.replicated(mesh))
    held_out = data_lib.load_digits("test")
    real = held_out.decode(held_out.x)

    clf = classifier()
    rows, results = [], {}
    for what, params in (("trained", trained), ("untrained", untrained)):
        t1 = time.perf_counter()
        x, used = jobs.generator(config, network, params, mesh)(args.solver, args.nfe, NUM_SAMPLES)
        stats = label_stats(clf, x)
        stats["swd"] = swd(np.clip(x, -1, 1), real)
        stats["seconds"] = time.perf_counter() - t1
        results[what] = stats
        rows.append([f"{what} model ({args.solver}, NFE {used})", stats["confident"], stats["min_class_share"],
                     stats["min_class_share_confident"], stats["swd"]])
    real_stats = label_stats(clf, real)
    real_train = data_lib.load_digits("train")
    rows.append([f"held-out real digits ({len(real)})", real_stats["confident"], real_stats["min_class_share"],
                 real_stats["min_class_share_confident"], swd(real_train.decode(real_train.x[:len(real)]), real)])

    print(f"\n## digits quality: {step} steps, batch {config.train.batch_size}, "
          f"training wall time {train_seconds:.0f} s ({train_seconds / 60:.1f} min; budget 10 min on 2 CPU cores)\n")
    print(machine_lines())
    print(f"\nclassifier: RBF SVC (Platt probabilities) on the real training digits, held-out accuracy "
          f"{clf.score(real.reshape(len(real), -1), held_out.y):.3f}\n")
    print(markdown_table(["samples", f"share with conf >= {CONFIDENCE}", "smallest class share",
                          "smallest class share (confident)", "sliced W2 to held-out"], rows))
    t, u = results["trained"], results["untrained"]
    checks = {
        "confident >= 80%": t["confident"] >= 0.8,
        "every class >= 4%": t["min_class_share"] >= 0.04,
        "SWD >= 3x below untrained": u["swd"] >= 3.0 * t["swd"],
        "trained in <= 10 min": train_seconds <= 600,
    }
    print(f"\nclass shares of the trained model's samples: {t['class_shares']}")
    print(f"SWD ratio untrained / trained: {u['swd'] / t['swd']:.1f}")
    for name, ok in checks.items():
        print(f"- {name}: {'PASS' if ok else 'FAIL'}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
