"""DDIM (Song et al. 2021), deterministic (eta = 0): the first-order exponential integrator

    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} (1 - e^{-h_i}) x0_i,   h_i = lambda_{i+1} - lambda_i,

identical to DPM-Solver-1 and DPM-Solver++-1; reaches sigma = 0 exactly (x_N = x0).
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, predictor
from samplers.ode.exponential import exp_coefs
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule


def ddim_coefficients(grid: TimeGrid) -> tuple[np.ndarray, np.ndarray]:
    """(sigma_{i+1}/sigma_i, alpha_{i+1}(1 - e^{-h_i})) for every step of the grid."""
    pts = lambda sl: (grid.alpha[sl], grid.sigma[sl], grid.lam[sl])
    a, (b,) = exp_coefs("x0", pts(slice(None, -1)), pts(slice(1, None)))
    return a, b


def ddim(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", thresholding: dict | None = None) -> Sampler:
    check_grid(grid)
    a, b = ddim_coefficients(grid)
    return linear_multistep(grid, predictor(schedule, predicts, "x0", thresholding), a, b[:, None])
