"""Annealed Langevin dynamics across the noise levels of a diffusion model (Song & Ermon 2019, Alg. 1).

For each level t_j of a time grid (noise first), ``steps_per_level`` unadjusted
Langevin steps target the noisy marginal p_{t_j}:

    x <- x + h_j score(x, t_j) + sqrt(2 h_j) z,   h_j = r sigma_j^2,

so h_j / sigma_j^2 is the same at every level (in x / alpha units the step is
r s_j^2 with s = sigma / alpha). Song & Ermon's alpha_i = eps sigma_i^2 / sigma_L^2
in x <- x + alpha_i/2 score + sqrt(alpha_i) z is r = eps / (2 sigma_L^2) on a VE
schedule. With ``denoise_final=True`` one last model call replaces x by the
Tweedie denoiser E[x_0 | x] at the last level (Jolicoeur-Martineau et al. 2021).
One model call a step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, basic_init, take
from samplers.grids import TimeGrid
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import check_model_output, native
from samplers.ode.common import check_grid
from samplers.param import convert
from samplers.schedules import Schedule


def annealed_langevin(schedule: Schedule, grid: TimeGrid, steps_per_level: int, step_scale: float,
                      predicts: str = "eps", denoise_final: bool = False) -> Sampler:
    """Annealed Langevin over every point of ``grid`` (which must keep sigma > 0:
    build it with ``final=None``); ``step_scale`` is r = h_j / sigma_j^2 (< 2 for stability)."""
    check_grid(grid)
    check_model_output(predicts)
    per = check_int("steps_per_level", steps_per_level)
    r = check_positive("step_scale", step_scale)
    if np.any(grid.sigma <= 0):
        raise ValueError("annealed_langevin needs sigma > 0 at every level of grid; build it with final=None")
    t_tab = np.repeat(grid.t, per)
    h_tab = np.repeat(r * grid.sigma**2, per)
    denoise = np.zeros(len(t_tab), bool)
    if denoise_final:
        t_tab, h_tab, denoise = np.append(t_tab, grid.t[-1]), np.append(h_tab, 0.0), np.append(denoise, True)
    n = len(t_tab)

    def step(state, key, model_fn):
        x, i, dt = state.x, state.i, state.x.dtype
        fn, kind = native(model_fn, predicts)
        t = take(t_tab, i, dt)
        out = fn(x, t)
        h = take(h_tab, i, dt)
        x_new = x + h * convert(out, x, t, schedule, kind, "score") + jnp.sqrt(2 * h) * jax.random.normal(
            key, x.shape, dt)
        if denoise_final:
            x_new = jnp.where(take(denoise, i, bool), convert(out, x, t, schedule, kind, "x0"), x_new)
        return BasicState(x=x_new, i=i + 1, nfe=state.nfe + 1)

    return Sampler(init=basic_init, step=step, num_steps=n, nfe=n)
