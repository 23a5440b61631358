"""The EDM stochastic sampler (Karras et al. 2022, Alg. 2): re-noised Heun steps
(``ode.rk.heun_steps``, shared with restart sampling).

In the scale-free variables y = x / alpha, s = sigma / alpha (dy/ds = eps for every schedule),
step i first raises the noise level from s_i to s_hat_i = (1 + gamma_i) s_i,

    y_hat = y_i + sqrt(s_hat_i^2 - s_i^2) S_noise z,
    gamma_i = min(S_churn / N, sqrt(2) - 1) if S_tmin <= s_i <= S_tmax else 0,

then takes a Heun step from s_hat_i to s_{i+1} (Euler on the last step to s = 0). With
alpha = 1 (the ``edm`` schedule, t = sigma) this is Alg. 2 verbatim; other schedules evaluate
the model at t_hat = t(lambda = -log s_hat). ``S_churn = 0`` is deterministic Heun.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid
from samplers.ode.rk import Points, heun_steps
from samplers.schedules import Schedule


def _check_nonneg(name: str, value) -> float:
    if not np.isscalar(value) or np.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def edm_stochastic(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", s_churn: float = 0.0,
                   s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> Sampler:
    """Karras et al. (2022) Alg. 2 on ``grid``; ``s_tmin``/``s_tmax`` bound the noise level
    s = sigma/alpha where churn is added (EDM's sigma). The defaults are EDM's ``generate.py``
    (no churn: deterministic Heun); its ImageNet-64 setting is s_churn=40, s_tmin=0.05,
    s_tmax=50, s_noise=1.003."""
    check_grid(grid)
    s_churn, s_tmin, s_tmax, s_noise = (_check_nonneg(k, v) for k, v in
                                        (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_tmax", s_tmax),
                                         ("s_noise", s_noise)))
    if not s_tmin <= s_tmax:
        raise ValueError(f"s_tmin ({s_tmin}) must not exceed s_tmax ({s_tmax})")
    n = grid.num_steps
    cur, end = Points.intervals(grid)
    s = cur.s
    gamma = np.where((s >= s_tmin) & (s <= s_tmax), min(s_churn / n, np.sqrt(2.0) - 1.0), 0.0)
    churn = gamma > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hat = np.where(churn, schedule.t_from_lambda(-np.log(s * (1.0 + gamma))), cur.t)
        alpha_hat = np.where(churn, schedule.alpha(t_hat), cur.alpha)
    sigma_hat = alpha_hat * s * (1.0 + gamma)
    if not (np.all(np.isfinite(t_hat)) and np.all(alpha_hat > 0) and np.all(np.isfinite(sigma_hat))):
        raise ValueError(f"s_churn={s_churn} raises the noise level beyond what the {schedule.name} schedule can "
                         "represent; lower s_churn or s_tmax")
    hat = Points(t_hat, alpha_hat, sigma_hat)
    return heun_steps(schedule, predicts, hat, end, before=cur, s_noise=s_noise)
