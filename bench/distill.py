"""Few-step students of train.distill against their teacher's own solvers at equal NFE, and their cost.

Two parts, each one markdown table and one PNG plot (quality against NFE = 1, 2, 4, 8):

* ``mixture``: the exact 2-D Gaussian mixture of configs/distill_gmm_cd.py as the teacher
  (``distill.teacher="analytic"``; nothing to train). Students: CD, CT, iCT, multistep CD (2
  segments) from configs/distill_gmm_cd.py and the shortcut model of configs/distill_gmm_shortcut.py;
  teachers: the exact mixture sampled with DPM-Solver++(2M) and UniPC on the EDM schedule
  (``train.distill.quality``). Metrics: sliced Wasserstein-2 to held-out draws and the gap of the
  exact mean log-likelihood to the held-out draws' (``quality.scores``).
* ``digits``: the teacher is configs/digits.py trained here (what ``make run`` trains); the students
  are configs/distill_digits_{cd,ct,ict,mcd,shortcut}.py (the CD / multistep-CD students distil
  that teacher). Rows: the teacher's DPM-Solver++(2M) and UniPC at 1, 2, 4, 8 NFE and its
  DPM-Solver++(2M) at 20 NFE (the reference). Metrics: sliced Wasserstein-2 to the held-out digits
  and the fraction the digits classifier of bench/digits_quality.py labels with confidence >= 0.8.
  The issue's goal: the best 2-step student within 1.2x of the teacher's DPM-Solver++(2M)@20 in
  sliced Wasserstein, the best 1-step student within 1.5x -- printed as met / not met.

A third part, ``pcm``, is not about few-step quality: the Picard consistency model of
configs/distill_gmm_pcm.py (``train.distill.pcm``) against sequential DDIM 50, plain Picard and Picard with
the tangent slope in rounds of time-parallel sampling at the default tolerance (``pcm_part``; ``--parts pcm``).

Any other registered method (``train.distill.names()``, e.g. SFD and LSD) with a config
configs/distill_<part>_<method>.py is added as a row labelled by that config's ``distill.method``,
sampled with its config's first sampler at the NFEs of (1, 2, 4, 8) that config lists.

Every cell is the mean over ``SEEDS`` independent noise draws (common to all rows) with the worst
draw in brackets. Cost: train steps per second of each method's jitted train step (its batch,
its network, its teacher calls), timed in alternation with the plain denoiser train step of the
same network and data (for digits: the teacher's own, configs/digits.py), as a ratio.

Trained workdirs are cached under ``--workdir`` (a rerun resumes / reuses them; ``--quick`` runs
use their own subfolder). Every knob is fixed below; ``--quick`` is the mixture part with short
training (``QUICK_STEPS``) and one noise draw.

    python bench/distill.py [--quick] [--workdir workdir/distill_bench] [--parts mixture,digits] [--only lsd_plus]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (alone_runs, machine_lines, markdown_table, sample_errors, time_call,  # noqa: E402
                          time_paired)
from train import distill, jobs  # noqa: E402
from train.config import build_network, build_objective, validate  # noqa: E402
from train.loop import as_method, bind_step, has_leaves, keys, read_metrics  # noqa: E402
from train.optim import make_optimizer  # noqa: E402

NFES = (1, 2, 4, 8)
TEACHER_SOLVERS = ("dpm_solver_pp_2m", "unipc")
REFERENCE = ("dpm_solver_pp_2m", 20)  # the digits teacher's reference row
GOALS = {2: 1.2, 1: 1.5}  # best k-step student's SW within this factor of the reference's
SEEDS = 3  # independent noise draws per cell (mean and worst reported)
MIXTURE_SAMPLES = 4000
DIGITS_SAMPLES = 1000
QUICK_STEPS = 600
TIMING_REPEATS = 30
PARTS = ("mixture", "digits", "pcm")


class Student(NamedTuple):
    label: str
    config: Callable  # () -> ConfigDict
    sampler: str
    nfes: tuple[int, ...]


def _config_file(part: str, name: str):
    """``get_config`` of configs/distill_<part>_<name>.py, or None if there is no such file."""
    path = ROOT / "configs" / f"distill_{'gmm' if part == 'mixture' else part}_{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"configs.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config


def _from_config(label: str, get_config: Callable) -> Student:
    c = get_config()
    names = c.sampler.name if isinstance(c.sampler.name, (tuple, list)) else (c.sampler.name,)
    nfes = c.sampler.nfe if isinstance(c.sampler.nfe, (tuple, list)) else (c.sampler.nfe,)
    return Student(label, get_config, names[0], tuple(n for n in NFES if n in nfes))


def _gmm_variant(method: str, kwargs: dict, sampler: str = "consistency", spacing=None) -> Callable:
    """configs/distill_gmm_cd.py with another consistency method (ct / ict: no teacher) or kwargs."""
    def get_config():
        from configs import distill_gmm_cd

        c = distill_gmm_cd.get_config()
        c.distill.method, c.distill.kwargs = method, kwargs
        if method != "cd":
            c.distill.teacher = ""
        c.sampler.name, c.sampler.spacing = (sampler,), spacing
        return c

    return get_config


def students(part: str) -> list[Student]:
    """The students of ``part``: the built-in methods, then any other registered method with a config file."""
    if part == "mixture":
        from configs import distill_gmm_cd, distill_gmm_shortcut

        out = [Student("cd", distill_gmm_cd.get_config, "consistency", NFES),
               Student("ct", _gmm_variant("ct", dict(sigma_data=1.0)), "consistency", NFES),
               Student("ict", _gmm_variant("ict", dict(s1=320, sigma_data=1.0)), "consistency", NFES),
               Student("mcd (2 segments)", _gmm_variant("cd", dict(num_points=17, segments=2, sigma_data=1.0),
                                                        "ddim", "karras"), "ddim", (2, 4, 8)),
               Student("shortcut", distill_gmm_shortcut.get_config, "shortcut", NFES)]
    else:
        out = [_from_config(name, _config_file(part, name)) for name in ("cd", "ct", "ict", "shortcut")]
        mcd = _config_file(part, "mcd")
        out.insert(3, _from_config(f"mcd ({mcd().distill.kwargs.segments} segments)", mcd))
    for name in distill.names():  # labelled by the config's method (configs/distill_gmm_lsd.py runs lsd_plus)
        if name not in ("cd", "ct", "ict", "shortcut", "pcm") and (get_config := _config_file(part, name)) is not None:
            c = get_config()
            method = c.distill.method
            if method not in [s.label.split()[0] for s in out]:  # and its LSD base (workdir: the method's name)
                base = c.distill.kwargs.get("base")
                out.append(_from_config(f"{method} ({base})" if base else method, get_config))
    return out


# -- training and its cost ---------------------------------------------------------------------------------

def train_cached(config, workdir: str) -> str:
    """Train ``config`` in ``workdir`` (resumed / reused if there): its wall time, "cached" if it was done."""
    records = read_metrics(workdir) if os.path.isdir(workdir) else []
    if records and records[-1]["step"] >= config.train.num_steps:
        return "cached"
    t0 = time.perf_counter()
    jobs.train(config, workdir)
    return f"{time.perf_counter() - t0:.0f} s"


def step_fn(config) -> Callable:
    """An argument-free call of the jitted train step of ``config`` (its method, or plain denoising)."""
    config = validate(config)
    network = build_network(config)
    method = jobs.distill_method(config, network) or as_method(build_objective(config))
    tx, _ = make_optimizer(config.train)
    init_key, train_key = keys(config.seed)
    state = method.init_state(network, tx, init_key)
    step = jax.jit(bind_step(method.train_step(network, tx, config.train.ema_decay), train_key, method.frozen))
    batch = jnp.asarray(jobs.make_batches(config)(0))
    frozen = method.frozen
    if has_leaves(frozen):
        return lambda: step(state, batch, frozen)
    return lambda: step(state, batch)


def step_rates(reference_config, configs: dict) -> dict:
    """Train steps / second of ``reference_config`` (key None) and of each of ``configs``, timed in alternation."""
    labels = [None] + list(configs)
    fns = [step_fn(reference_config)] + [step_fn(c) for c in configs.values()]
    seconds = time_paired(fns, repeats=TIMING_REPEATS)
    return {label: 1.0 / s for label, s in zip(labels, seconds)}


# -- sampling --------------------------------------------------------------------------------------------

def summary(values) -> tuple[float, float]:
    return float(np.mean(values)), float(np.max(values))


def mixture_rows(config_of: dict, workdirs: dict, seeds: int, num_samples: int, students_: list[Student]) -> dict:
    """{(row label, nfe): {"swd": [...], "log_lik_gap": [...]}} for teachers and students, one value per seed."""
    from train.data import load, mixture_of
    from train.distill import quality

    base = validate(config_of[students_[0].label])
    gmm = mixture_of(base.data.kwargs)
    reference = load("gmm", "test", **{**dict(base.data.kwargs), "n": num_samples}).x
    dim = reference.shape[1]
    draws = [(jax.random.normal(jax.random.PRNGKey(100 + s), (num_samples, dim)), jax.random.PRNGKey(200 + s))
             for s in range(seeds)]
    k_swd = jax.random.PRNGKey(3)
    runs = {}
    for solver in TEACHER_SOLVERS:
        for n in NFES:
            runs[(f"teacher {solver}", n)] = quality.teacher_sampler(gmm, solver, n)
    for st in students_:
        config = validate(config_of[st.label])
        network = build_network(config)
        params, _ = jobs.load_params(config, workdirs[st.label])
        for n in st.nfes:
            runs[(st.label, n)] = quality.student_sampler(config, network, params, st.sampler, n)
    out = {}
    for key, run in runs.items():
        scores = [quality.scores(gmm, run(z, k), reference, k_swd) for z, k in draws]
        out[key] = {m: [s[m] for s in scores] for m in ("swd", "log_lik_gap")}
    return out


def digits_rows(teacher_config, teacher_dir: str, config_of: dict, workdirs: dict, seeds: int, num_samples: int,
                students_: list[Student]) -> dict:
    """{(row label, nfe): {"swd": [...], "confident": [...]}} for the digits teacher and students."""
    from bench.digits_quality import classifier, label_stats, swd
    from train import data as data_lib
    from train import distributed

    mesh = distributed.make_mesh()
    held_out = data_lib.load_digits("test")
    real = held_out.decode(held_out.x)
    clf = classifier()

    def score(config, workdir, pairs):
        config = validate(config)
        network = build_network(config)
        params, _ = jobs.load_params(config, workdir, mesh)
        res = {p: {"swd": [], "confident": []} for p in pairs}
        for s in range(seeds):
            config.seed = s  # the generator's noise (the same for every row)
            gen = jobs.generator(config, network, params, mesh)
            for name, n in pairs:
                x, used = gen(name, n, num_samples)
                if used != n:
                    raise RuntimeError(f"{name} spent {used} model calls, not {n}")
                res[(name, n)]["swd"].append(swd(np.clip(x, -1.0, 1.0), real))
                res[(name, n)]["confident"].append(label_stats(clf, x)["confident"])
        return res

    out = {}
    pairs = [(s, n) for s in TEACHER_SOLVERS for n in NFES] + [REFERENCE]
    for (name, n), v in score(teacher_config, teacher_dir, pairs).items():
        out[(f"teacher {name}", n)] = v
    for st in students_:
        for (_, n), v in score(config_of[st.label], workdirs[st.label], [(st.sampler, n) for n in st.nfes]).items():
            out[(st.label, n)] = v
    return out


# -- output ------------------------------------------------------------------------------------------------

def table(rows: dict, metrics: dict, nfes=NFES, extra_rate: dict | None = None) -> str:
    """One markdown table: a row per (method, metric), NFE columns, cells "mean (worst)";
    ``metrics[name] = (header, worst_is_max)``; ``extra_rate[label]``: the cost column."""
    labels = list(dict.fromkeys(label for label, _ in rows))
    headers = (["method", "metric"] + [f"NFE {n}" for n in nfes]
               + (["train steps/s (x teacher's)"] if extra_rate else []))
    body = []
    for label in labels:
        for m, (header, worst_is_max) in metrics.items():
            cells = []
            for n in nfes:
                v = rows.get((label, n))
                if v is None:
                    cells.append(None)
                    continue
                mean, worst = float(np.mean(v[m])), float(np.max(v[m]) if worst_is_max else np.min(v[m]))
                cells.append(f"{mean:.3g} ({worst:.3g})" if len(v[m]) > 1 else f"{mean:.3g}")
            rate = [extra_rate.get(label) if m == next(iter(metrics)) else None] if extra_rate else []
            body.append([label, header] + cells + rate)
    others = sorted({n for _, n in rows} - set(nfes))
    for n in others:  # the reference rows (e.g. the teacher at 20 NFE) as their own lines
        for label in labels:
            if (label, n) in rows:
                for m, (header, worst_is_max) in metrics.items():
                    v = rows[(label, n)][m]
                    worst = np.max(v) if worst_is_max else np.min(v)
                    body.append([f"{label} @ NFE {n}", header, f"{np.mean(v):.3g} ({worst:.3g})"]
                                + [None] * (len(nfes) - 1) + ([None] if extra_rate else []))
    return markdown_table(headers, body)


def goal_lines(rows: dict, student_labels: list[str]) -> list[str]:
    """The issue's goal on digits: best k-step student's mean SW vs GOALS[k] x the reference's, met / not met."""
    ref_label = (f"teacher {REFERENCE[0]}", REFERENCE[1])
    ref = float(np.mean(rows[ref_label]["swd"]))
    lines = []
    for k, factor in sorted(GOALS.items(), reverse=True):
        cand = {s: float(np.mean(rows[(s, k)]["swd"])) for s in student_labels if (s, k) in rows}
        if not cand:
            lines.append(f"- {k}-step: no student samples with {k} steps: not met")
            continue
        best = min(cand, key=cand.get)
        ratio, worst = cand[best] / ref, float(np.max(rows[(best, k)]["swd"])) / ref
        lines.append(f"- best {k}-step student {best}: SW {cand[best]:.4g} = {ratio:.2f}x the teacher's "
                     f"{REFERENCE[0]}@{REFERENCE[1]} ({ref:.4g}; worst draw {worst:.2f}x); goal <= {factor}x "
                     f"(on the mean): {'met' if ratio <= factor else 'not met'}")
    return lines


