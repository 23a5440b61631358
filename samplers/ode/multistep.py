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
noise drawn from the step's key only. Without a corrector such a step is a
Gaussian transition, exposed as ``Sampler.transition`` (``core.Transition``:
mean A_i x_i + sum_k B_{i,k} H_k, scale g_i, the output m_i and its weight B_{i,0}).

An optional compensation table D (N, 3) replaces m_i, after the corrector has used it, by
D_{i,0} m_i + D_{i,1} H^{old}_0 + D_{i,2} H^{old}_1 in the predictor and in the history
(DC-Solver's dynamic compensation, ``samplers.ode.dc_solver``; D may be traced, to search it).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, Transition, gaussian_step, take, take_rows
from samplers.grids import TimeGrid
from samplers.ode.common import combine


@struct.dataclass
class MultistepState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    hist: jax.Array | None  # past model outputs, most recent first: K-1 of them (K with a corrector)
    x_prev: jax.Array | None  # x_{i-1}, the base point of the corrector (None without one)


def linear_multistep(
    grid: TimeGrid,
    wrap_model: Callable,
    A: np.ndarray,
    B: np.ndarray,
    corrector: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    noise: np.ndarray | None = None,
    compensation=None,
) -> Sampler:
    """A ``Sampler`` from coefficient tables A (N,), B (N, K), an optional
    corrector (Ac (N,), C (N, K), cn (N,)) and optional noise scales g (N,).
    A corrector row with Ac = 0, C = 0 and cn = 0 means "no correction at this
    step" (x_i is kept). The state carries only what later steps read: K-1 past
    outputs (K and x_{i-1} with a corrector), so DDIM's state is x alone. ``compensation``: the
    table D of the module docstring (numpy, or a JAX array), which needs 2 past outputs kept."""
    n, k = B.shape
    if A.shape != (n,) or n != grid.num_steps:
        raise ValueError("coefficient tables must have one row per step of the grid")
    t = grid.t[:-1]
    tables = (A, B)
    if corrector is not None:
        tables += tuple(corrector)
        active = (corrector[0] != 0) | np.any(corrector[1] != 0, axis=1) | (corrector[2] != 0)
    if noise is not None:
        tables += (noise,)
    depth = k if corrector is not None else k - 1
    if compensation is not None:
        if compensation.shape != (n, 3) or depth < 2:
            raise ValueError(f"compensation must be a table ({n}, 3) on an engine keeping >= 2 past outputs, got "
                             f"shape {compensation.shape} with {depth} kept")
        # the rows that are not (1, 0, 0) (every row of a JAX table, which may be traced)
        compensated = np.ones(n, bool) if isinstance(compensation, jax.Array) else np.any(
            np.asarray(compensation) != np.array([1.0, 0.0, 0.0]), axis=1)

    def init(x, key=None, model_fn=None):
        del key, model_fn
        z = jnp.zeros((), jnp.int32)
        hist = jnp.zeros((depth,) + x.shape, x.dtype) if depth else None
        return MultistepState(x=x, i=z, nfe=z, hist=hist, x_prev=x if corrector is not None else None)

    def advance(state, model_fn):
        """(m_i, the next state with x = the noise-free part of x_{i+1}, the noise scale g_i, B_{i,0}, t_i)."""
        x, i, dt = state.x, state.i, state.x.dtype
        ti = take(t, i, dt)
        m = wrap_model(model_fn)(x, ti)
        a, b, *rest = take_rows(i, dt, *tables)
        past = [] if state.hist is None else [state.hist[j] for j in range(depth)]
        if corrector is not None:
            ac, c, cn = rest[:3]
            xc = ac * state.x_prev + combine(c, past) + cn * m
            x = jnp.where(take(active, i, bool), xc, x)
        if compensation is not None:  # identity rows keep m itself: UniPC bit for bit
            m = jnp.where(take(compensated, i, bool), combine(take(compensation, i, dt), [m] + past[:2]), m)
        hist = [m] + past[:k - 1]
        nxt = MultistepState(x=a * x + combine(b, hist), i=i + 1, nfe=state.nfe + 1,
                             hist=jnp.stack(hist[:depth]) if depth else None,
                             x_prev=x if corrector is not None else None)
        return m, nxt, (rest[-1] if noise is not None else None), b[0], ti

    def step(state, key, model_fn):
        _, nxt, g, _, _ = advance(state, model_fn)
        if g is None:
            return nxt
        return nxt.replace(x=nxt.x + g * jax.random.normal(key, nxt.x.shape, nxt.x.dtype))

    transition = None
    if noise is not None and corrector is None:
        space = getattr(wrap_model, "space", None)

        def transition(state, model_fn):
            m, nxt, g, b0, ti = advance(state, model_fn)
            return Transition(mean=nxt.x, scale=g, output=m, out_coef=b0, t=ti, space=space, state=nxt)

        step = gaussian_step(transition)

    return Sampler(init=init, step=step, num_steps=n, nfe=n, transition=transition)


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
