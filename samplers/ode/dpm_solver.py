"""DPM-Solver (Lu et al. 2022a, arXiv:2206.00927) and DPM-Solver++ (Lu et al. 2022b, arXiv:2211.01095).

Both solve the probability-flow ODE with its linear part integrated exactly in
lambda = log(alpha / sigma) and the model output Taylor-expanded in lambda. From s to t,
h = lambda_t - lambda_s and phi_k(z) = sum_j z^j / (j + k)!:

* DPM-Solver, on the noise prediction eps:
      x_t = (alpha_t / alpha_s) x_s - sigma_t sum_n h^(n+1) phi_(n+1)(h) eps^(n)(lambda_s),
* DPM-Solver++, on the data prediction x0:
      x_t = (sigma_t / sigma_s) x_s + alpha_t sum_n h^(n+1) phi_(n+1)(-h) x0^(n)(lambda_s),

written x_t = A x_s + c_1 m_s + c_2 D_1 + c_3 D_2 with D_n ~ h^n m^(n) finite differences of
model outputs m (``exp_coefs``). The differences come from

* ``method="singlestep"``: intermediate model calls inside the step, at lambda_s + r h with
  r1 = 1/2 (DPM-Solver-2, DPM-Solver++(2S)) or r1 = 1/3, r2 = 2/3 (DPM-Solver-3) (Lu et al.
  2022a, Alg. 1-2; 2022b, Alg. 1), on the ``singlestep.explicit_stages`` engine. ``orders``
  gives each interval its own order (``dpm_solver_fast_grid``: "DPM-Solver-fast").
  ``stages="grid"`` instead takes every stage point from the grid, ``orders`` grouping its
  steps, as diffusers' DPMSolverSinglestepScheduler does.
* ``method="multistep"``: past outputs on the grid (DPM-Solver++(2M), Lu et al. 2022b, Alg. 2,
  and 3M; multistep DPM-Solver), on the ``multistep.linear_multistep`` engine, warming up with
  lower orders and lowering the final orders as diffusers' DPMSolverMultistepScheduler does.
  The third-order multistep update of the reference code and diffusers forms
  D_2 = (D1_0 - D1_1)/(r0 + r1) ~ h^2 m''/2 yet weights it by c_3, half the Taylor term, so it
  is exact only for model outputs linear in lambda (local error O(h^3): second order);
  ``third_order="taylor"`` weights it by 2 c_3 (third order), ``"reference"`` (default)
  reproduces diffusers.

``solver_type`` is the reference code's choice of second-order difference term:
``"dpmsolver"`` (0.5 c_1 D_1, diffusers' "midpoint") or ``"taylor"`` (c_2 D_1, diffusers'
"heun"); third-order singlestep "taylor" uses both intermediate outputs in c_2 D_1 + c_3 D_2.
A step that ends at sigma = 0 (lambda = +inf) is always first order (DDIM), with
coefficients written to stay finite there. Order 1 is DDIM (``samplers.ode.ddim``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from samplers.core import Sampler
from samplers.grids import CONTINUOUS_SPACINGS, TimeGrid, time_grid
from samplers.ode.common import check_choice, check_grid, check_order, predictor
from samplers.ode.exponential import exp_coefs
from samplers.ode.multistep import linear_multistep, multistep_orders
from samplers.ode.singlestep import explicit_stages
from samplers.schedules import Schedule, xp_of

ORDERS = (1, 2, 3)
METHODS = ("singlestep", "multistep")
SOLVER_TYPES = ("dpmsolver", "taylor")
STAGES = ("lambda", "grid")
THIRD_ORDERS = ("reference", "taylor")
STAGE_RATIOS = {1: (), 2: (0.5,), 3: (1.0 / 3.0, 2.0 / 3.0)}  # r_k of the singlestep intermediate points


def singlestep_coefs(space: str, solver_type: str, order: int, p_s, p_t, mids=()):
    """Stage tables of one singlestep interval of ``order`` from p_s to p_t, with the
    intermediate points ``mids`` = (p_1[, p_2]) at r_k = (lambda_k - lambda_s) / h.

    Returns (a_in[3], b_in[3][3], a_out, c_out[3]) for ``explicit_stages``:
    u_k = a_in[k] x + sum_j b_in[k][j] m_j, x_t = a_out x + sum_k c_out[k] m_k.
    """
    zero = 0.0 * p_s[0]
    a_in, b_in, c_out = [zero] * 3, [[zero] * 3 for _ in range(3)], [zero] * 3
    a_out, c = exp_coefs(space, p_s, p_t, order)
    if order == 1:
        c_out[0] = c[0]
        return a_in, b_in, a_out, c_out
    h = p_t[2] - p_s[2]
    r1 = (mids[0][2] - p_s[2]) / h
    a_in[1], (b_in[1][0],) = exp_coefs(space, p_s, mids[0], 1)
    if order == 2:
        w = 0.5 * c[0] / r1 if solver_type == "dpmsolver" else c[1] / r1
        c_out[0], c_out[1] = c[0] - w, w
        return a_in, b_in, a_out, c_out
    r2 = (mids[1][2] - p_s[2]) / h
    a_in[2], (c21, c22) = exp_coefs(space, p_s, mids[1], 2)
    b_in[2][0], b_in[2][1] = c21 - (r2 / r1) * c22, (r2 / r1) * c22
    if solver_type == "dpmsolver":
        c_out[0], c_out[2] = c[0] - c[1] / r2, c[1] / r2
        return a_in, b_in, a_out, c_out
    # taylor: D1_0 = (m1 - m0)/r1, D1_1 = (m2 - m0)/r2, D1 = (r2 D1_0 - r1 D1_1)/(r2 - r1), D2 = 2 (D1_1 - D1_0)/(r2 - r1)
    d10, d11 = [-1.0 / r1, 1.0 / r1, zero], [-1.0 / r2, zero, 1.0 / r2]
    for j in range(3):
        d1 = (r2 * d10[j] - r1 * d11[j]) / (r2 - r1)
        d2 = 2.0 * (d11[j] - d10[j]) / (r2 - r1)
        c_out[j] = (c[0] if j == 0 else zero) + c[1] * d1 + c[2] * d2
    return a_in, b_in, a_out, c_out


def multistep_tables(grid: TimeGrid, space: str, orders: np.ndarray, solver_type: str,
                     third_order: str = "reference"):
    """(A (N,), B (N, K)) of multistep DPM-Solver(++) for ``linear_multistep`` on ``grid``; K = max order
    (``multistep_rows`` on the grid's points)."""
    A, B = multistep_rows(grid.alpha, grid.sigma, grid.lam, space, orders, solver_type, third_order)
    return A, B[:, :int(max(orders))]


def multistep_rows(alpha, sigma, lam, space: str, orders, solver_type: str, third_order: str = "reference"):
    """(A (N,), B (N, 3)) of multistep DPM-Solver(++) between the N + 1 points (alpha, sigma, lambda),
    numpy (build time) or jnp (times that may be traced: LSD+ differentiates through them).
    With r0 = h_(i-1)/h_i, r1 = h_(i-2)/h_i: D1_0 = (m_i - m_(i-1))/r0, D1_1 = (m_(i-1) - m_(i-2))/r1;
    order 2 adds 0.5 c_1 D1_0 ("dpmsolver") or c_2 D1_0 ("taylor"); order 3 adds c_2 D_1 + w c_3 D_2
    with D_1 = D1_0 + r0/(r0 + r1)(D1_0 - D1_1) ~ h m', D_2 = (D1_0 - D1_1)/(r0 + r1) ~ h^2 m''/2:
    w = 1 in the reference code and diffusers (``third_order="reference"``: only half the second
    Taylor term, so the local error stays O(h^3)), w = 2 for the Taylor-consistent third order."""
    xp = xp_of(alpha, sigma, lam)
    A, B = [], []
    for i, p in enumerate(orders):
        a, c = exp_coefs(space, (alpha[i], sigma[i], lam[i]), (alpha[i + 1], sigma[i + 1], lam[i + 1]), int(p))
        row = xp.asarray([1.0, 0.0, 0.0]) * c[0]
        if p >= 2:
            h = lam[i + 1] - lam[i]
            r0 = (lam[i] - lam[i - 1]) / h
            d10 = xp.asarray([1.0, -1.0, 0.0]) / r0
        if p == 2:
            row = row + (0.5 * c[0] if solver_type == "dpmsolver" else c[1]) * d10
        elif p == 3:
            r1 = (lam[i - 1] - lam[i - 2]) / h
            d11 = xp.asarray([0.0, 1.0, -1.0]) / r1
            w = 1.0 if third_order == "reference" else 2.0
            row = row + (c[1] * (d10 + r0 / (r0 + r1) * (d10 - d11)) + w * c[2] * (d10 - d11) / (r0 + r1))
        A.append(a)
        B.append(row)
    return xp.stack(A), xp.stack(B)


def _point(schedule: Schedule, t):
    return schedule.alpha(t), schedule.sigma(t), schedule.lambda_(t)


def singlestep_tables(schedule: Schedule, grid: TimeGrid, space: str, orders: Sequence[int], solver_type: str,
                      stages: str):
    """(t_stage, a_in, b_in, a_out, c_out, active) for ``explicit_stages``, one row per interval.
    ``stages="lambda"``: interval i spans grid step i, intermediate points at lambda_s + r_k h;
    ``stages="grid"``: an interval of order p spans p grid steps, its stages at their points."""
    n, s_count = len(orders), int(max(orders))
    pts = list(zip(grid.t, grid.alpha, grid.sigma, grid.lam))
    t_stage, a_in = np.zeros((n, s_count)), np.zeros((n, s_count))
    b_in, c_out = np.zeros((n, s_count, s_count)), np.zeros((n, s_count))
    a_out, active = np.zeros(n), np.zeros((n, s_count), bool)
    start = 0
    for i, p in enumerate(orders):
        end = start + p if stages == "grid" else start + 1
        (t_s, *p_s), (_, *p_t) = pts[start], pts[end]
        if stages == "grid":
            ts = [pts[start + k][0] for k in range(1, p)]
            mids = [tuple(pts[start + k][1:]) for k in range(1, p)]
        else:
            h = p_t[2] - p_s[2]
            ts = [float(schedule.t_from_lambda(p_s[2] + r * h)) for r in STAGE_RATIOS[p]]
            mids = [_point(schedule, t) for t in ts]
        ai, bi, a_out[i], co = singlestep_coefs(space, solver_type, p, tuple(p_s), tuple(p_t), mids)
        t_stage[i] = ([t_s] + ts + [t_s] * s_count)[:s_count]
        a_in[i] = np.asarray(ai, np.float64)[:s_count]
        b_in[i] = np.asarray(bi, np.float64)[:s_count, :s_count]
        c_out[i] = np.asarray(co, np.float64)[:s_count]
        active[i, :p] = True
        start = end
    return t_stage, a_in, b_in, a_out, c_out, active


def _check_lambda(grid: TimeGrid) -> None:
    if not np.all(np.isfinite(grid.lam[:-1])) or np.isneginf(grid.lam[-1]):
        raise ValueError("grid: lambda = log(alpha/sigma) must be finite at every point but a last one at "
                         "sigma = 0 (start at a t where alpha > 0, e.g. t_start < 1 for the flow schedule)")


def _singlestep_orders(grid: TimeGrid, order: int, orders, stages: str) -> list[int]:
    ends_zero = bool(grid.sigma[-1] == 0.0)
    if orders is None:
        if stages == "grid":
            raise ValueError("stages='grid' needs explicit orders (how the grid's steps group into intervals)")
        out = [order] * grid.num_steps
        if ends_zero:
            out[-1] = 1
        return out
    out = [int(p) for p in orders]
    if any(p != q or p not in range(1, order + 1) for p, q in zip(out, orders)):
        raise ValueError(f"orders must hold integers in [1, order={order}], got {list(orders)}")
    if stages == "lambda" and len(out) != grid.num_steps:
        raise ValueError(f"orders must have one entry per grid step ({grid.num_steps}), got {len(out)}")
    if stages == "grid" and sum(out) != grid.num_steps:
        raise ValueError(f"with stages='grid', sum(orders) must equal the grid's steps ({grid.num_steps}), "
                         f"got {sum(out)}")
    if ends_zero and out[-1] != 1:
        raise ValueError("orders: the last interval ends at sigma = 0, where only order 1 is defined")
    return out


def _build(schedule, grid, space, order, predicts, method, lower_order_final, thresholding, solver_type,
           orders, stages, third_order) -> Sampler:
    check_grid(grid)
    check_choice("method", method, METHODS)
    order = check_order(order, ORDERS)
    check_choice("solver_type", solver_type, SOLVER_TYPES)
    check_choice("stages", stages, STAGES)
    check_choice("third_order", third_order, THIRD_ORDERS)
    _check_lambda(grid)
    wrap = predictor(schedule, predicts, space, thresholding)
    if method == "multistep":
        if orders is not None or stages != "lambda":
            raise ValueError("orders and stages apply to method='singlestep' only")
        steps_orders = multistep_orders(grid.num_steps, order, bool(lower_order_final), grid.final_zero)
        A, B = multistep_tables(grid, space, steps_orders, solver_type, third_order)
        return linear_multistep(grid, wrap, A, B)
    tables = singlestep_tables(schedule, grid, space, _singlestep_orders(grid, order, orders, stages),
                               solver_type, stages)
    return explicit_stages(wrap, *tables)


def dpm_solver_pp(schedule: Schedule, grid: TimeGrid, order: int = 2, predicts: str = "eps",
                  method: str = "multistep", lower_order_final: bool = True, thresholding: dict | None = None, *,
                  solver_type: str = "dpmsolver", orders: Sequence[int] | None = None, stages: str = "lambda",
                  third_order: str = "reference") -> Sampler:
    """DPM-Solver++ (Lu et al. 2022b) on the data prediction: 2M / 3M (``method="multistep"``,
    one model call a step) or 2S / 3S (``"singlestep"``, ``order`` calls a step; per-interval
    ``orders``, ``stages`` as in the module docstring). ``lower_order_final`` (multistep only)
    follows diffusers; ``third_order`` (multistep only) picks the reference/diffusers 3M weights or
    the Taylor-consistent ones (see ``multistep_tables``); ``thresholding`` (kwargs of
    ``samplers.param.dynamic_threshold``) clips the data prediction (Imagen). ``order=1`` is DDIM."""
    return _build(schedule, grid, "x0", order, predicts, method, lower_order_final, thresholding, solver_type,
                  orders, stages, third_order)


def dpm_solver(schedule: Schedule, grid: TimeGrid, order: int = 3, predicts: str = "eps",
               method: str = "singlestep", orders: Sequence[int] | None = None, *, lower_order_final: bool = True,
               solver_type: str = "dpmsolver", stages: str = "lambda", third_order: str = "reference") -> Sampler:
    """DPM-Solver (Lu et al. 2022a) on the noise prediction: singlestep DPM-Solver-1/2/3
    (``order`` model calls a grid step, or per-interval ``orders``, see ``dpm_solver_fast_grid``)
    or multistep of order 2/3 (one call a step; warm-up, ``lower_order_final`` and
    ``third_order`` as in ``dpm_solver_pp``). ``order=1`` is DDIM."""
    return _build(schedule, grid, "eps", order, predicts, method, lower_order_final, None, solver_type, orders,
                  stages, third_order)


def fast_orders(nfe: int, order: int) -> list[int]:
    """DPM-Solver-fast's per-interval orders spending exactly ``nfe`` calls (Lu et al. 2022a and
    its reference code): order 3 takes K = nfe//3 + 1 intervals, [3,..,3,2,1] / [3,..,3,1] / [3,..,3,2]
    for nfe % 3 = 0 / 1 / 2; order 2 takes [2,..,2] (+ [1] if nfe is odd); order 1 nfe x [1]."""
    if order == 3:
        k = nfe // 3 + 1
        return [3] * (k - 2) + [2, 1] if nfe % 3 == 0 else [3] * (k - 1) + ([1] if nfe % 3 == 1 else [2])
    if order == 2:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    return [1] * nfe


def dpm_solver_fast_grid(schedule: Schedule, nfe: int, order: int = 3, spacing: str = "logsnr",
                         t_start: float | None = None, t_end: float | None = None) -> tuple[TimeGrid, list[int]]:
    """(grid, orders) of DPM-Solver-fast for a budget of ``nfe`` model calls, as the reference code
    splits it: ``spacing="logsnr"`` spaces the K intervals uniformly in lambda; any other spacing
    takes the points of the ``nfe``-step grid at the cumulative orders. Pass both to
    ``dpm_solver(..., order=order, orders=orders)`` (or ``dpm_solver_pp``): its nfe is ``nfe``."""
    if not isinstance(nfe, (int, np.integer)) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    order = check_order(order, ORDERS)
    check_choice("spacing", spacing, CONTINUOUS_SPACINGS)
    orders = fast_orders(int(nfe), order)
    if spacing == "logsnr":
        return time_grid(schedule, len(orders), "logsnr", t_start=t_start, t_end=t_end), orders
    fine = time_grid(schedule, int(nfe), spacing, t_start=t_start, t_end=t_end)
    idx = np.cumsum([0] + orders)
    return TimeGrid(fine.t[idx], fine.alpha[idx], fine.sigma[idx], fine.lam[idx]), orders
