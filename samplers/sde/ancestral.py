"""Ancestral samplers: DDPM (Ho et al. 2020) and DDIM with eta (Song et al. 2021).

One step goes from t = t_i to the cleaner s = t_{i+1}, with h = lambda_s - lambda_t > 0
and x0 the model's data prediction at (x_t, t); z ~ N(0, I) comes from the step key.

* DDPM draws from the forward process' Gaussian posterior q(x_s | x_t, x0) written for
  any schedule (Kingma et al. 2021, VDM): with alpha_{t|s} = alpha_t / alpha_s and
  sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2 = sigma_t^2 (1 - e^{-2h}),

      x_s = (alpha_{t|s} sigma_s^2 / sigma_t^2) x_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x0 + std z,

  std^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 (``variance="small"``, Ho et al.'s beta-tilde)
  or sigma_{t|s}^2 (``"large"``, beta), no noise on a step onto sigma = 0.
* DDIM (Song et al. 2021, eq. 12) with s_eta = eta sigma_s sqrt(1 - e^{-2h}) (eq. 16):

      x_s = alpha_s x0 + sqrt(sigma_s^2 - s_eta^2) (x_t - alpha_t x0) / sigma_t + s_eta z;

  eta = 0 is deterministic DDIM, eta = 1 is DDPM with the small variance.

Both are rows (A, B, g) of ``linear_multistep`` in data-prediction (x0) space.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, predictor
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule

VARIANCES = ("small", "large")


def _pairs(grid: TimeGrid):
    """(alpha_t, sigma_t, lambda_t) of every step's start and (alpha_s, sigma_s, lambda_s) of its end."""
    return (grid.alpha[:-1], grid.sigma[:-1], grid.lam[:-1]), (grid.alpha[1:], grid.sigma[1:], grid.lam[1:])


def ddpm_coefficients(start, end, variance: str = "small"):
    """(A, B, g) of the DDPM posterior step from ``start`` = (alpha, sigma, lam) to ``end``
    (arrays broadcast), so x_s = A x_t + B x0 + g z."""
    (a_t, s_t, l_t), (a_s, s_s, l_s) = start, end
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        one_m = -np.expm1(-2.0 * (l_s - l_t))  # sigma_{t|s}^2 / sigma_t^2 = 1 - e^{-2h}
        A = (a_t / a_s) * s_s**2 / s_t**2
        B = a_s * one_m
        var = s_s**2 * one_m if variance == "small" else np.where(s_s > 0, s_t**2 * one_m, 0.0)
    return A, B, np.sqrt(var)


def ddpm_noise(grid: TimeGrid, variance: str = "small") -> np.ndarray:
    """(N,) noise standard deviation g of each step of ``ddpm(schedule, grid, variance=variance)``
    (e.g. the per-step scale of ``samplers.parallel.step_scale``)."""
    check_grid(grid)
    check_choice("variance", variance, VARIANCES)
    return ddpm_coefficients(*_pairs(grid), variance)[2]


def ddim_eta_coefficients(start, end, eta: float):
    """(A, B, g) of the DDIM step with ``eta`` from ``start`` = (alpha, sigma, lam) to ``end``."""
    (a_t, s_t, l_t), (a_s, s_s, l_s) = start, end
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        one_m = -np.expm1(-2.0 * (l_s - l_t))
        s_eta = eta * s_s * np.sqrt(one_m)
        direction = np.sqrt(np.maximum(s_s**2 - s_eta**2, 0.0)) / s_t  # weight of eps = (x - alpha_t x0) / sigma_t
    return direction, a_s - direction * a_t, s_eta


def check_eta(eta) -> float:
    if not np.isscalar(eta) or not np.isfinite(eta) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
    return float(eta)


def ddpm(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", variance: str = "small",
         thresholding: dict | None = None) -> Sampler:
    """DDPM ancestral sampling on ``grid`` (any subsequence of training steps or continuous times)."""
    check_grid(grid)
    check_choice("variance", variance, VARIANCES)
    A, B, g = ddpm_coefficients(*_pairs(grid), variance)
    return linear_multistep(grid, predictor(schedule, predicts, "x0", thresholding), A, B[:, None], noise=g)


def ddim_eta(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", eta: float = 1.0,
             thresholding: dict | None = None) -> Sampler:
    """DDIM with stochasticity ``eta`` in [0, 1] (0: deterministic DDIM, 1: DDPM)."""
    check_grid(grid)
    eta = check_eta(eta)
    A, B, g = ddim_eta_coefficients(*_pairs(grid), eta)
    return linear_multistep(grid, predictor(schedule, predicts, "x0", thresholding), A, B[:, None], noise=g)
