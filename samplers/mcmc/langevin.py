"""Overdamped Langevin kernels: ULA and MALA.

Both propose the Euler-Maruyama step of dX = grad log p(X) dt + sqrt(2) dW with
step size h (the convention of blackjax's ``mala``):

    x' = x + h g(x) + sqrt(2 h) z,   z ~ N(0, I).

* ``ula``: the unadjusted Langevin algorithm keeps every proposal (biased by
  O(h); works from a score alone).
* ``mala``: Metropolis-adjusted (Roberts & Tweedie 1996); with the Gaussian
  proposal density q(x'|x) = N(x'; x + h g(x), 2h I),

      log a(x -> x') = log p(x') - log p(x) - |x - x' - h g(x')|^2 / (4h) + |x' - x - h g(x)|^2 / (4h).

The step draws z from the first and the uniform of the accept test from the
second half of ``jax.random.split(key)``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from samplers.core import Sampler
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import accept_prob, check_target, evaluator, metropolis, per_chain, sum_event


@struct.dataclass
class ULAState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    logdensity: jax.Array | None  # (B,), None for target="score"
    grad: jax.Array


@struct.dataclass
class MALAState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    logdensity: jax.Array  # (B,)
    grad: jax.Array
    step_size: jax.Array  # scalar; adaptation (samplers.mcmc.adaptation) replaces it
    log_accept: jax.Array  # (B,) log acceptance ratio of the last proposal (-inf before any)
    accepted: jax.Array  # (B,) bool, the last proposal was accepted
    accept_sum: jax.Array  # (B,) sum over steps of min(1, exp(log_accept))


def langevin_proposal(x, grad, step_size, z):
    """x + h g + sqrt(2h) z (``step_size`` a scalar or one per chain)."""
    h = step_size if jnp.ndim(step_size) == 0 else per_chain(step_size, x)
    return x + h * grad + jnp.sqrt(2.0 * h) * z


def mala_log_accept(x, x_new, ld, ld_new, grad, grad_new, step_size):
    """Log Metropolis-Hastings ratio of the Langevin proposal x -> x_new, per chain
    (``step_size`` a scalar or one per chain)."""
    h = step_size if jnp.ndim(step_size) == 0 else per_chain(step_size, x)
    fwd = sum_event((x_new - x - h * grad) ** 2)
    bwd = sum_event((x - x_new - h * grad_new) ** 2)
    return ld_new - ld - (bwd - fwd) / (4.0 * step_size)


def ula(step_size: float, num_steps: int, target: str = "logdensity", t: float = 0.0) -> Sampler:
    """Unadjusted Langevin algorithm; one model call a step (plus one in ``init``)."""
    h = check_positive("step_size", step_size)
    n = check_int("num_steps", num_steps)
    check_target(target, "ula")
    evaluate = evaluator(target, t)

    def init(x, key=None, model_fn=None):
        del key
        ld, g = evaluate(model_fn, x)
        return ULAState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.ones((), jnp.int32), logdensity=ld, grad=g)

    def step(state, key, model_fn):
        z = jax.random.normal(key, state.x.shape, state.x.dtype)
        x = langevin_proposal(state.x, state.grad, jnp.asarray(h, state.x.dtype), z)
        ld, g = evaluate(model_fn, x)
        return ULAState(x=x, i=state.i + 1, nfe=state.nfe + 1, logdensity=ld, grad=g)

    return Sampler(init=init, step=step, num_steps=n, nfe=n + 1)


def mala(step_size: float, num_steps: int, target: str = "logdensity", t: float = 0.0) -> Sampler:
    """Metropolis-adjusted Langevin algorithm; one model call a step (plus one in ``init``)."""
    h0 = check_positive("step_size", step_size)
    n = check_int("num_steps", num_steps)
    check_target(target, "mala", adjusted=True)
    evaluate = evaluator(target, t)

    def init(x, key=None, model_fn=None):
        del key
        ld, g = evaluate(model_fn, x)
        b = x.shape[0]
        return MALAState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.ones((), jnp.int32), logdensity=ld, grad=g,
                         step_size=jnp.asarray(h0, x.dtype), log_accept=jnp.full((b,), -jnp.inf, x.dtype),
                         accepted=jnp.zeros((b,), bool), accept_sum=jnp.zeros((b,), x.dtype))

    def step(state, key, model_fn):
        k_noise, k_accept = jax.random.split(key)
        x, h = state.x, state.step_size
        x_new = langevin_proposal(x, state.grad, h, jax.random.normal(k_noise, x.shape, x.dtype))
        ld_new, g_new = evaluate(model_fn, x_new)
        log_a = mala_log_accept(x, x_new, state.logdensity, ld_new, state.grad, g_new, h)
        (x, ld, g), accepted, log_a = metropolis(k_accept, log_a, (x_new, ld_new, g_new),
                                                 (x, state.logdensity, state.grad))
        return MALAState(x=x, i=state.i + 1, nfe=state.nfe + 1, logdensity=ld, grad=g, step_size=h,
                         log_accept=log_a, accepted=accepted, accept_sum=state.accept_sum + accept_prob(log_a))

    return Sampler(init=init, step=step, num_steps=n, nfe=n + 1)
