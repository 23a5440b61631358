"""Step-size adaptation by dual averaging (Nesterov 2009; Hoffman & Gelman 2014, Alg. 5).

With a_t the mean acceptance probability of warm-up step t and delta the target,

    Hbar_t = (1 - 1/(t + t0)) Hbar_{t-1} + (delta - a_t) / (t + t0),
    log h_{t+1} = mu - sqrt(t) / gamma * Hbar_t,     mu = log(10 h_0),
    log hbar_{t+1} = t^{-kappa} log h_{t+1} + (1 - t^{-kappa}) log hbar_t,

and the step size to keep after warm-up is hbar. ``dual_averaging_update`` is the
pure update; ``adapt_step_size`` runs it under ``lax.scan`` with any kernel whose
state carries ``step_size`` and ``log_accept`` (``mala``, ``hmc``), one step size
shared by all chains (a_t averaged over them).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from samplers.core import Sampler
from samplers.checks import check_int
from samplers.mcmc.common import accept_prob


@struct.dataclass
class DualAveragingState:
    log_step: jax.Array  # log h_t, the step size to use next
    log_step_avg: jax.Array  # log hbar_t, the step size to keep
    count: jax.Array  # t (starts at 1)
    avg_error: jax.Array  # Hbar_t
    mu: jax.Array


def dual_averaging_init(step_size) -> DualAveragingState:
    log_h = jnp.log(jnp.asarray(step_size, jnp.result_type(float)))
    z = jnp.zeros((), log_h.dtype)
    return DualAveragingState(log_step=log_h, log_step_avg=z, count=jnp.ones((), jnp.int32), avg_error=z,
                              mu=jnp.log(10.0) + log_h)


def dual_averaging_update(state: DualAveragingState, accept: jax.Array, target: float = 0.8, t0: float = 10.0,
                          gamma: float = 0.05, kappa: float = 0.75) -> DualAveragingState:
    """One dual-averaging update with observed acceptance probability ``accept``."""
    t = state.count.astype(state.avg_error.dtype)
    avg_error = (1.0 - 1.0 / (t + t0)) * state.avg_error + (target - accept) / (t + t0)
    log_step = state.mu - jnp.sqrt(t) / gamma * avg_error
    w = t ** (-kappa)
    log_step_avg = w * log_step + (1.0 - w) * state.log_step_avg
    return DualAveragingState(log_step=log_step, log_step_avg=log_step_avg, count=state.count + 1,
                              avg_error=avg_error, mu=state.mu)


def _check_range(name, value, lo, hi, text, closed=False):
    """Check a hyper-parameter when it is a concrete number (a traced one is the caller's choice)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = float(value)
    if not (lo < v < hi or (closed and v == hi)):
        raise ValueError(f"{name} must lie in {text}, got {value!r}")


def adapt_step_size(sampler: Sampler, model_fn, x, key, num_warmup: int, target_accept: float = 0.8,
                    t0: float = 10.0, gamma: float = 0.05, kappa: float = 0.75):
    """Warm ``sampler`` up for ``num_warmup`` steps from ``x`` while adapting its step size.

    Returns ``(state, step_size, trace)``: the last warm-up state with its
    ``step_size`` set to the adapted hbar, hbar itself, and the per-step mean
    acceptance probabilities (num_warmup,). Jit with ``static_argnums=(0, 1, 4)``; the
    hyper-parameters are checked when given as Python numbers.
    """
    check_int("num_warmup", num_warmup)
    _check_range("target_accept", target_accept, 0.0, 1.0, "(0, 1)")
    _check_range("t0", t0, 0.0, float("inf"), "(0, inf)")
    _check_range("gamma", gamma, 0.0, float("inf"), "(0, inf)")
    _check_range("kappa", kappa, 0.5, 1.0, "(0.5, 1]", closed=True)
    init_key, key = jax.random.split(key)
    state = sampler.init(x, key=init_key, model_fn=model_fn)
    if not (hasattr(state, "step_size") and hasattr(state, "log_accept")):
        raise ValueError("adapt_step_size needs a Metropolis-adjusted kernel whose state has step_size and "
                         f"log_accept (mala, hmc); got a state of type {type(state).__name__}")
    da = dual_averaging_init(state.step_size)

    def body(carry, k):
        state, da = carry
        state = state.replace(step_size=jnp.exp(da.log_step).astype(state.x.dtype))
        state = sampler.step(state, k, model_fn)
        a = jnp.mean(accept_prob(state.log_accept))
        da = dual_averaging_update(da, a, target_accept, t0, gamma, kappa)
        return (state, da), a

    (state, da), trace = jax.lax.scan(body, (state, da), jax.random.split(key, num_warmup))
    step_size = jnp.exp(da.log_step_avg)
    return state.replace(step_size=step_size.astype(state.x.dtype)), step_size, trace
