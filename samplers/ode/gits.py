"""Searched time grids by dynamic programming over a fine grid (GITS: Chen et al. 2024, "On the
Trajectory Regularity of ODE-based Diffusion Sampling"; BOSS-style grid search).

Given a fine grid t_0 > ... > t_M (ending at sigma = 0) and a teacher's trajectory x_0 .. x_M on it
from a sample of starting noise, the cost of one first-order (DDIM) step from fine point i to
fine point j > i is the RMS distance

    c[i, j] = RMS( (sigma_j / sigma_i) x_i + (alpha_j - alpha_i sigma_j / sigma_i) x0_hat(x_i, t_i) - x_j ),

one model call per fine point (M calls on the sample in all). The grid of K steps is the path
0 = i_0 < i_1 < ... < i_K = M of least total cost, found exactly by dynamic programming
(O(K M^2)). The result is an artefact of ``samplers.ode.learnt_grid`` ({"t": the K model times,
"base": the solver to run on it, "cost": the path's total cost}), saved and loaded with its
``save_grid``/``load_grid`` and run by ``learnt_grid_sampler``; it also starts LD3's search
(``learnt_grid.fit_grid(init_t=...)``). The cost measures DDIM's local error; GITS uses the same
grid for higher-order solvers, which the benchmark checks rather than assumes.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, predictor
from samplers.ode.learnt_grid import BASES
from samplers.schedules import Schedule


def step_costs(schedule: Schedule, model_fn: Callable, fine: TimeGrid, trajectory, predicts: str = "eps") -> np.ndarray:
    """c[i, j] (M+1, M+1), +inf for j <= i: the RMS error of one DDIM step from the teacher's x_i to t_j."""
    traj = jnp.asarray(trajectory)
    m = fine.num_steps
    if traj.ndim != 3 or traj.shape[0] != m + 1:
        raise ValueError(f"trajectory must have shape ({m + 1}, batch, dim): the teacher's states at the points "
                         f"of fine, got {traj.shape}")
    if not fine.final_zero:
        raise ValueError("fine must end at sigma = 0 (final='zero')")
    x0_of = jax.jit(predictor(schedule, predicts, "x0")(model_fn))
    a, s = np.asarray(fine.alpha), np.asarray(fine.sigma)
    cost = np.full((m + 1, m + 1), np.inf)
    for i in range(m):
        x0 = x0_of(traj[i], jnp.asarray(fine.t[i], traj.dtype))
        r = s[i + 1:] / s[i]
        jump = r[:, None, None] * traj[i][None] + (a[i + 1:] - a[i] * r)[:, None, None] * x0[None]
        cost[i, i + 1:] = np.sqrt(np.mean(np.square(np.asarray(jump - traj[i + 1:], np.float64)), axis=(1, 2)))
    return cost


def best_path(cost: np.ndarray, num_steps: int) -> tuple[np.ndarray, float]:
    """The indices 0 = i_0 < ... < i_K = M (K = ``num_steps``) of least total cost, and that cost."""
    m = cost.shape[0] - 1
    if not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= m:
        raise ValueError(f"num_steps must be an integer in [1, {m}] (the fine grid's steps), got {num_steps!r}")
    best = np.full((num_steps + 1, m + 1), np.inf)
    back = np.zeros((num_steps + 1, m + 1), np.int64)
    best[0, 0] = 0.0
    for k in range(1, num_steps + 1):
        total = best[k - 1][:, None] + cost  # (from i, to j)
        back[k] = np.argmin(total, axis=0)
        best[k] = total[back[k], np.arange(m + 1)]
    path = [m]
    for k in range(num_steps, 0, -1):
        path.append(int(back[k, path[-1]]))
    return np.asarray(path[::-1]), float(best[num_steps, m])


def gits_grid(schedule: Schedule, model_fn: Callable, nfe: int, fine: TimeGrid, trajectory, *,
              base: str = "dpm_solver_pp_2m", predicts: str = "eps") -> dict:
    """The artefact of the ``nfe``-call grid of least DDIM cost along ``trajectory`` (module docstring),
    to be run with ``base`` (a ``learnt_grid.BASES`` name)."""
    check_choice("base", base, sorted(BASES))
    path, total = best_path(step_costs(schedule, model_fn, fine, trajectory, predicts), nfe)
    return {"t": np.asarray(fine.t[path[:-1]], np.float64), "base": base, "cost": total}
