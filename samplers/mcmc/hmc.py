"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps (Duane et al. 1987; Neal 2011).

With a diagonal inverse mass matrix M^{-1} (identity by default), H(x, p) =
-log p(x) + p^T M^{-1} p / 2. One step draws p ~ N(0, M), runs L leapfrog steps
of size h (velocity Verlet, the integrator of blackjax's ``hmc``),

    p <- p + (h/2) g(x),   x <- x + h M^{-1} p,   p <- p + (h/2) g(x),

and accepts the end point (x_L, p_L) with log-probability H(x_0, p_0) - H(x_L, p_L)
(the momentum flip that makes the proposal an involution does not change H).
p is drawn from the first and the accept uniform from the second half of
``jax.random.split(key)``. Step-size adaptation: ``samplers.mcmc.adaptation``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import accept_prob, check_target, evaluator, metropolis, sum_event


@struct.dataclass
class HMCState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    logdensity: jax.Array  # (B,)
    grad: jax.Array
    momentum: jax.Array  # the momentum drawn at the last step (zeros before any)
    step_size: jax.Array  # scalar; adaptation (samplers.mcmc.adaptation) replaces it
    log_accept: jax.Array  # (B,) log acceptance ratio of the last proposal (-inf before any)
    accepted: jax.Array  # (B,) bool
    accept_sum: jax.Array  # (B,) sum over steps of min(1, exp(log_accept))


def hamiltonian(ld, p, inv_mass):
    """H = -log p(x) + p^T M^{-1} p / 2, per chain."""
    return -ld + 0.5 * sum_event(inv_mass * p * p)


def leapfrog(evaluate, model_fn, x, p, ld, g, step_size, num_leapfrog: int, inv_mass):
    """``num_leapfrog`` velocity-Verlet steps; returns (x, p, logdensity, grad) at the end."""
    def body(_, carry):
        x, p, ld, g = carry
        p = p + 0.5 * step_size * g
        x = x + step_size * inv_mass * p
        ld, g = evaluate(model_fn, x)
        p = p + 0.5 * step_size * g
        return x, p, ld, g

    return jax.lax.fori_loop(0, num_leapfrog, body, (x, p, ld, g))


def hmc(step_size: float, num_leapfrog: int, num_steps: int, inverse_mass=None, target: str = "logdensity",
        t: float = 0.0) -> Sampler:
    """HMC with ``num_leapfrog`` gradient calls a step (plus one in ``init``).

    ``inverse_mass``: None (identity), a positive scalar or a positive array of one
    chain's event shape (a diagonal M^{-1}).
    """
    h0 = check_positive("step_size", step_size)
    n_lf = check_int("num_leapfrog", num_leapfrog)
    n = check_int("num_steps", num_steps)
    check_target(target, "hmc", adjusted=True)
    if inverse_mass is None:
        inv_mass = np.ones(())
    else:
        inv_mass = np.asarray(inverse_mass, np.float64)
        if not np.all(np.isfinite(inv_mass)) or np.any(inv_mass <= 0):
            raise ValueError("inverse_mass must be None or positive finite numbers (a diagonal M^{-1})")
    evaluate = evaluator(target, t)

    def init(x, key=None, model_fn=None):
        del key
        if inv_mass.ndim and inv_mass.shape != x.shape[1:]:
            raise ValueError(f"inverse_mass has shape {inv_mass.shape}, expected a chain's shape {x.shape[1:]}")
        ld, g = evaluate(model_fn, x)
        b = x.shape[0]
        return HMCState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.ones((), jnp.int32), logdensity=ld, grad=g,
                        momentum=jnp.zeros_like(x), step_size=jnp.asarray(h0, x.dtype),
                        log_accept=jnp.full((b,), -jnp.inf, x.dtype), accepted=jnp.zeros((b,), bool),
                        accept_sum=jnp.zeros((b,), x.dtype))

    def step(state, key, model_fn):
        k_mom, k_accept = jax.random.split(key)
        x, dt = state.x, state.x.dtype
        m_inv = jnp.asarray(inv_mass, dt)
        p0 = jax.random.normal(k_mom, x.shape, dt) / jnp.sqrt(m_inv)
        x1, p1, ld1, g1 = leapfrog(evaluate, model_fn, x, p0, state.logdensity, state.grad, state.step_size, n_lf,
                                   m_inv)
        log_a = hamiltonian(state.logdensity, p0, m_inv) - hamiltonian(ld1, p1, m_inv)
        (x, ld, g), accepted, log_a = metropolis(k_accept, log_a, (x1, ld1, g1), (x, state.logdensity, state.grad))
        return HMCState(x=x, i=state.i + 1, nfe=state.nfe + n_lf, logdensity=ld, grad=g, momentum=p0,
                        step_size=state.step_size, log_accept=log_a, accepted=accepted,
                        accept_sum=state.accept_sum + accept_prob(log_a))

    return Sampler(init=init, step=step, num_steps=n, nfe=n * n_lf + 1)
