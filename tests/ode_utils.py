"""Shared measuring tools for the ODE solver tests: error against the exact PF-ODE
solution of a Gaussian mixture, and the fitted convergence order."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from models.analytic import random_mixture
from samplers.core import sample
from samplers.grids import time_grid
from samplers.reference import reference_sample
from samplers import schedules

GMM = random_mixture(dim=4, num_components=3, seed=1)


def toy_model(x, t):
    """A cheap smooth eps model (compiles faster than the mixture) for the non-accuracy tests."""
    return jnp.tanh(x) * (1.0 + 0.1 * t)


def start_noise(n: int = 32, dim: int = 4, seed: int = 0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, dim), jnp.float64)


@functools.lru_cache(maxsize=None)
def reference(schedule_name: str, t_start: float, t_end: float, final: str | None, n: int = 32):
    """Exact x_end for start noise ``start_noise(n)`` on the given endpoints (float64)."""
    sch = schedules.get_schedule(schedule_name)
    grid = time_grid(sch, 4, "uniform", t_start=t_start, t_end=t_end, final=final)
    x = start_noise(n) * (grid.alpha[0] ** 2 + grid.sigma[0] ** 2) ** 0.5
    return np.asarray(reference_sample(GMM.denoise, x, grid))


def rms_error(sampler, schedule, predicts: str, x, ref) -> tuple[float, int]:
    out = jax.jit(sample, static_argnums=(0, 1))(sampler, GMM.model_fn(schedule, predicts), x)
    return float(jnp.sqrt(jnp.mean((out.x - ref) ** 2))), int(out.nfe)


def convergence(build, schedule_name: str, steps_list, *, predicts: str = "eps", spacing: str = "logsnr",
                t_start: float | None = None, t_end: float | None = None, final: str | None = None, n: int = 32):
    """(nfe list, rms error list) of ``build(schedule, grid, predicts)`` over ``steps_list``; x64 must be on."""
    sch = schedules.get_schedule(schedule_name)
    t_start = sch.t_max if t_start is None else t_start
    t_end = sch.t_min if t_end is None else t_end
    ref = reference(schedule_name, t_start, t_end, final, n)
    nfes, errs = [], []
    for steps in steps_list:
        grid = time_grid(sch, steps, spacing, t_start=t_start, t_end=t_end, final=final)
        x = start_noise(n) * (grid.alpha[0] ** 2 + grid.sigma[0] ** 2) ** 0.5
        smp = build(sch, grid, predicts)
        err, nfe = rms_error(smp, sch, predicts, x, ref)
        assert nfe == smp.nfe, f"state counted {nfe} model calls, sampler.nfe says {smp.nfe}"
        nfes.append(nfe)
        errs.append(err)
    return np.array(nfes), np.array(errs)


def fitted_order(nfes, errs) -> float:
    """Least-squares slope of -log(err) against log(NFE)."""
    return float(-np.polyfit(np.log(nfes), np.log(errs), 1)[0])
