"""Shared pieces of the benchmarks and of ``launch.py``'s Gaussian-mixture job.

* ``machine`` / ``machine_lines``: what the numbers were measured on.
* ``markdown_table``, ``Progress``: output.
* ``time_call``: wall time of a call (warm-up, ``block_until_ready``, median of repeats).
* ``Reference``, ``solver_error``: a registered solver's RMS error
  against the exact probability-flow ODE solution (``samplers.reference``, float64)
  from the same start noise to the same end point.
* ``diffusers_methods``, ``diffusers_loop``: diffusers' schedulers as the peers, and their own
  sampling loop around any torch model.
* ``plot_error_vs_nfe``: the log-log convergence plot.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from importlib import metadata
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from samplers import registry
from samplers.core import sample
from samplers.grids import TimeGrid
from samplers.reference import solve_pf_ode
from samplers.schedules import Schedule

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
    return info


def machine_lines() -> str:
    """``machine()`` as one markdown bullet line per item."""
    return "\n".join(f"- {k}: {v}" for k, v in machine().items())


# -- output -----------------------------------------------------------------------


def fmt(value, digits: int = 3) -> str:
    """A table cell: floats in 3 significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-markdown table with right-aligned columns after the first."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


class Progress:
    """A log line per finished item: count, percentage, rate and ETA (no tqdm needed)."""

    def __init__(self, total: int, label: str = "", stream=None):
        self.total, self.label, self.done = total, label, 0
        self.start = time.perf_counter()
        self.stream = stream or sys.stderr

    def update(self, note: str = "", n: int = 1) -> None:
        self.done += n
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        width = len(str(self.total))
        print(f"{self.label}[{self.done:>{width}}/{self.total}] {100 * self.done / self.total:3.0f}% "
              f"{rate:.2f}/s elapsed {elapsed:.1f}s ETA {eta:.1f}s  {note}", file=self.stream, flush=True)


# -- timing -----------------------------------------------------------------------


def time_call(fn: Callable, *args, warmup: int = 2, repeats: int = 10,
              sync: Callable = jax.block_until_ready) -> float:
    """Median wall time (s) of ``sync(fn(*args))`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        sync(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- accuracy against the exact PF-ODE solution ---------------------------------------


def endpoints(grid: TimeGrid) -> tuple[float, float, float, float]:
    return float(grid.alpha[0]), float(grid.sigma[0]), float(grid.alpha[-1]), float(grid.sigma[-1])


class Reference:
    """Exact PF-ODE solutions of ``denoise`` from fixed standard-normal noise ``z``, cached by end points.

    The start is x = sqrt(alpha_0^2 + sigma_0^2) z (the marginal scale at the first grid point);
    the solve runs in float64 (``jax.enable_x64``) at tolerance ``tol``.
    """

    def __init__(self, denoise: Callable, z: np.ndarray, tol: float = 1e-9):
        self.denoise, self.z, self.tol = denoise, np.asarray(z, np.float64), tol
        self._cache: dict = {}

    def start(self, alpha0: float, sigma0: float) -> np.ndarray:
        return float(np.hypot(alpha0, sigma0)) * self.z

    def __call__(self, alpha0: float, sigma0: float, alpha1: float, sigma1: float) -> np.ndarray:
        key = tuple(round(v, 12) for v in (alpha0, sigma0, alpha1, sigma1))
        if key not in self._cache:
            with jax.enable_x64(True):
                x = jnp.asarray(self.start(alpha0, sigma0), jnp.float64)
                out = solve_pf_ode(self.denoise, x, alpha0, sigma0, alpha1, sigma1, rtol=self.tol, atol=self.tol)
                self._cache[key] = np.asarray(out)
        return self._cache[key]


def rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


_sample_jit = jax.jit(sample, static_argnums=(0, 1))


def solver_error(name: str, schedule: Schedule, nfe: int, model_fn: Callable, ref: Reference, *,
                 predicts: str = "eps", spacing: str | None = None, final: str | None = None,
                 dtype=jnp.float32, **options) -> dict:
    """Build registered solver ``name`` for ``nfe`` calls, run it from the reference's noise and
    return {"samples", "nfe" (calls actually made), "rms" (vs the exact solution), "seconds" (compile + run)}."""
    sampler = registry.build(name, schedule, nfe, predicts, spacing=spacing, final=final, **options)
    a0, s0, a1, s1 = endpoints(registry.grid(name, schedule, nfe, spacing=spacing, final=final))
    x = jnp.asarray(ref.start(a0, s0), dtype)
    t0 = time.perf_counter()
    out = jax.block_until_ready(_sample_jit(sampler, model_fn, x))
    seconds = time.perf_counter() - t0
    return {"samples": np.asarray(out.x), "nfe": int(out.nfe), "rms": rms(out.x, ref(a0, s0, a1, s1)),
            "seconds": seconds}


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


# -- plots --------------------------------------------------------------------------------


def plot_error_vs_nfe(curves: dict, path: str, title: str = "", dashed: Callable[[str], bool] = lambda label: False
                      ) -> None:
    """Log-log plot of RMS error against NFE; ``curves[label] = (nfes, errors)``; ``dashed(label)``
    picks the curves drawn dashed (e.g. a peer library's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = plt.get_cmap("tab20").colors
    for i, (label, (nfes, errs)) in enumerate(curves.items()):
        nfes, errs = np.asarray(nfes, float), np.asarray(errs, float)
        ok = np.isfinite(errs) & (errs > 0)
        if ok.any():
            ax.loglog(nfes[ok], errs[ok], "--" if dashed(label) else "-", color=colors[i % len(colors)],
                      marker="o", ms=3, label=label)
    ax.set_xlabel("NFE (model calls)")
    ax.set_ylabel("RMS error vs exact PF-ODE solution")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
