"""Predictor-corrector sampling (Song et al. 2021, Alg. 2-3 and 4-5).

Step i runs ``n_corrector`` Langevin corrector steps at t_i, each with a fresh score
g = score(x, t_i) and z ~ N(0, I),

    x <- x + e g + sqrt(2 e) z,   e = 2 a_i (snr ||z|| / ||g||)^2,

(norms: per-sample L2 norms averaged over the batch, as in Song et al.'s code;
a_i = (alpha_i / alpha_{i+1})^2, i.e. 1 - beta_i for VP and 1 for VE), then one predictor step
from t_i to t_{i+1}: DDPM ``"ancestral"`` sampling or the ``"reverse_diffusion"`` predictor,
the reverse of the forward step x_t = a x_s + G w (a = alpha_t / alpha_s, G^2 = sigma_t^2 - a^2 sigma_s^2):

    x_s = (2 - a) x_t + G^2 score(x_t, t) + G z,

whose last step onto sigma = 0 is the noise-free Tweedie denoising x0(x_t).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import Sampler, take
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid
from samplers.ode.common import predictor as space_predictor
from samplers.ode.multistep import linear_multistep
from samplers.param import as_prediction
from samplers.schedules import Schedule
from samplers.sde.ancestral import ddpm

PREDICTORS = ("ancestral", "reverse_diffusion")


def reverse_diffusion(schedule: Schedule, grid: TimeGrid, predicts: str = "eps") -> Sampler:
    """Song et al.'s reverse-diffusion predictor as a sampler, one model call a step."""
    check_grid(grid)
    a_t, s_t, l_t = grid.alpha[:-1], grid.sigma[:-1], grid.lam[:-1]
    a_s, l_s = grid.alpha[1:], grid.lam[1:]
    with np.errstate(over="ignore"):
        g2 = -(s_t**2) * np.expm1(-2.0 * (l_s - l_t))  # sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2
    a = a_t / a_s
    A, B, g = 2.0 - a, -g2 / s_t, np.sqrt(g2)  # score = -eps / sigma_t
    zero = grid.sigma[1:] == 0.0
    A, B, g = np.where(zero, 1.0 / a_t, A), np.where(zero, -s_t / a_t, B), np.where(zero, 0.0, g)
    return linear_multistep(grid, space_predictor(schedule, predicts, "eps"), A, B[:, None], noise=g)


def langevin_corrector(base: Sampler, schedule: Schedule, grid: TimeGrid, predicts: str, snr: float,
                       n_corrector: int) -> Sampler:
    """Wrap ``base`` (a sampler stepping through ``grid``) with ``n_corrector`` Langevin steps at
    signal-to-noise ratio ``snr`` before each of its steps."""
    t = grid.t[:-1]
    scale = 2.0 * (grid.alpha[:-1] / grid.alpha[1:]) ** 2 * snr**2

    def norm(v):
        return jnp.mean(jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)))

    def step(state, key, model_fn):
        if n_corrector == 0:
            return base.step(state, key, model_fn)
        score_fn = as_prediction(model_fn, schedule, predicts, "score")
        x, i, dt = state.x, state.i, state.x.dtype
        keys = jax.random.split(key, n_corrector + 1)
        ti, ci = take(t, i, dt), take(scale, i, dt)
        for k in range(n_corrector):
            g = score_fn(x, ti)
            z = jax.random.normal(keys[k], x.shape, dt)
            e = ci * (norm(z) / norm(g)) ** 2
            x = x + e * g + jnp.sqrt(2.0 * e) * z
        return base.step(state.replace(x=x, nfe=state.nfe + n_corrector), keys[-1], model_fn)

    return Sampler(init=base.init, step=step, num_steps=base.num_steps, nfe=base.nfe + n_corrector * base.num_steps)


def predictor_corrector(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", predictor: str = "ancestral",
                        snr: float = 0.16, n_corrector: int = 1) -> Sampler:
    """PC sampler: ``n_corrector`` Langevin steps at ``snr`` then one ``predictor`` step, per grid step."""
    check_grid(grid)
    check_choice("predictor", predictor, PREDICTORS)
    if not np.isscalar(snr) or not np.isfinite(snr) or snr <= 0:
        raise ValueError(f"snr must be a finite number > 0, got {snr!r}")
    if not isinstance(n_corrector, (int, np.integer)) or n_corrector < 0:
        raise ValueError(f"n_corrector must be an integer >= 0, got {n_corrector!r}")
    base = ddpm(schedule, grid, predicts) if predictor == "ancestral" else reverse_diffusion(schedule, grid, predicts)
    return langevin_corrector(base, schedule, grid, predicts, float(snr), int(n_corrector))
