"""DEIS tAB (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
Integrator"), the ``logrho`` form of diffusers' ``DEISMultistepScheduler``.

With rho = sigma/alpha the probability-flow ODE is d(x/alpha)/d rho = eps. Over a step
rho_i -> rho_{i+1}, eps is replaced by its Lagrange interpolant in log rho = -lambda
through the last p outputs eps_i, ..., eps_{i-p+1}, integrated exactly:

    x_{i+1} = (alpha_{i+1}/alpha_i) x_i + alpha_{i+1} sum_j eps_{i-j} int_{rho_i}^{rho_{i+1}} L_j(log rho) d rho.

In v = log(rho/rho_i) the weights are rho_i sum_n c_{j,n} I_n(-h) with L_j(v) = sum_n c_{j,n} v^n,
nodes v_j = lambda_i - lambda_{i-j}, h = lambda_{i+1} - lambda_i and I_n(tau) = int_0^tau e^v v^n dv,
which is finite at sigma_{i+1} = 0 (tau = -inf). Order 1 is DDIM. Orders: warm-up
min(order, i+1); ``lower_order_final`` as diffusers (only when N < 15): order 1 at the
last step and at most 2 at the one before.
"""
from __future__ import annotations

from math import factorial

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, check_order, predictor
from samplers.ode.multistep import linear_multistep, multistep_orders
from samplers.schedules import Schedule


def exp_moments(n_max: int, tau: float) -> np.ndarray:
    """I_n(tau) = int_0^tau e^v v^n dv for n = 0..n_max (tau <= 0, -inf allowed): the Taylor
    series sum_k tau^(k+n+1) / (k! (k+n+1)) near 0, else I_n = e^tau tau^n - n I_{n-1}."""
    n = np.arange(n_max + 1)
    if np.isneginf(tau):
        return -((-1.0) ** n) * np.array([factorial(k) for k in n], float)
    if abs(tau) < 0.5:
        k = np.arange(30)[:, None]
        fact = np.array([factorial(j) for j in range(30)], float)[:, None]
        return np.sum(tau ** (k + n + 1) / (fact * (k + n + 1)), axis=0)
    out = np.empty(n_max + 1)
    out[0] = np.expm1(tau)
    for j in range(1, n_max + 1):
        out[j] = np.exp(tau) * tau**j - j * out[j - 1]
    return out


def deis_coefficients(grid: TimeGrid, order: int, lower_order_final: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tables (A, B) of DEIS tAB for ``linear_multistep`` on eps outputs (history size ``order``)."""
    n = grid.num_steps
    # DEISMultistepScheduler.step lowers the final orders by the same rule as DPM-Solver's; the
    # weights stay finite at sigma = 0, so a last step there keeps its order (final_zero=False).
    orders = multistep_orders(n, order, lower_order_final, final_zero=False)
    A, B = grid.alpha[1:] / grid.alpha[:-1], np.zeros((n, order))
    for i in range(n):
        p = int(orders[i])
        v = grid.lam[i] - grid.lam[i - np.arange(p)]  # nodes in log(rho / rho_i)
        moments = exp_moments(p - 1, grid.lam[i] - grid.lam[i + 1])
        weights = np.linalg.solve(np.vander(v, p, increasing=True).T, moments)  # int L_j(v) e^v dv
        B[i, :p] = grid.alpha[i + 1] * grid.sigma[i] / grid.alpha[i] * weights
    return A, B


def deis(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, order: int = 2,
         lower_order_final: bool = True) -> Sampler:
    """DEIS tAB-``order`` (1..3), one model call a step."""
    check_grid(grid)
    order = check_order(order, (1, 2, 3))
    check_choice("lower_order_final", lower_order_final, (True, False))
    if grid.alpha[0] == 0.0:
        raise ValueError("deis integrates x/alpha and needs alpha > 0 at the first grid point; give the "
                         f"{schedule.name} grid a t_start where alpha > 0")
    A, B = deis_coefficients(grid, order, lower_order_final)
    return linear_multistep(grid, predictor(schedule, predicts, "eps"), A, B)
