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

from typing import NamedTuple

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


class Points(NamedTuple):
    """Noise levels as parallel float64 arrays: model time, alpha and sigma."""

    t: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray

    @property
    def s(self) -> np.ndarray:
        return self.sigma / self.alpha

    def take(self, idx) -> "Points":
        return Points(self.t[idx], self.alpha[idx], self.sigma[idx])

    @staticmethod
    def of(grid: TimeGrid) -> "Points":
        return Points(grid.t, grid.alpha, grid.sigma)

    @staticmethod
    def intervals(grid: TimeGrid) -> tuple["Points", "Points"]:
        """(start, end) points of every step of ``grid``."""
        pts, n = Points.of(grid), grid.num_steps
        return pts.take(slice(0, n)), pts.take(slice(1, n + 1))

    @staticmethod
    def cat(parts) -> "Points":
        return Points(*(np.concatenate([np.atleast_1d(getattr(p, f)) for p in parts]) for f in Points._fields))


def _y_step(start: Points, end: Points):
    """x_end = ratio x_start + ds eps for an Euler step y' = y + (s_end - s_start) eps, x = alpha y."""
    return end.alpha / start.alpha, end.alpha * (end.s - start.s)


def heun_steps(schedule: Schedule, predicts: str, start: Points, end: Points, before: Points | None = None,
               s_noise: float = 1.0) -> Sampler:
    """Step i: a Heun step in (y, s) from ``start`` to ``end`` (Euler where s_end = 0). With
    ``before`` (the stochastic samplers' churn and restarts) it first re-noises x from level
    ``before`` to ``start``: y <- y + sqrt(s_start^2 - s_before^2) s_noise z."""
    n = len(start.t)
    ratio, ds = _y_step(start, end)
    second = end.sigma > 0
    b_in = np.zeros((n, 2, 2))
    b_in[:, 1, 0] = ds
    c_out = np.stack([np.where(second, 0.5 * ds, ds), np.where(second, 0.5 * ds, 0.0)], axis=1)
    pre_noise = None
    if before is not None:
        g_pre = start.alpha * np.sqrt(np.maximum(start.s**2 - before.s**2, 0.0)) * s_noise
        pre_noise = (start.alpha / before.alpha, g_pre)
    return explicit_stages(
        predictor(schedule, predicts, "eps"), np.stack([start.t, end.t], axis=1), np.stack([np.ones(n), ratio], axis=1),
        b_in, ratio, c_out, np.stack([np.ones(n, bool), second], axis=1), pre_noise=pre_noise,
    )


def euler(schedule: Schedule, grid: TimeGrid, predicts: str = "eps") -> Sampler:
    check_grid(grid)
    n = grid.num_steps
    ratio, ds = _y_step(*Points.intervals(grid))
    return explicit_stages(
        predictor(schedule, predicts, "eps"), grid.t[:-1, None], np.ones((n, 1)), np.zeros((n, 1, 1)),
        ratio, ds[:, None], np.ones((n, 1), bool),
    )


def heun(schedule: Schedule, grid: TimeGrid, predicts: str = "eps") -> Sampler:
    check_grid(grid)
    return heun_steps(schedule, predicts, *Points.intervals(grid))


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
