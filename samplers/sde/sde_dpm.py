"""SDE-DPM-Solver (noise prediction) and SDE-DPM-Solver++ (data prediction), orders 1 and 2
(Lu et al. 2022b, "DPM-Solver++", Sec. 5 and App. B; diffusers' "sde-dpmsolver(++)").

Exponential integrators of the reverse SDE, from t = t_i to s = t_{i+1}, h = lambda_s - lambda_t,
with D0 = m_i, D1 = (m_i - m_{i-1}) / r, r = h_{i-1} / h_i (multistep, one call a step):

* "dpmsolver++" (x0):  x_s = (sigma_s/sigma_t) e^{-h} x_t + alpha_s (1 - e^{-2h}) D0 + k D1
                             + sigma_s sqrt(1 - e^{-2h}) z,
  k = alpha_s (1 - e^{-2h}) / 2 ("midpoint") or alpha_s (1 - (1 - e^{-2h}) / (2h)) ("heun");
* "dpmsolver" (eps):   x_s = (alpha_s/alpha_t) x_t - 2 sigma_s (e^h - 1) D0 - k D1
                             + sigma_s sqrt(e^{2h} - 1) z,
  k = sigma_s (e^h - 1) ("midpoint") or 2 sigma_s ((e^h - 1)/h - 1) ("heun").

Order 1 of "dpmsolver++" is DDPM ancestral sampling; order 1 of "dpmsolver" is SDE-DPM-Solver-1.
Orders follow ``ode.multistep.multistep_orders`` (diffusers): first order on the first step,
on a last step onto sigma = 0 and, with ``lower_order_final``, on the last step of grids of
fewer than 15 steps.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, check_order, predictor
from samplers.ode.multistep import linear_multistep, multistep_orders
from samplers.schedules import Schedule

ALGORITHMS = ("dpmsolver", "dpmsolver++")
SOLVER_TYPES = ("midpoint", "heun")


def sde_dpm_coefficients(grid: TimeGrid, order: int, algorithm: str, solver_type: str, lower_order_final: bool):
    """(A (N,), B (N, 2), g (N,)) in the solver's space (x0 for dpmsolver++, eps for dpmsolver)."""
    a_t, s_t, l_t = grid.alpha[:-1], grid.sigma[:-1], grid.lam[:-1]
    a_s, s_s, l_s = grid.alpha[1:], grid.sigma[1:], grid.lam[1:]
    n = grid.num_steps
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        h = l_s - l_t
        if algorithm == "dpmsolver++":
            one_m = -np.expm1(-2.0 * h)
            A, base, g = (s_s / s_t) * np.exp(-h), a_s * one_m, s_s * np.sqrt(one_m)
            k = 0.5 * base if solver_type == "midpoint" else a_s * (1.0 - one_m / (2.0 * h))
            sign = 1.0
        else:
            # sigma_s (e^h - 1) and sigma_s sqrt(e^{2h} - 1), written to stay finite at sigma_s = 0
            # (where sigma_s e^h = alpha_s sigma_t / alpha_t)
            lead = a_s * s_t / a_t
            c = np.where(s_s > 0, s_s * np.expm1(h), lead)
            A, base = a_s / a_t, -2.0 * c
            g = np.where(s_s > 0, s_s * np.sqrt(np.expm1(2.0 * h)), lead)
            k = c if solver_type == "midpoint" else 2.0 * s_s * (np.expm1(h) / h - 1.0)
            sign = -1.0
        r = np.concatenate([[1.0], h[:-1] / h[1:]])
        second = multistep_orders(n, order, lower_order_final, grid.final_zero) == 2
        B = np.zeros((n, 2))
        B[:, 0] = np.where(second, base + sign * k / r, base)
        B[:, 1] = np.where(second, -sign * k / r, 0.0)
    return A, B, g


def sde_dpm_solver(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", order: int = 2,
                   algorithm: str = "dpmsolver++", solver_type: str = "midpoint", lower_order_final: bool = True,
                   thresholding: dict | None = None) -> Sampler:
    """SDE-DPM-Solver(++) of ``order`` 1 or 2 on ``grid``, one model call a step."""
    check_grid(grid)
    order = check_order(order, (1, 2))
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("solver_type", solver_type, SOLVER_TYPES)
    space = "x0" if algorithm == "dpmsolver++" else "eps"
    if algorithm == "dpmsolver" and np.any(grid.alpha[:-1] <= 0):
        raise ValueError("algorithm='dpmsolver' needs alpha > 0 at every model time (start below the schedule's t "
                         "where alpha = 0, or use algorithm='dpmsolver++')")
    A, B, g = sde_dpm_coefficients(grid, order, algorithm, solver_type, bool(lower_order_final))
    return linear_multistep(grid, predictor(schedule, predicts, space, thresholding), A, B[:, :order], noise=g)
