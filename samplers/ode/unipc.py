"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
Sampling of Diffusion Models"): the multistep predictor UniP-p and the corrector UniC-p.

With h = lambda_t - lambda_s, hh = -h (data prediction, m = x0) or hh = h (noise
prediction, m = eps), c_t = alpha_t (resp. sigma_t) and A = sigma_t/sigma_s (resp.
alpha_t/alpha_s), one update from (x_s, m_s = m_0) with past outputs m_{-k} at
lambda_{-k} (r_k = (lambda_{-k} - lambda_s)/h, D_k = (m_{-k} - m_0)/r_k) is (Alg. 2-3, Eq. 8)

    x_t = A x_s - c_t (e^hh - 1) m_0 - c_t B(hh) sum_k rho_k D_k,

with B(hh) = hh (``bh1``) or e^hh - 1 (``bh2``) and rho solving R_p rho = g_p / B(hh),
R_p[j, k] = r_k^j, g_p[j] = j! hh phi_{j+1}(hh) (j = 1..p). UniP-p uses p-1 past
outputs (rho = 1/2 at p = 2, as the reference code); UniC-p re-does the step that
produced x_t with the model output at x_t appended as a node at r = 1 (rho = 1/2 at
p = 1), raising the order to p+1 at no extra model call. The corrected x_t is kept;
the model output stored in the history is the one taken at the uncorrected x_t, and
the final x_N is never corrected.

Orders follow diffusers' ``UniPCMultistepScheduler``: warm-up min(order, i+1), with
``lower_order_final`` min(order, N - i); the corrector uses the order of the predictor
step it re-does. A step to sigma = 0 is always order 1 (extrapolating in lambda to
lambda = +inf diverges), and its limit is exact: x_N = m (data prediction).
"""
from __future__ import annotations

from math import factorial

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, check_order, predictor
from samplers.ode.exponential import exp_coefs, phi
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule

VARIANTS = ("bh1", "bh2")


def _point(grid: TimeGrid, j: int):
    return grid.alpha[j], grid.sigma[j], grid.lam[j]


def bh_rhos(grid: TimeGrid, s: int, t: int, past: list[int], corrector: bool, predict_x0: bool,
            variant: str) -> tuple[float, np.ndarray, np.ndarray]:
    """(B(hh), rho, r) for the update s -> t with past nodes ``past`` (grid indices,
    most recent first); the corrector appends the node t itself (r = 1)."""
    h = grid.lam[t] - grid.lam[s]
    hh = -h if predict_x0 else h
    b_h = hh if variant == "bh1" else np.expm1(hh)
    r = np.array([(grid.lam[j] - grid.lam[s]) / h for j in past] + ([1.0] if corrector else []))
    p = len(r)
    if p == 0:
        return b_h, np.zeros(0), r
    if p == 1:  # UniP-2 / UniC-1: rho = 1/2 (Zhao et al., App. and reference code)
        return b_h, np.array([0.5]), r
    g = np.array([factorial(j) * hh * float(phi(j + 1, hh)) for j in range(1, p + 1)])
    R = np.stack([r**j for j in range(p)])
    return b_h, np.linalg.solve(R, g / b_h), r


def unipc_orders(grid: TimeGrid, order: int, lower_order_final: bool) -> np.ndarray:
    """Predictor order of every step: warm-up, diffusers' lower_order_final, order 1 to sigma = 0.
    A first point with alpha = 0 (lambda = -inf) is no interpolation node."""
    n = grid.num_steps
    first = 1 if np.isneginf(grid.lam[0]) else 0
    i = np.arange(n)
    orders = np.minimum(order, np.maximum(i - first + 1, 1))
    if lower_order_final:
        orders = np.minimum(orders, n - i)
    orders[grid.sigma[1:] == 0.0] = 1
    return orders


def unipc_coefficients(grid: TimeGrid, order: int, variant: str, predict_x0: bool, lower_order_final: bool,
                       corrector: bool, disable_corrector=()):
    """Tables (A, B, (Ac, C, cn) or None) of UniPC for ``linear_multistep`` (history size ``order``)."""
    n, space = grid.num_steps, "x0" if predict_x0 else "eps"
    scale = grid.alpha if predict_x0 else grid.sigma  # c_t
    orders = unipc_orders(grid, order, lower_order_final)
    A, B = np.zeros(n), np.zeros((n, order))
    for i in range(n):
        p = int(orders[i])
        A[i], (B[i, 0],) = exp_coefs(space, _point(grid, i), _point(grid, i + 1))
        if p > 1:
            b_h, rho, r = bh_rhos(grid, i, i + 1, [i - k for k in range(1, p)], False, predict_x0, variant)
            w = scale[i + 1] * b_h * rho / r
            B[i, 0] += w.sum()
            B[i, 1:p] = -w
    if not corrector:
        return A, B, None
    Ac, C, cn = np.zeros(n), np.zeros((n, order)), np.zeros(n)
    skip = set(int(j) for j in disable_corrector)
    for i in range(1, n):
        # UniC-p re-does step i-1 (s = i-1 -> t = i) with the output at x_i as extra node.
        s, p = i - 1, int(orders[i - 1])
        if s in skip or not np.isfinite(grid.lam[s]):
            continue
        Ac[i], (C[i, 0],) = exp_coefs(space, _point(grid, s), _point(grid, i))
        b_h, rho, r = bh_rhos(grid, s, i, [s - k for k in range(1, p)], True, predict_x0, variant)
        w = scale[i] * b_h * rho / r  # the last node (x_i's output) has r = 1
        C[i, 0] += w.sum()
        C[i, 1:p] = -w[:-1]
        cn[i] = -w[-1]
    return A, B, (Ac, C, cn)


def _check_disable(disable_corrector, n: int) -> tuple[int, ...]:
    try:
        idx = tuple(disable_corrector)
    except TypeError:
        raise ValueError(f"disable_corrector must be a sequence of step indices, got {disable_corrector!r}") from None
    for j in idx:
        if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)) or not 0 <= j < n:
            raise ValueError(
                f"disable_corrector entries must be integers in [0, {n - 1}] (the predictor steps whose "
                f"output is not corrected), got {j!r}"
            )
    return idx


def unipc(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, order: int = 2, variant: str = "bh2",
          corrector: bool = True, predict_x0: bool = True, lower_order_final: bool = True,
          disable_corrector=(), thresholding: dict | None = None) -> Sampler:
    """UniPC-p (``corrector=True``, order p+1) or UniP-p (``corrector=False``, order p); one
    model call a step. ``disable_corrector`` lists predictor steps j whose output x_{j+1} is
    not corrected (diffusers' convention); ``thresholding`` (data prediction only) is
    ``samplers.param.dynamic_threshold``'s keyword arguments."""
    check_grid(grid)
    order = check_order(order, (1, 2, 3))
    check_choice("variant", variant, VARIANTS)
    for name, value in (("corrector", corrector), ("predict_x0", predict_x0), ("lower_order_final", lower_order_final)):
        check_choice(name, value, (True, False))
    skip = _check_disable(disable_corrector, grid.num_steps)
    if not predict_x0 and grid.alpha[0] == 0.0:
        raise ValueError("predict_x0=False (noise prediction) needs alpha > 0 at the first grid point; "
                         "use predict_x0=True on a grid starting at alpha = 0")
    wrap = predictor(schedule, predicts, "x0" if predict_x0 else "eps", thresholding)
    A, B, corr = unipc_coefficients(grid, order, variant, predict_x0, lower_order_final, corrector, skip)
    return linear_multistep(grid, wrap, A, B, corrector=corr)
