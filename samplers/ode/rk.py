"""Runge-Kutta solvers.

* ``euler`` / ``heun``: Karras et al. (2022, Alg. 1) in the scale-free variables
  y = x/alpha, s = sigma/alpha, where dy/ds = eps(y, s) for every schedule:
  Euler y' = y + (s_{i+1} - s_i) eps_i; Heun averages eps at both ends and falls
  back to Euler on a step to s = 0 (2N - 1 model calls for N steps).
* ``rk``: classic explicit Runge-Kutta tableaux on dx/dt = u(x, t) with the
  flow-matching velocity u = alpha' x0 + sigma' eps (the probability-flow ODE
  of any schedule): ``euler``, ``midpoint``, ``heun2`` (trapezoid) and ``rk4``.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, predictor
from samplers.ode.singlestep import explicit_stages
from samplers.schedules import Schedule

TABLEAUX = {
    "euler": (np.zeros((1, 1)), np.array([1.0]), np.array([0.0])),
    "midpoint": (np.array([[0.0, 0.0], [0.5, 0.0]]), np.array([0.0, 1.0]), np.array([0.0, 0.5])),
    "heun2": (np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([0.5, 0.5]), np.array([0.0, 1.0])),
    "rk4": (
        np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1.0, 0]]),
        np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        np.array([0.0, 0.5, 0.5, 1.0]),
    ),
}


def _edm_tables(grid: TimeGrid):
    ratio = grid.alpha[1:] / grid.alpha[:-1]
    s = grid.sigma / grid.alpha
    return ratio, grid.alpha[1:] * (s[1:] - s[:-1])


def euler(schedule: Schedule, grid: TimeGrid, predicts: str = "eps") -> Sampler:
    check_grid(grid)
    ratio, ds = _edm_tables(grid)
    n = grid.num_steps
    return explicit_stages(
        predictor(schedule, predicts, "eps"), grid.t[:-1, None], np.ones((n, 1)), np.zeros((n, 1, 1)),
        ratio, ds[:, None], np.ones((n, 1), bool),
    )


def heun(schedule: Schedule, grid: TimeGrid, predicts: str = "eps") -> Sampler:
    check_grid(grid)
    ratio, ds = _edm_tables(grid)
    n = grid.num_steps
    second = grid.sigma[1:] > 0
    b_in = np.zeros((n, 2, 2))
    b_in[:, 1, 0] = ds
    c_out = np.stack([np.where(second, 0.5 * ds, ds), np.where(second, 0.5 * ds, 0.0)], axis=1)
    return explicit_stages(
        predictor(schedule, predicts, "eps"), np.stack([grid.t[:-1], grid.t[1:]], axis=1),
        np.stack([np.ones(n), ratio], axis=1), b_in, ratio, c_out, np.stack([np.ones(n, bool), second], axis=1),
    )


def rk(schedule: Schedule, grid: TimeGrid, predicts: str = "velocity", method: str = "rk4") -> Sampler:
    check_grid(grid)
    check_choice("method", method, sorted(TABLEAUX))
    if not np.allclose(schedule.sigma(grid.t), grid.sigma, rtol=1e-12, atol=0.0):
        raise ValueError("rk solvers integrate in t and need a grid without final='zero' "
                         "(end at the schedule's t where sigma = 0 instead, e.g. t_end=0 for flow)")
    a_tab, b_tab, c_tab = TABLEAUX[method]
    h = grid.t[1:] - grid.t[:-1]
    n, s = grid.num_steps, len(b_tab)
    return explicit_stages(
        predictor(schedule, predicts, "velocity"), grid.t[:-1, None] + h[:, None] * c_tab[None],
        np.ones((n, s)), h[:, None, None] * a_tab[None], np.ones(n), h[:, None] * b_tab[None], np.ones((n, s), bool),
    )
