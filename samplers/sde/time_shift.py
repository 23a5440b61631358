"""Time-shifted sampling against exposure bias (Li et al. 2024, "Alleviating Exposure Bias in
Diffusion Models through Sampling with Shifted Time Steps", TS-DDIM / TS-DDPM).

From the second step on, while the nominal time is above the cutoff t_c, the state x_i is
re-coupled with the time step whose noise level best matches its estimated variance:

    t_s = argmin_{tau in [t_i - w/2, t_i + w/2]} | var(x_i) - sigma_tau^2 |     (sigma^2 = 1 - alpha_bar in VP),

the model is called at (x_i, t_s) and the DDIM-eta step (``ancestral.ddim_eta_coefficients``)
goes from t_s to the next grid time t_{i+1}. var(x_i) is the unbiased variance over each sample's
features, averaged over the batch (vmap the sampler over single samples for the paper's
per-sample shift). The window w and the cutoff t_c count training time steps: the schedule's own
steps for ``vp_discrete``, else ``num_train_timesteps`` steps spanning [t_min, t_max]. All
candidate times and their step coefficients are tables built once; eta = 0 is TS-DDIM, 1 TS-DDPM.
Window 0 (or a cutoff above t_0) is the base sampler exactly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, basic_init, take
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, predictor
from samplers.schedules import Schedule, VPDiscrete
from samplers.sde.ancestral import check_eta, ddim_eta_coefficients


def shift_candidates(schedule: Schedule, grid: TimeGrid, window: int, cutoff: float, num_train_timesteps: int):
    """Candidate model times (N, 2 (w//2) + 1): t_i + k unit for |k| <= w//2 where shifting is
    active (clipped to the schedule's range), t_i everywhere else."""
    unit = 1.0 if isinstance(schedule, VPDiscrete) else (schedule.t_max - schedule.t_min) / (num_train_timesteps - 1)
    t = grid.t[:-1]
    half = window // 2
    offsets = unit * np.arange(-half, half + 1, dtype=np.float64)
    active = (np.arange(len(t)) >= 1) & ((t - schedule.t_min) / unit > cutoff) & (grid.sigma[:-1] > 0)
    cand = np.clip(t[:, None] + offsets[None], schedule.t_min, schedule.t_max)
    return np.where(active[:, None], cand, t[:, None])


def time_shift(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", eta: float = 0.0, window: int = 80,
               cutoff: float = 300, num_train_timesteps: int = 1000, thresholding: dict | None = None) -> Sampler:
    """TS-DDIM (eta = 0) / TS-DDPM (eta = 1); defaults w = 80, t_c = 300 are the official
    code's CIFAR-10 example."""
    check_grid(grid)
    eta = check_eta(eta)
    if not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"window must be an integer >= 0 (training time steps), got {window!r}")
    if not np.isscalar(cutoff) or np.isnan(cutoff):
        raise ValueError(f"cutoff must be a number (a training time step), got {cutoff!r}")
    if not isinstance(num_train_timesteps, (int, np.integer)) or num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
    cand_t = shift_candidates(schedule, grid, int(window), float(cutoff), int(num_train_timesteps))
    is_grid = cand_t == grid.t[:-1, None]  # keep the grid's own values where nothing shifts
    with np.errstate(divide="ignore"):
        a_c = np.where(is_grid, grid.alpha[:-1, None], schedule.alpha(cand_t))
        s_c = np.where(is_grid, grid.sigma[:-1, None], schedule.sigma(cand_t))
        l_c = np.where(is_grid, grid.lam[:-1, None], schedule.lambda_(cand_t))
    end = (grid.alpha[1:, None], grid.sigma[1:, None], grid.lam[1:, None])
    A, B, G = ddim_eta_coefficients((a_c, s_c, l_c), end, eta)
    target_var = s_c**2
    wrap = predictor(schedule, predicts, "x0", thresholding)

    def step(state: BasicState, key, model_fn):
        x, i, dt = state.x, state.i, state.x.dtype
        flat = x.reshape(x.shape[0], -1)
        var = jnp.mean(jnp.var(flat, axis=1, ddof=1 if flat.shape[1] > 1 else 0))
        c = jnp.argmin(jnp.abs(var - take(target_var, i, dt)))
        x0 = wrap(model_fn)(x, take(cand_t, i, dt)[c])
        z = jax.random.normal(key, x.shape, dt)
        x_next = take(A, i, dt)[c] * x + take(B, i, dt)[c] * x0 + take(G, i, dt)[c] * z
        return BasicState(x=x_next, i=i + 1, nfe=state.nfe + 1)

    return Sampler(init=basic_init, step=step, num_steps=grid.num_steps, nfe=grid.num_steps)
