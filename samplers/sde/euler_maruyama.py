"""Euler-Maruyama for the reverse-time SDE (Song et al. 2021, eq. 6).

The forward process x_t = alpha(t) x_0 + sigma(t) eps is the SDE dx = f x dt + g dW with

    f = d log(alpha) / dt,   g^2 = d sigma^2 / dt - 2 f sigma^2 = -2 sigma^2 d lambda / dt,

and sampling integrates its reverse dx = [f x - g^2 score(x, t)] dt + g dW-bar from t_0 down to
t_N. With score = -eps / sigma one step (dt_i = t_{i+1} - t_i < 0) is

    x_{i+1} = (1 + f_i dt_i) x_i + (g_i^2 dt_i / sigma_i) eps_i + sqrt(-g_i^2 dt_i) z.

f and g^2 are exact derivatives of the schedule (forward-mode autodiff of its closed form,
in float64, once at build time). On a ``final="zero"`` grid the last step is the noise-free
Tweedie denoising x_N = x0(x_{N-1}) (Song et al.'s last-step noise removal).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, predictor
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule


def sde_coefficients(schedule: Schedule, t) -> tuple[np.ndarray, np.ndarray]:
    """(f, g^2) of the forward SDE at times ``t`` (float64 numpy)."""
    with jax.enable_x64(True):
        t = jnp.asarray(np.asarray(t, np.float64))
        ones = jnp.ones_like(t)
        _, dlog_alpha = jax.jvp(schedule.log_alpha, (t,), (ones,))
        _, dlam = jax.jvp(schedule.lambda_, (t,), (ones,))
        sigma = schedule.sigma(t)
        return np.asarray(dlog_alpha, np.float64), np.asarray(-2.0 * sigma**2 * dlam, np.float64)


def euler_maruyama(schedule: Schedule, grid: TimeGrid, predicts: str = "eps") -> Sampler:
    """Euler-Maruyama on the reverse SDE over ``grid``, one model call a step."""
    check_grid(grid)
    t, alpha, sigma = grid.t[:-1], grid.alpha[:-1], grid.sigma[:-1]
    f, g2 = sde_coefficients(schedule, t)
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g2)) and np.all(sigma > 0) and np.all(alpha > 0)):
        raise ValueError("euler_maruyama needs 0 < alpha, 0 < sigma and a finite drift and diffusion at every model "
                         f"time; the grid's times {t} reach a singular end of the {schedule.name} schedule "
                         "(start below it, e.g. t_start < 1 for flow)")
    dt = grid.t[1:] - t
    A, B, g = 1.0 + f * dt, g2 * dt / sigma, np.sqrt(np.maximum(-g2 * dt, 0.0))
    zero = grid.sigma[1:] == 0.0  # Tweedie step onto the data: x0 = (x - sigma eps) / alpha
    A, B, g = np.where(zero, 1.0 / alpha, A), np.where(zero, -sigma / alpha, B), np.where(zero, 0.0, g)
    return linear_multistep(grid, predictor(schedule, predicts, "eps"), A, B[:, None], noise=g)
