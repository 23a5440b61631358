"""The linear multistep engine: one model call a step, a fixed-size history, an optional corrector.

At step i, with m_i the model output at x_i (in the solver's space) and the
history H = [m_i, m_{i-1}, ..., m_{i-K+1}] (most recent first, zeros before the
start), every multistep exponential integrator of the library is

    corrector (optional, UniC):  x_i <- Ac_i x_{i-1} + sum_k C_{i,k} H^{old}_k + cn_i m_i
    predictor:                   x_{i+1} = A_i x_i + sum_k B_{i,k} H_k  (+ g_i z,  z ~ N(0, I))

with all coefficients depending on the time grid only. They are computed once in
float64 numpy by each method's builder (DDIM, DPM-Solver(++) multistep, UniPC,
DEIS); lower orders at the start or the end are rows whose extra weights are 0.
The optional noise scale g_i makes the same engine serve the stochastic
multistep samplers (DDIM with eta, DDPM ancestral, SDE-DPM-Solver(++)), the
noise drawn from the step's key only.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, take
from samplers.grids import TimeGrid
from samplers.ode.common import combine


@struct.dataclass
class MultistepState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    hist: jax.Array  # (K, *x.shape) past model outputs, most recent first
    x_prev: jax.Array  # x_{i-1}, the base point of the corrector


def linear_multistep(
    grid: TimeGrid,
    wrap_model: Callable,
    A: np.ndarray,
    B: np.ndarray,
    corrector: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    noise: np.ndarray | None = None,
) -> Sampler:
    """A ``Sampler`` from coefficient tables A (N,), B (N, K), an optional
    corrector (Ac (N,), C (N, K), cn (N,)) and optional noise scales g (N,).
    A corrector row with Ac = 0, C = 0 and cn = 0 means "no correction at this
    step" (x_i is kept)."""
    n, k = B.shape
    if A.shape != (n,) or n != grid.num_steps:
        raise ValueError("coefficient tables must have one row per step of the grid")
    t = grid.t[:-1]
    if corrector is not None:
        Ac, C, cn = corrector
        active = (Ac != 0) | np.any(C != 0, axis=1) | (cn != 0)

    def init(x, key=None, model_fn=None):
        del key, model_fn
        z = jnp.zeros((), jnp.int32)
        return MultistepState(x=x, i=z, nfe=z, hist=jnp.zeros((k,) + x.shape, x.dtype), x_prev=x)

    def step(state, key, model_fn):
        x, i, dt = state.x, state.i, state.x.dtype
        m = wrap_model(model_fn)(x, take(t, i, dt))
        if corrector is not None:
            xc = take(Ac, i, dt) * state.x_prev + combine(take(C, i, dt), state.hist) + take(cn, i, dt) * m
            x = jnp.where(take(active, i, bool), xc, x)
        hist = jnp.concatenate([m[None], state.hist[:-1]], axis=0)
        x_next = take(A, i, dt) * x + combine(take(B, i, dt), hist)
        if noise is not None:
            x_next = x_next + take(noise, i, dt) * jax.random.normal(key, x.shape, dt)
        return MultistepState(x=x_next, i=i + 1, nfe=state.nfe + 1, hist=hist, x_prev=x)

    return Sampler(init=init, step=step, num_steps=n, nfe=n)


LOWER_ORDER_FINAL_STEPS = 15  # diffusers lowers the final orders below this many steps


def multistep_orders(num_steps: int, order: int, lower_order_final: bool, final_zero: bool) -> np.ndarray:
    """Per-step orders as diffusers' DPMSolverMultistepScheduler decides them: min(order, i+1)
    (warm-up); below 15 steps with ``lower_order_final`` the last step is first and the one
    before at most second order; a last step to sigma = 0 is always first order."""
    orders = np.minimum(order, np.arange(1, num_steps + 1))
    if lower_order_final and num_steps < LOWER_ORDER_FINAL_STEPS:
        orders[-1] = 1
        if num_steps >= 2:
            orders[-2] = min(orders[-2], 2)
    if final_zero:
        orders[-1] = 1
    return orders