def plot(rows: dict, metrics: dict, path: str, title: str, reference: tuple | None = None) -> None:
    """Quality against NFE, one panel per metric; teachers dashed; ``reference`` (label, nfe) a grey line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5))
    labels = list(dict.fromkeys(label for label, _ in rows))
    for ax, (m, (header, _)) in zip(np.atleast_1d(axes), metrics.items()):
        for label in labels:
            pts = sorted((n, float(np.mean(v[m]))) for (lb, n), v in rows.items() if lb == label and n in NFES)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "--" if label.startswith("teacher") else "-",
                        marker="o", ms=4, label=label)
        if reference is not None and reference in rows:
            value = float(np.mean(rows[reference][m]))
            ax.axhline(value, color="grey", lw=1, label=f"{reference[0]} @ NFE {reference[1]}")
            if m == "swd":
                for k, factor in GOALS.items():
                    ax.axhline(factor * value, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(NFES), [str(n) for n in NFES])
        ax.set_xlabel("NFE (model calls)")
        ax.set_ylabel(header)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the parts ---------------------------------------------------------------------------------------------

def run_part(part: str, root: str, seeds: int, num_samples: int, steps: int | None = None,
             only: tuple[str, ...] = (), suffix: str = "") -> str:
    """Train (or reuse) every student of ``part`` under ``root`` (``steps``: train steps instead of the
    configs'; ``only``: the students whose label starts with one of these), score it, time it; the part's
    markdown (its plot: distill_<part><suffix>.png)."""
    studs = [s for s in students(part) if not only or s.label.split()[0] in only]
    config_of, workdirs, train_s = {}, {}, {}
    teacher_config = teacher_dir = None
    if part == "digits":
        from configs import digits

        teacher_config, teacher_dir = digits.get_config(), os.path.join(root, "digits_teacher")
        train_s["teacher (configs/digits.py)"] = train_cached(teacher_config, teacher_dir)
    for st in studs:
        c = st.config()
        if steps is not None:
            c.train.num_steps, c.train.checkpoint_every = steps, steps
            c.train.warmup_steps = min(c.train.warmup_steps, steps)
            c.train.log_every = min(c.train.log_every, steps)
        if part == "digits" and c.distill.teacher not in ("", "analytic"):
            c.distill.teacher = teacher_dir
        c.mode = "distill"
        config_of[st.label] = c
        workdirs[st.label] = os.path.join(root, f"{part}_{st.label.split()[0]}")
        train_s[st.label] = train_cached(c, workdirs[st.label])
    if part == "mixture":
        reference_config = validate(students(part)[0].config())  # the CD student's network, also with --only
        reference_config.distill.method, reference_config.distill.teacher = "", ""
        reference_config.distill.kwargs, reference_config.mode = {}, "train"
        reference_config.train.loss.precond = "edm"  # the denoiser a trained mixture teacher would be
        rows = mixture_rows(config_of, workdirs, seeds, num_samples, studs)
        metrics = {"swd": ("sliced W2", True), "log_lik_gap": ("log-lik gap (abs)", True)}
    else:
        reference_config = teacher_config
        rows = digits_rows(teacher_config, teacher_dir, config_of, workdirs, seeds, num_samples, studs)
        metrics = {"swd": ("sliced W2", True), "confident": ("confident fraction", False)}
    rates = step_rates(reference_config, {s.label: config_of[s.label] for s in studs})
    rel = {label: f"{r:.0f} ({r / rates[None]:.2f}x)" for label, r in rates.items() if label is not None}
    rel.update({f"teacher {s}": f"{rates[None]:.0f} (1x)" for s in TEACHER_SOLVERS})
    md = table(rows, metrics, extra_rate=rel)
    what = ("exact 2-D Gaussian mixture teacher (4 modes)" if part == "mixture"
            else "digits teacher configs/digits.py")
    title = (f"{part}: {what}; {num_samples} samples x {seeds} noise draws; cells: mean (worst draw)"
             + (f"; {steps} train steps (--quick)" if steps is not None else ""))
    png = os.path.join(root, f"distill_{part}{suffix}.png")
    plot(rows, metrics, png, title, (f"teacher {REFERENCE[0]}", REFERENCE[1]) if part == "digits" else None)
    lines = [f"## {title}", "", md, ""]
    if part == "mixture":
        lines.append("The mixture teacher's train step: the plain EDM-preconditioned denoiser step of the CD "
                     "student's network (the analytic teacher itself is not trained).")
    else:
        lines += goal_lines(rows, [s.label for s in studs])
    lines += ["", "train wall time (with compilation): " + ", ".join(f"{k} {v}" for k, v in train_s.items()),
              f"plot: {png}", ""]
    return "\n".join(lines)


# -- the PCM part: time-parallel rounds, not few-step quality ---------------------------------------------

PCM_SAMPLES = 128  # samples per noise draw of the PCM part
PCM_TOLS = (0.3, 0.1)  # 0.1: plain Picard's default for ODE samplers (picard.DEFAULT_TOL); 0.3: its default before


def pcm_part(root: str, seeds: int, steps: int | None = None) -> str:
    """The Picard consistency model (configs/distill_gmm_pcm.py, ``train.distill.pcm``): rounds, error and wall
    time of the base DDIM (50 steps) run sequentially, by plain Picard, Picard with the tangent slope, Picard
    with the untrained PCM's switch (the control: the base itself) and with the trained PCM's, with window = 50
    at each of ``PCM_TOLS``. Two regimes: a batch of ``PCM_SAMPLES``
    per run (its rounds: the worst sample's) and every sample run alone (one-sample latency; ``jax.vmap`` of
    one-sample runs), mean over samples. Errors relative to the sequential run's RMS, the worst sample of all
    draws beside the RMS over all samples."""
    from configs import distill_gmm_pcm
    from samplers.core import sample
    from samplers.parallel import parallel_sample
    from train.distill import pcm

    c = distill_gmm_pcm.get_config()
    if steps is not None:
        c.train.num_steps, c.train.checkpoint_every = steps, steps
    workdir = os.path.join(root, "pcm")
    train_s = train_cached(c, workdir)
    c = validate(c)
    network = build_network(c)
    params, _ = jobs.load_params(c, workdir)
    method = distill.method_of(c, network)
    fresh = method.init_state(network, make_optimizer(c.train)[0], jax.random.PRNGKey(0)).params
    par, base = pcm.parallel_of(c, network, params, method.teacher)
    par0, _ = pcm.parallel_of(c, network, fresh, method.teacher)
    plain = par._replace(switch=None)
    methods = {"plain Picard": plain, "Picard + tangent slope": plain._replace(slope="tangent"),
               "PCM + switching, untrained (control)": par0, "PCM + switching": par}
    seq = jax.jit(sample, static_argnums=(0, 1))
    batch_run = jax.jit(parallel_sample, static_argnums=(0, 1))
    dim, n = network.event_shape[0], par.sampler.num_steps
    draws = [jax.random.normal(jax.random.PRNGKey(300 + s), (PCM_SAMPLES, dim)) for s in range(seeds)]
    refs = [seq(par.sampler, base, x).x for x in draws]
    seq_wall = time_call(seq, par.sampler, base, draws[0], repeats=TIMING_REPEATS)
    headers = ["method", "tol", "batch: rounds mean (max)", "batch: worst / RMS rel err", "alone: mean rounds",
               "alone: max rounds", "alone: worst / RMS rel err", "plain's mean rounds / mean rounds (alone)",
               "batch wall ms (draw 0) / sequential's"]
    table_rows = [["sequential", "-", f"{n} ({n})", "0 / 0", f"{n}", f"{n}", "0 / 0", "-",
                   f"{1e3 * seq_wall:.1f} / 1.00"]]
    plain_alone, alone_means = {}, {}
    for tol in PCM_TOLS:
        for label, p in methods.items():
            outs = [batch_run(p, base, x, None, tol) for x in draws]
            err_b = np.concatenate([sample_errors(o.x, r) for (o, _), r in zip(outs, refs)])
            rounds_b = [int(st.rounds) for _, st in outs]
            alone = alone_runs(p, base)
            res = [alone(x, None, tol) for x in draws]
            err_a = np.concatenate([sample_errors(o, r) for (o, _), r in zip(res, refs)])
            rounds_a = np.concatenate([np.asarray(rd) for _, rd in res])
            if label == "plain Picard":
                plain_alone[tol] = rounds_a.mean()
            alone_means[(label, tol)] = rounds_a.mean()
            wall = time_call(batch_run, p, base, draws[0], None, tol, repeats=TIMING_REPEATS)
            rms = lambda e: float(np.sqrt(np.mean(e**2)))
            table_rows.append([label, f"{tol:g}", f"{np.mean(rounds_b):.1f} ({max(rounds_b)})",
                               f"{err_b.max():.1e} / {rms(err_b):.1e}", f"{rounds_a.mean():.2f}", f"{rounds_a.max()}",
                               f"{err_a.max():.1e} / {rms(err_a):.1e}", f"{plain_alone[tol] / rounds_a.mean():.2f}",
                               f"{1e3 * wall:.1f} / {wall / seq_wall:.2f}"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = os.path.join(root, "distill_pcm.png")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for j, tol in enumerate(PCM_TOLS):
        ax.bar(np.arange(len(methods)) + 0.4 * j, [alone_means[(label, tol)] for label in methods], 0.4,
               label=f"tol {tol:g}")
    names = [label.replace(" + ", "\n+ ").replace(", ", ",\n") for label in methods]
    ax.set_xticks(np.arange(len(methods)) + 0.2, names, fontsize=7)
    ax.set_ylabel("mean rounds, each sample alone")
    ax.set_title(f"DDIM {n} steps, 8-D mixture, window {n}; {seeds} x {PCM_SAMPLES} samples", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    title = (f"pcm: PCM of the exact 8-D mixture (configs/distill_gmm_pcm.py, {c.train.num_steps} train steps), "
             f"base DDIM {n} steps, window {n}, switch_rounds {len(par.switch.lambdas)}, "
             f"tol {' and '.join(map(str, PCM_TOLS))} (the default: {par.tol}); {seeds} noise draws x "
             f"{PCM_SAMPLES} samples")
    return "\n".join([f"## {title}", "", markdown_table(headers, table_rows), "",
                      "Rounds are sequential batched model-call rounds (the latency on parallel hardware); a PCM "
                      "round evaluates the base and the residual MLP. 'batch': one run of all samples (its rounds "
                      "are the slowest sample's); 'alone': each sample its own run. Wall times are of this CPU, "
                      "where a round's window points cost about as many sequential steps: overhead, not speed-up.",
                      f"train wall time (with compilation): {train_s}", f"plot: {png}", ""])


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"mixture only, {QUICK_STEPS} train steps, one noise draw")
    p.add_argument("--workdir", default="workdir/distill_bench", help="cache of the trained workdirs and outputs")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated among " + ",".join(PARTS))
    p.add_argument("--only", default="", help="comma-separated students (label's first word, e.g. lsd_plus): "
                                              "rerun only their rows beside the teachers'")
    args = p.parse_args(argv)
    parts = ("mixture",) if args.quick else tuple(x for x in args.parts.split(",") if x)
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"--parts entries must be among {list(PARTS)}, got {part!r}")
    root = os.path.join(args.workdir, "quick") if args.quick else args.workdir
    only = tuple(x for x in args.only.split(",") if x)
    suffix = "".join("_" + o for o in only)  # a partial rerun writes beside the full run's table and plots
    os.makedirs(root, exist_ok=True)
    out = [f"# Distilled students vs their teachers (bench/distill.py{' --quick' if args.quick else ''})", "",
           machine_lines(), f"- load average at start (1/5/15 min): {os.getloadavg()}", ""]
    print("\n".join(out), flush=True)
    for part in parts:
        t0 = time.perf_counter()
        seeds = 1 if args.quick else SEEDS
        n = MIXTURE_SAMPLES if part == "mixture" else DIGITS_SAMPLES
        if part == "pcm":  # not a few-step student: the rounds of time-parallel sampling (pcm_part)
            md = pcm_part(root, seeds, QUICK_STEPS if args.quick else None)
        else:
            md = run_part(part, root, seeds, n, QUICK_STEPS if args.quick else None, only, suffix)
        md += f"part wall time {time.perf_counter() - t0:.0f} s\n"
        print(md, flush=True)
        out.append(md)
    text = "\n".join(out)
    md_path = os.path.join(root, f"distill{suffix}.md")
    with open(md_path, "w") as f:
        f.write(text)
    print(f"wrote {md_path}")
    return text


if __name__ == "__main__":
    main()
