"""Diffusion sampling with momentum (Wizadwongsa et al. 2023, "Diffusion Sampling with Momentum
for Mitigating Divergence Artifacts"): Polyak's heavy ball (HB) and generalised heavy ball (GHVB)
on linear multistep solvers x_{i+1} = A_i x_i + c_i d_i, where d_i = sum_k w_{i,k} m_{i-k} is the
update direction (weights summing to 1) and c_i = sum_k B_{i,k} its step.

* HB: v_i = (1 - beta) v_{i-1} + beta d_i (v_0 = d_0), x_{i+1} = A_i x_i + c_i v_i; first order.
  (The reference DPM-Solver++ variant starts v at its second step; here v starts at the first.)
* GHVB: the momentum acts on the model outputs, v_i = (1 - beta) v_{i-1} + beta m_i (v_0 = m_0),
  and x_{i+1} = A_i x_i + c_i sum_k w_k(beta) v_{i-k} with the order-k weights
  w(beta) = [(1 + q nabla) Phi(nabla)]_{<k},  q = (1 - beta) / beta,
  Phi(nabla) = sum_j gamma_j nabla^j the Adams-Bashforth series (gamma = 1, 1/2, 5/12, 3/8, ...),
  nabla the backward difference: order k is kept for any beta (the paper's GHVB k-1+beta).

beta = 1 is the base solver. Bases: PLMS (Adams-Bashforth in y = x/alpha, s = sigma/alpha,
dy/ds = eps, uniform-step weights as in the reference code) for HB and GHVB, and
DPM-Solver++(2M/3M) (``samplers.ode.dpm_solver``) for HB.
"""
from __future__ import annotations

from fractions import Fraction
from math import comb

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, take
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, check_order, combine, predictor
from samplers.ode.dpm_solver import multistep_tables
from samplers.ode.multistep import multistep_orders
from samplers.schedules import Schedule

METHODS = ("hb", "ghvb")
MAX_ORDER = 5


@struct.dataclass
class MomentumState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    hist: jax.Array  # (K, *x.shape): model outputs (HB) or velocities (GHVB), most recent first
    v: jax.Array  # HB velocity


def adams_bashforth_gammas(n: int) -> list[Fraction]:
    """gamma_0..gamma_{n-1} of AB's backward-difference series: sum_{j<=m} gamma_j / (m - j + 1) = 1."""
    g: list[Fraction] = []
    for m in range(n):
        g.append(1 - sum(g[j] / (m - j + 1) for j in range(m)))
    return g


def ghvb_weights(order: int, beta: float = 1.0) -> np.ndarray:
    """Weights on (v_i, v_{i-1}, ..., v_{i-order+1}); beta = 1 gives Adams-Bashforth of ``order``."""
    gam = adams_bashforth_gammas(order)
    q = (1.0 - beta) / beta
    c = [float(gam[0])] + [float(gam[j]) + q * float(gam[j - 1]) for j in range(1, order)]
    return np.array([sum(c[j] * comb(j, m) * (-1) ** m for j in range(m, order)) for m in range(order)])


def _check_beta(beta) -> float:
    if not np.isscalar(beta) or not np.isfinite(beta) or not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be a number in (0, 1], got {beta!r}")
    return float(beta)


def momentum_multistep(grid: TimeGrid, wrap_model, A: np.ndarray, B: np.ndarray, beta: float,
                       method: str = "hb") -> Sampler:
    """HB on the direction of the multistep tables (A (N,), B (N, K)), or, for ``"ghvb"``, B
    applied to the history of velocities (B then holds c_i w(beta))."""
    n, k = B.shape
    if A.shape != (n,) or n != grid.num_steps:
        raise ValueError("coefficient tables must have one row per step of the grid")
    c = B.sum(axis=1)
    if method == "hb" and np.any(c == 0):
        raise ValueError("heavy ball needs a nonzero step sum_k B[i, k] at every step")
    W = B / np.where(c == 0, 1.0, c)[:, None]
    t = grid.t[:-1]

    def init(x, key=None, model_fn=None):
        del key, model_fn
        z = jnp.zeros((), jnp.int32)
        return MomentumState(x=x, i=z, nfe=z, hist=jnp.zeros((k,) + x.shape, x.dtype), v=jnp.zeros_like(x))

    def step(state, key, model_fn):
        del key
        x, i, dt = state.x, state.i, state.x.dtype
        m = wrap_model(model_fn)(x, take(t, i, dt))
        first = i == 0
        if method == "hb":
            hist = jnp.concatenate([m[None], state.hist[:-1]], axis=0)
            d = combine(take(W, i, dt), hist)
            v = jnp.where(first, d, (1.0 - beta) * state.v + beta * d)
            x_next = take(A, i, dt) * x + take(c, i, dt) * v
        else:
            v = jnp.where(first, m, (1.0 - beta) * state.hist[0] + beta * m)
            hist = jnp.concatenate([v[None], state.hist[:-1]], axis=0)
            x_next = take(A, i, dt) * x + combine(take(B, i, dt), hist)
        return MomentumState(x=x_next, i=i + 1, nfe=state.nfe + 1, hist=hist, v=v)

    return Sampler(init=init, step=step, num_steps=n, nfe=n)


def plms_momentum(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", order: int = 2, beta: float = 0.8,
                  method: str = "ghvb") -> Sampler:
    """PLMS of ``order`` (1..5, lower at the start) in (y, s) with HB or GHVB momentum ``beta``."""
    check_grid(grid)
    order = check_order(order, range(1, MAX_ORDER + 1))
    beta = _check_beta(beta)
    check_choice("method", method, METHODS)
    if grid.alpha[0] == 0.0:  # y = x / alpha
        raise ValueError("plms_momentum integrates x/alpha and needs alpha > 0 at the first grid point; give the "
                         "grid a t_start where alpha > 0")
    n = grid.num_steps
    A = grid.alpha[1:] / grid.alpha[:-1]
    ds = grid.alpha[1:] * (grid.sigma[1:] / grid.alpha[1:] - grid.sigma[:-1] / grid.alpha[:-1])
    B = np.zeros((n, order))
    for i in range(n):
        p = min(order, i + 1)
        B[i, :p] = ds[i] * ghvb_weights(p, beta if method == "ghvb" else 1.0)
    return momentum_multistep(grid, predictor(schedule, predicts, "eps"), A, B, beta, method)


def dpm_solver_pp_hb(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", order: int = 2, beta: float = 0.8,
                     lower_order_final: bool = True) -> Sampler:
    """DPM-Solver++(2M/3M) (x0 space, diffusers' "midpoint" form) with heavy-ball momentum ``beta``."""
    check_grid(grid)
    order = check_order(order, (1, 2, 3))
    beta = _check_beta(beta)
    orders = multistep_orders(grid.num_steps, order, bool(lower_order_final), grid.final_zero)
    A, B = multistep_tables(grid, "x0", orders, "dpmsolver")
    return momentum_multistep(grid, predictor(schedule, predicts, "x0"), A, B, beta, "hb")
