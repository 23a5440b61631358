"""iPNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator",
App. B; the "improved PNDM" of Liu et al. 2022 with lower-order warm-up): explicit Adams-Bashforth
on the probability-flow ODE written in rho = sigma / alpha,

    d(x / alpha) / d rho = eps,
    x_{i+1} = (alpha_{i+1} / alpha_i) x_i + alpha_{i+1} (rho_{i+1} - rho_i) sum_j c_{p,j} eps_{i-j},

with the fixed Adams-Bashforth weights of order p = min(order, i + 1) on the last p outputs
(c_1 = [1], c_2 = [3, -1]/2, c_3 = [23, -16, 5]/12, c_4 = [55, -59, 37, -9]/24), as the
reference code uses them on any grid. rho_N = 0 at sigma = 0, so a last step there is finite.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, check_order, predictor
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule

AB_WEIGHTS = {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}


def ipndm_coefficients(grid: TimeGrid, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables (A, B) of iPNDM-``order`` for ``linear_multistep`` on eps outputs."""
    n = grid.num_steps
    rho = grid.sigma / grid.alpha
    A, B = grid.alpha[1:] / grid.alpha[:-1], np.zeros((n, order))
    for i in range(n):
        w = AB_WEIGHTS[min(order, i + 1)]
        B[i, :len(w)] = grid.alpha[i + 1] * (rho[i + 1] - rho[i]) * np.asarray(w)
    return A, B


def ipndm(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, order: int = 4) -> Sampler:
    """iPNDM of ``order`` 1..4 (1 is DDIM), one model call a step."""
    check_grid(grid)
    order = check_order(order, (1, 2, 3, 4))
    if grid.alpha[0] == 0.0:
        raise ValueError("ipndm integrates x/alpha and needs alpha > 0 at the first grid point; give the "
                         f"{schedule.name} grid a t_start where alpha > 0")
    A, B = ipndm_coefficients(grid, order)
    return linear_multistep(grid, predictor(schedule, predicts, "eps"), A, B)
