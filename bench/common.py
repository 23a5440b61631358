"""Shared pieces of the benchmarks.

* ``machine`` / ``machine_lines``: what the numbers were measured on.
* ``time_call``: wall time of a call (warm-up, ``block_until_ready``, median of repeats);
  ``time_paired``: several calls timed in alternation.
* ``sample_errors``: each sample's RMS error relative to the reference batch's RMS (the time-parallel
  benchmarks' worst-sample measure); ``alone_runs``: each sample of a batch run time-parallel on its own.
* ``diffusers_methods``, ``diffusers_loop``: diffusers' schedulers as the peers, and their own
  sampling loop around any torch model.
* Re-exported from the library for the scripts: ``Reference``, ``endpoints``, ``rms``,
  ``solver_error`` (``samplers.accuracy``: a registered solver's RMS error against the exact
  probability-flow ODE solution) and ``Progress``, ``fmt``, ``markdown_table``,
  ``plot_error_vs_nfe`` (``train.report``: output).
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from importlib import metadata
from typing import Callable, Sequence

import jax
import numpy as np

from samplers.accuracy import Reference, endpoints, rms, solver_error  # noqa: F401 (re-exported)
from train.report import Progress, fmt, markdown_table, plot_error_vs_nfe  # noqa: F401 (re-exported)

# -- the machine ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    """CPU model and count, JAX backend and devices (GPU name when present), library versions."""
    devices = jax.devices()
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax_backend": jax.default_backend(),
        "jax_devices": ", ".join(f"{d.platform}:{d.device_kind}" for d in devices),
    }
    if jax.default_backend() == "gpu":
        info["gpu"] = devices[0].device_kind
    for pkg in ("jax", "jaxlib", "flax", "numpy", "torch", "diffusers"):
        info[pkg] = _version(pkg)
    if os.environ.get("XLA_FLAGS"):
        info["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    return info


def machine_lines() -> str:
    """``machine()`` as one markdown bullet line per item."""
    return "\n".join(f"- {k}: {v}" for k, v in machine().items())


# -- errors -----------------------------------------------------------------------


def sample_errors(out, ref) -> np.ndarray:
    """(B,) each sample's RMS error of ``out`` against ``ref`` (B, d), relative to the RMS of all of ``ref``."""
    out, ref = np.asarray(out), np.asarray(ref)
    return np.sqrt(np.mean((out - ref) ** 2, axis=1) / np.mean(ref ** 2))


def alone_runs(par, model_fn) -> Callable:
    """``jax.jit`` of ``jax.vmap`` over samples of one-sample ``parallel_sample`` runs of ``par`` (the latency
    case: each sample stops when its own test passes): ``(x (B, d), key, tol) -> (final x (B, d), rounds (B,))``,
    ``key`` and ``tol`` (None: ``par.tol``) shared by every sample."""
    from samplers.parallel import parallel_sample

    def one(xi, key, tol):
        out, stats = parallel_sample(par, model_fn, xi[None], key, tol)
        return out.x[0], stats.rounds

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


# -- timing -----------------------------------------------------------------------


def time_call(fn: Callable, *args, warmup: int = 2, repeats: int = 10,
              sync: Callable = jax.block_until_ready) -> float:
    """Median wall time (s) of ``sync(fn(*args))`` over ``repeats`` runs after ``warmup`` runs."""
    return time_paired([lambda: fn(*args)], repeats=repeats, warmup=warmup, sync=sync)[0]


def time_paired(fns: Sequence[Callable], repeats: int = 10, warmup: int = 2,
                sync: Callable = jax.block_until_ready) -> list[float]:
    """Median wall times (s) of several argument-free calls timed in alternation, one of each
    per round, so that clock and load drift fall alike on all of them (ratios stay fair)."""
    for _ in range(warmup):
        for fn in fns:
            sync(fn())
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            sync(fn())
            acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


# -- diffusers --------------------------------------------------------------------------


# the DDPM schedule the diffusers schedulers are built with (``samplers.schedules.vp_discrete`` default)
DDPM = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=2e-2, beta_schedule="linear")


def diffusers_methods() -> dict:
    """label -> (make(num_inference_steps), steps(nfe), sigma-space input?) for diffusers' schedulers
    (a fresh scheduler with its timesteps set, on ``device``; the steps that spend ``nfe`` model calls; whether its
    model input is x / alpha, as Euler's and Heun's, rather than the VP-scaled x)
    at their defaults, except: DDIM with ``trailing`` spacing (so that, like the others, it starts
    at t = 999) and without x0 clipping to [-1, 1]; the singlestep solver with ``lower_order_final``
    (what diffusers switches to anyway for a final step to sigma = 0)."""
    import diffusers as d

    def make(cls, **kw):
        def build(steps, device=None):
            s = cls(**DDPM, **kw)
            s.set_timesteps(steps, device=device)
            return s
        return build

    per_call = lambda nfe: nfe
    return {
        "DDIM": (make(d.DDIMScheduler, timestep_spacing="trailing", clip_sample=False), per_call, False),
        "Euler": (make(d.EulerDiscreteScheduler), per_call, True),
        "Heun": (make(d.HeunDiscreteScheduler), lambda nfe: (nfe + 1) // 2, True),
        "DPM-Solver++ 2M": (make(d.DPMSolverMultistepScheduler, solver_order=2), per_call, False),
        "DPM-Solver++ 3M": (make(d.DPMSolverMultistepScheduler, solver_order=3), per_call, False),
        "DPM-Solver++ 2S (singlestep)": (
            make(d.DPMSolverSinglestepScheduler, solver_order=2, lower_order_final=True), per_call, False),
        "UniPC bh2": (make(d.UniPCMultistepScheduler), per_call, False),
        "DEIS 2": (make(d.DEISMultistepScheduler, solver_order=2), per_call, False),
    }


def diffusers_loop(scheduler, model: Callable, x_T):
    """diffusers' pipeline loop: ``x = step(model(scale_model_input(x, t), t), t, x).prev_sample``."""
    x = x_T
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(x, t)
        x = scheduler.step(model(inp, t), t, x).prev_sample
    return x
