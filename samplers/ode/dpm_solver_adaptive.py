"""Adaptive step-size DPM-Solver-12 and DPM-Solver-23 (Lu et al. 2022a, arXiv:2206.00927, and its
reference code), on the noise prediction.

Each attempt from lambda_s with step h (in lambda) computes a lower- and a higher-order singlestep
estimate that share their model calls: DPM-Solver-1 and -2 (r1 = 1/2, ``order=2``: 2 calls) or
DPM-Solver-2 and -3 (r1 = 1/3, r2 = 2/3, ``order=3``: 3 calls). With
delta = max(atol, rtol max(|x_lower|, |x_prev|)) and the error
E = max over the batch of RMS((x_higher - x_lower) / delta), the attempt is accepted if E <= 1
(x <- x_higher, x_prev <- x_lower, lambda <- lambda + h); either way
h <- min(theta h E^(-1/order), lambda_end - lambda). One step size is shared by the whole batch;
a rejected attempt is redone from scratch (model at x_s called again), as in the reference code.

It fits the fixed shape of a ``Sampler``: one ``step`` is one attempt, ``num_steps = max_steps``
is a static upper bound, and a step once ``done`` (the end reached) is a no-op (``lax.cond``,
no model call). ``Sampler.nfe = order * max_steps`` is therefore an upper bound; the state's
``nfe`` counts the real model calls, ``i`` the attempts and ``rejected`` the rejected ones.
If ``done`` is still False after ``max_steps`` steps, the end was not reached. (Under ``vmap``
over states the ``lax.cond`` becomes a select and the no-op steps would call the model.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler
from samplers.ode.common import check_choice, check_order, predictor
from samplers.ode.dpm_solver import SOLVER_TYPES, STAGE_RATIOS, singlestep_coefs
from samplers.schedules import Schedule


@struct.dataclass
class AdaptiveState:
    x: jax.Array
    i: jax.Array  # attempts so far
    nfe: jax.Array  # model calls so far
    t: jax.Array  # current time (the schedule's own variable)
    lam: jax.Array  # current lambda
    h: jax.Array  # next step size in lambda
    x_prev: jax.Array  # lower-order estimate of the last accepted step (x at the start)
    done: jax.Array  # the end time has been reached
    rejected: jax.Array  # rejected attempts so far


def _positive(name: str, value) -> float:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def dpm_solver_adaptive(schedule: Schedule, predicts: str = "eps", order: int = 3, rtol: float = 0.05,
                        atol: float = 0.0078, t_start: float | None = None, t_end: float | None = None,
                        h_init: float = 0.05, theta: float = 0.9, max_steps: int = 200,
                        solver_type: str = "dpmsolver") -> Sampler:
    """DPM-Solver-12 (``order=2``) or -23 (``order=3``) from ``t_start`` (default the schedule's
    t_max) to ``t_end`` (default t_min, where sigma must be > 0), on the noise prediction.
    ``nfe`` of the returned Sampler is the upper bound ``order * max_steps`` (see module doc)."""
    order = check_order(order, (2, 3))
    check_choice("solver_type", solver_type, SOLVER_TYPES)
    rtol, atol, h_init = _positive("rtol", rtol), _positive("atol", atol), _positive("h_init", h_init)
    if not 0.0 < theta <= 1.0:
        raise ValueError(f"theta must lie in (0, 1], got {theta!r}")
    if not isinstance(max_steps, (int, np.integer)) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    t0 = float(schedule.t_max if t_start is None else t_start)
    t1 = float(schedule.t_min if t_end is None else t_end)
    schedule.check_t(np.array([t0, t1]), "t_start/t_end")
    if not t0 > t1:
        raise ValueError(f"t_start ({t0}) must be greater than t_end ({t1})")
    with np.errstate(divide="ignore"):
        lam0, lam1 = float(schedule.lambda_(np.float64(t0))), float(schedule.lambda_(np.float64(t1)))
    if not (np.isfinite(lam0) and np.isfinite(lam1)):
        raise ValueError(f"lambda must be finite at t_start and t_end (alpha > 0 and sigma > 0), got "
                         f"lambda(t_start)={lam0}, lambda(t_end)={lam1}")
    wrap = predictor(schedule, predicts, "eps")
    ratios = STAGE_RATIOS[order]

    def init(x, key=None, model_fn=None):
        del key, model_fn
        dt, z = x.dtype, jnp.zeros((), jnp.int32)
        return AdaptiveState(x=x, i=z, nfe=z, t=jnp.asarray(t0, dt), lam=jnp.asarray(lam0, dt),
                             h=jnp.asarray(min(h_init, lam1 - lam0), dt), x_prev=x, done=jnp.zeros((), bool),
                             rejected=z)

    def point(t):
        return schedule.alpha(t), schedule.sigma(t), schedule.lambda_(t)

    def attempt(st: AdaptiveState, model_fn) -> AdaptiveState:
        x, dt = st.x, st.x.dtype
        fn = wrap(model_fn)
        lam_end = jnp.asarray(lam1, dt)
        last = st.h >= lam_end - st.lam
        h = jnp.where(last, lam_end - st.lam, st.h)
        lam_t = jnp.where(last, lam_end, st.lam + h)
        t_t = jnp.where(last, jnp.asarray(t1, dt), schedule.t_from_lambda(lam_t))
        ts = [st.t] + [schedule.t_from_lambda(st.lam + r * h) for r in ratios]
        p_s, p_t, mids = point(ts[0]), point(t_t), [point(t) for t in ts[1:]]
        a_in, b_in, a_hi, c_hi = singlestep_coefs("eps", solver_type, order, p_s, p_t, mids)
        _, _, a_lo, c_lo = singlestep_coefs("eps", solver_type, order - 1, p_s, p_t, mids[: order - 2])
        ms = []
        for k in range(order):
            u = x if k == 0 else a_in[k] * x + sum(b_in[k][j] * ms[j] for j in range(k))
            ms.append(fn(u, ts[k].astype(dt)))
        x_hi = a_hi * x + sum(c_hi[k] * ms[k] for k in range(order))
        x_lo = a_lo * x + sum(c_lo[k] * ms[k] for k in range(order - 1))
        delta = jnp.maximum(atol, rtol * jnp.maximum(jnp.abs(x_lo), jnp.abs(st.x_prev)))
        err = ((x_hi - x_lo) / delta).reshape(x.shape[0], -1)
        e = jnp.max(jnp.sqrt(jnp.mean(err**2, axis=1)))
        accept = e <= 1.0
        lam_new = jnp.where(accept, lam_t, st.lam)
        h_new = jnp.minimum(theta * h * e ** (-1.0 / order), lam_end - lam_new)
        return AdaptiveState(
            x=jnp.where(accept, x_hi, x).astype(dt), i=st.i + 1, nfe=st.nfe + order,
            t=jnp.where(accept, t_t, st.t).astype(dt), lam=lam_new.astype(dt), h=h_new.astype(dt),
            x_prev=jnp.where(accept, x_lo, st.x_prev).astype(dt), done=accept & last,
            rejected=st.rejected + (~accept).astype(jnp.int32),
        )

    def step(state: AdaptiveState, key, model_fn) -> AdaptiveState:
        del key
        return jax.lax.cond(state.done, lambda s: s, lambda s: attempt(s, model_fn), state)

    return Sampler(init=init, step=step, num_steps=int(max_steps), nfe=int(order * max_steps))
