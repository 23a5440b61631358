"""A registered solver's error against the exact probability-flow ODE solution.

``Reference`` solves the PF-ODE of an exact denoiser (``models.analytic``) from fixed noise in
float64 at a tight tolerance (``samplers.reference.solve_pf_ode``, cached by end points);
``solver_error`` runs a solver of ``samplers.registry`` from the same noise to the same end
point of its own time grid (``endpoints``) and returns its RMS error (``rms``).
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers import registry
from samplers.core import sample
from samplers.grids import TimeGrid
from samplers.reference import solve_pf_ode
from samplers.schedules import Schedule


def endpoints(grid: TimeGrid) -> tuple[float, float, float, float]:
    """(alpha, sigma) at the first and at the last point of ``grid``."""
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
    """Root mean square of ``a - b`` over every entry, in float64."""
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
