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

DEIS rho-RK (``deis_rk``, Zhang & Chen 2023, Sec. 4, "rhoRK-DEIS"): a classical explicit Runge-Kutta
method on the same ODE, dy/d rho = eps(alpha(rho) y, t(rho)) with y = x / alpha: with
d rho = rho_{i+1} - rho_i, stage s at rho_i + c_s d rho evaluates eps at
x_s = alpha_s (y_i + d rho sum_j a_{s,j} eps_j), and x_{i+1} = alpha_{i+1} (y_i + d rho sum_s b_s eps_s).
Orders 2 (Heun), 3 (Kutta) and 4 (classical RK4), ``order`` model calls a step; a step to sigma = 0
(rho = 0, where eps is not defined) is an Euler (DDIM) step of one call, as is every step that per-step
``orders`` set to 1 (``registry.cap_orders`` lowers the steps longer than ``registry.H_MAX`` in log-SNR).
"""
from __future__ import annotations

from math import factorial

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, check_order, predictor
from samplers.ode.multistep import linear_multistep, multistep_orders
from samplers.ode.rk import TABLEAUX
from samplers.ode.singlestep import explicit_stages
from samplers.schedules import Schedule

# rho-RK Butcher tableaux (A, b, c) by order: Heun's, Kutta's third-order and the classical RK4 method
RHO_TABLEAUX = {
    2: TABLEAUX["heun2"],
    3: (np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [-1.0, 2.0, 0.0]]), np.array([1 / 6, 2 / 3, 1 / 6]),
        np.array([0.0, 0.5, 1.0])),
    4: TABLEAUX["rk4"],
}


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


def rho_rk_tables(schedule: Schedule, grid: TimeGrid, order: int, euler=None):
    """(t_stage, a_in, b_in, a_out, c_out, active) of rho-RK for ``explicit_stages`` (module docstring);
    ``euler`` (N,) bool marks steps taken by Euler (one call)."""
    a_tab, b_tab, c_tab = RHO_TABLEAUX[order]
    n = grid.num_steps
    rho = grid.sigma / grid.alpha
    d_rho = rho[1:] - rho[:-1]
    last = grid.sigma[1:] == 0.0  # Euler there: eps is not defined at rho = 0
    if euler is not None:
        last = last | np.asarray(euler, bool)
    rho_stage = rho[:-1, None] + c_tab[None] * d_rho[:, None]
    start, end = last[:, None] | (c_tab[None] == 0), ~last[:, None] & (c_tab[None] == 1)
    inner = np.asarray(schedule.t_from_lambda(-np.log(np.where(start | end, 1.0, rho_stage))), np.float64)
    # the grid's own points where a stage lies on one (c = 0, c = 1): no round trip through lambda
    t_stage = np.where(start, grid.t[:-1, None], np.where(end, grid.t[1:, None], inner))
    alpha_stage = np.where(start, grid.alpha[:-1, None], np.where(end, grid.alpha[1:, None], schedule.alpha(inner)))
    a_in = alpha_stage / grid.alpha[:-1, None]
    b_in = (alpha_stage * d_rho[:, None])[:, :, None] * a_tab[None]
    weights = np.where(last[:, None], np.eye(len(b_tab))[0][None], b_tab[None])
    c_out = (grid.alpha[1:] * d_rho)[:, None] * weights
    active = np.where(last[:, None], np.arange(len(b_tab))[None] == 0, True)
    return t_stage, a_in, b_in, grid.alpha[1:] / grid.alpha[:-1], c_out, active


def deis_rk(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, order: int = 3, orders=None) -> Sampler:
    """DEIS rho-RK of ``order`` 2..4: ``order`` model calls a step (one on a step to sigma = 0); ``orders``
    (one per step, each 1 or ``order``) takes the steps of order 1 by Euler."""
    check_grid(grid)
    order = check_order(order, tuple(RHO_TABLEAUX))
    if grid.alpha[0] == 0.0:
        raise ValueError("deis_rk integrates x/alpha and needs alpha > 0 at the first grid point; give the "
                         f"{schedule.name} grid a t_start where alpha > 0")
    euler = None
    if orders is not None:
        euler = np.asarray(orders) == 1
        if len(euler) != grid.num_steps or not all(p in (1, order) for p in orders):
            raise ValueError(f"orders must hold one entry per grid step ({grid.num_steps}), each 1 or "
                             f"order={order}, got {list(orders)}")
    return explicit_stages(predictor(schedule, predicts, "eps"), *rho_rk_tables(schedule, grid, order, euler))
