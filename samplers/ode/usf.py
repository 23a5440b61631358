"""Per-step solver choices in the spirit of USF (Liu et al. 2023, "A Unified Sampling Framework for
Solver Searching of Diffusion Probabilistic Models"): every step of a multistep exponential integrator
picks its own order, prediction type and corrector.

Step i (from point i to i + 1) is UniP-p_i (``samplers.ode.unipc``, variant bh2) written in the
space T_i: data prediction (x0) or noise prediction (eps, eps_j = (x~_j - alpha_j x0_j) / sigma_j at
the point x~_j the model was called at), started from the base point x_i; with ``corrected[i]`` the
output at x~_{i+1} then corrects it (UniC-p_i in the same space: x_{i+1} = UniC(...), no extra call),
otherwise x_{i+1} = x~_{i+1}. The step to sigma = 0 is first order (in x0 space its exact limit, the
model's x0 at x~_{N-1}, so a correction of x_{N-1} only matters to a noise-prediction last step). All-x0
with UniPC's orders and every corrector on is ``unipc`` (bh2); with none, UniP; all-eps is
``unipc(predict_x0=False)``.

Every quantity is linear in the start x_0 and the x0 outputs m_0, ..., m_{N-1}, so the choices are
compiled in numpy (float64) into one ``linear_multistep`` recurrence on the evaluation points,

    x~_{i+1} = A_i x~_i + sum_{k<=i} B_{i,k} m_{i-k},

with a history as long as the grid (B is (N, N)): a mixed-type step reads x~_j of earlier points, which
the recurrence keeps in its outputs. The search itself (coordinate descent with the grid) is
``samplers.ode.learnt_grid``'s base "usf".
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, predictor
from samplers.ode.exponential import exp_coefs
from samplers.ode.multistep import linear_multistep
from samplers.ode.unipc import bh_rhos, unipc_orders
from samplers.schedules import Schedule

SPACES = ("x0", "eps")  # prediction type per step: index 0 data, 1 noise


def default_choices(grid: TimeGrid, order: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(orders, eps, corrected) of ``unipc(order=order)`` (bh2, data prediction, lower_order_final; like it,
    no correction of a step from lambda = -inf)."""
    orders = unipc_orders(grid, order, True)
    n = grid.num_steps
    return orders, np.zeros(n, bool), np.isfinite(grid.lam[:-1]) & (np.arange(n) < n - 1)


def check_choices(grid: TimeGrid, orders, eps, corrected) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The choices as arrays, with a ValueError naming the argument and its allowed values."""
    n = grid.num_steps
    orders, eps, corrected = (np.asarray(v) for v in (orders, eps, corrected))
    for name, v in (("orders", orders), ("eps", eps), ("corrected", corrected)):
        if v.shape != (n,):
            raise ValueError(f"{name} must have one entry per step ({n}), got shape {v.shape}")
    if not np.all(np.isin(eps, (0, 1))) or not np.all(np.isin(corrected, (0, 1))):
        raise ValueError(f"eps and corrected must be booleans, got {eps!r} and {corrected!r}")
    most = np.minimum(np.arange(1, n + 1), 3)
    if np.any(orders != np.rint(orders)) or np.any(orders < 1) or np.any(orders > most):
        raise ValueError(f"orders must be integers in 1..min(3, i + 1) at step i, got {orders!r}")
    if grid.final_zero and orders[-1] != 1:
        raise ValueError(f"orders[-1] must be 1: the step to sigma = 0 is first order, got {orders[-1]}")
    if eps[0] and grid.alpha[0] == 0.0:
        raise ValueError("eps[0] must be False on a grid starting at alpha = 0: noise prediction divides by alpha")
    if corrected[-1]:
        raise ValueError("corrected[-1] must be False: no model call follows the last step")
    return orders.astype(int), eps.astype(bool), corrected.astype(bool)


def usf_tables(grid: TimeGrid, orders, eps, corrected) -> tuple[np.ndarray, np.ndarray]:
    """(A (N,), B (N, N)) of the module docstring's recurrence for per-step ``orders`` (1-3), prediction
    type ``eps`` (True: noise) and ``corrected`` (True: UniC after the step)."""
    orders, eps, corrected = check_choices(grid, orders, eps, corrected)
    n = grid.num_steps
    pts = [(grid.alpha[j], grid.sigma[j], grid.lam[j]) for j in range(n + 1)]
    unit = np.eye(n + 1)  # basis: x_0, m_0, ..., m_{N-1}
    xt, base = [unit[0]], unit[0]  # evaluation points x~_j, the current base point x_i

    def out(j, space):  # model output at x~_j in ``space``, as a basis vector
        m = unit[1 + j]
        return m if space == "x0" else (xt[j] - grid.alpha[j] * m) / grid.sigma[j]

    def update(s, t, p, space, corrector):  # UniP-p (or UniC-p with the output at t) from base point s
        a, (c0,) = exp_coefs(space, pts[s], pts[t])
        past = [s - k for k in range(1, p)]
        row = a * base + c0 * out(s, space)
        if past or corrector:
            b_h, rho, r = bh_rhos(grid, s, t, past, corrector, space == "x0", "bh2")
            w = (grid.alpha[t] if space == "x0" else grid.sigma[t]) * b_h * rho / r
            nodes = past + ([t] if corrector else [])
            row = row + w.sum() * out(s, space) - sum(wk * out(j, space) for wk, j in zip(w, nodes))
        return row

    for i in range(n):
        space = SPACES[int(eps[i])]
        xt.append(update(i, i + 1, orders[i], space, False))
        base = update(i, i + 1, orders[i], space, True) if corrected[i] else xt[-1]
    A, B = np.zeros(n), np.zeros((n, n))
    for i in range(n):
        A[i] = xt[i + 1][0] / xt[i][0]
        rest = xt[i + 1] - A[i] * xt[i]
        B[i, :i + 1] = rest[i + 1:0:-1]  # m_i, m_{i-1}, ..., m_0
    return A, B


def usf(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, orders=None, eps=None,
        corrected=None) -> Sampler:
    """The per-step solver of ``usf_tables`` (defaults: UniPC bh2, order 2, data prediction)."""
    check_grid(grid)
    d_orders, d_eps, d_corr = default_choices(grid)
    A, B = usf_tables(grid, d_orders if orders is None else orders, d_eps if eps is None else eps,
                      d_corr if corrected is None else corrected)
    return linear_multistep(grid, predictor(schedule, predicts, "x0"), A, B)
