"""The explicit-stages engine: several model calls a step (Runge-Kutta and singlestep
exponential integrators).

Step i evaluates stages s = 0..S-1 at times t_{i,s} on the inputs

    u_{i,0} = x_i,   u_{i,s} = a_{i,s} x_i + sum_{j<s} b_{i,s,j} m_{i,j},   m_{i,s} = model(u_{i,s}, t_{i,s})

and returns x_{i+1} = a_i x_i + sum_s c_{i,s} m_{i,s}. A stage inactive at a step
(lower order there, e.g. Heun's last step to sigma = 0) is skipped with
``lax.cond`` and not counted, so ``nfe`` is exact.

An optional pre-step noise ``(a_pre, g)`` first replaces x_i by a_pre_i x_i + g_i z,
z ~ N(0, I) drawn from the step's key (the stochastic samplers' churn and restart
re-noising, ``samplers/sde``); without it the key is unused.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, basic_init, take, take_rows
from samplers.ode.common import combine


def explicit_stages(
    wrap_model: Callable,
    t_stage: np.ndarray,
    a_in: np.ndarray,
    b_in: np.ndarray,
    a_out: np.ndarray,
    c_out: np.ndarray,
    active: np.ndarray,
    pre_noise: tuple[np.ndarray, np.ndarray] | None = None,
) -> Sampler:
    """Tables: t_stage, a_in (N, S); b_in (N, S, S) strictly lower triangular in (s, j);
    a_out (N,); c_out (N, S); active (N, S) bool with stage 0 always active;
    optional pre_noise = (a_pre (N,), g (N,))."""
    n, s_count = t_stage.shape
    if not np.all(active[:, 0]):
        raise ValueError("stage 0 must be active at every step")
    always = np.all(active, axis=0)
    nfe_per_step = active.sum(axis=1).astype(np.int32)

    def step(state: BasicState, key, model_fn):
        x, i, dt = state.x, state.i, state.x.dtype
        ts, ain, bin_, aout, cout, *pre = take_rows(i, dt, t_stage, a_in, b_in, a_out, c_out, *(pre_noise or ()))
        if pre_noise is not None:
            x = pre[0] * x + pre[1] * jax.random.normal(key, x.shape, dt)
        fn = wrap_model(model_fn)
        ms = []
        for s in range(s_count):
            u = x if s == 0 else ain[s] * x + combine(bin_[s, :s], ms)
            if always[s]:
                ms.append(fn(u, ts[s]))
            else:
                ms.append(jax.lax.cond(take(active[:, s], i, bool), fn, lambda u, ts: jnp.zeros_like(u), u, ts[s]))
        x_next = aout * x + combine(cout, ms)
        return BasicState(x=x_next, i=i + 1, nfe=state.nfe + take(nfe_per_step, i, jnp.int32))

    return Sampler(init=basic_init, step=step, num_steps=n, nfe=int(nfe_per_step.sum()))
