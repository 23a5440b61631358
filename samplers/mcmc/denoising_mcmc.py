"""Denoising MCMC (Kim & Ye 2022): MCMC in the product space of data and noise level,
then a few steps of an ODE solver from each chain's own level to the data.

The levels are the points t_0 > ... > t_{N-1} of a solver grid ending at sigma = 0.
The chains target pi(j, x) ∝ w_j p_{t_j}(x) (w: ``level_weights``, uniform by
default). A sweep is

1. a MALA step on x at the chain's level j, step h_j = ``step_scale`` sigma_j^2;
2. a Metropolis move of the level to j +- 1 (prob. 1/2 each; outside [0, N) rejected),
   accepted with min(1, w_j' p_{t_j'}(x) / (w_j p_{t_j}(x))).

As every p_t integrates to 1, the level marginal is w and x | j ~ p_{t_j}. Then the
library's ODE solver (``"ddim"``, ``"euler"`` or ``"heun"``, on the score of the same
model) runs over the grid; a chain at level j is held until the solver reaches
step j and integrated from t_j on, so every chain ends at sigma = 0 with the law
p_0 up to the solver's error. These solvers carry no history, so holding a chain
is exact.

``model_fn(x, t)`` must be the *normalised* log p_t(x) (``predicts="logdensity"``,
e.g. ``GaussianMixture.log_prob_fn(schedule)``): the level move compares densities
across levels. Kim & Ye replace that move by a learned noise-level estimator when
only a score is known; that variant is not implemented. Each chain has its own
level, so the MCMC phase calls ``model_fn`` per chain (``vmap`` over chains with a
scalar t each): two value-and-gradient calls a sweep (plus one in ``init``).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import accept_prob, metropolis, native, per_chain
from samplers.mcmc.langevin import langevin_proposal, mala_log_accept
from samplers.ode.common import check_choice, check_grid
from samplers.ode.ddim import ddim
from samplers.ode.rk import euler, heun
from samplers.schedules import Schedule

SOLVERS = {"ddim": ddim, "euler": euler, "heun": heun}


@struct.dataclass
class DenoisingMCMCState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    level: jax.Array  # (B,) int32, index into the grid's levels
    logdensity: jax.Array  # (B,) log p_{t_level}(x)
    grad: jax.Array
    accept_sum: jax.Array  # (B,) sum of MALA acceptance probabilities
    level_accept_sum: jax.Array  # (B,) sum of level-move acceptance probabilities
    solver: Any  # the ODE solver's state


def per_chain_value_and_grad(model_fn, x, t):
    """(log p_{t_b}(x_b), grad) for each chain b with its own scalar time t_b (vmap over chains)."""
    def one(xb, tb):
        return jax.value_and_grad(lambda y: model_fn(y[None], tb)[0])(xb)

    return jax.vmap(one)(x, t)


def denoising_mcmc(schedule: Schedule, grid: TimeGrid, num_sweeps: int, step_scale: float = 0.5,
                   solver: str = "heun", level_weights=None, predicts: str = "logdensity") -> Sampler:
    """``num_sweeps`` MCMC sweeps on (level, x), then ``solver`` over ``grid`` (which must end
    at sigma = 0: ``time_grid(..., final="zero")``)."""
    check_grid(grid)
    n_mcmc = check_int("num_sweeps", num_sweeps)
    r = check_positive("step_scale", step_scale)
    check_choice("solver", solver, list(SOLVERS))
    if predicts != "logdensity":
        raise ValueError("denoising_mcmc needs predicts='logdensity' (model_fn returning the normalised "
                         f"log p_t(x)) for its level moves; got predicts={predicts!r}")
    if not grid.final_zero:
        raise ValueError("denoising_mcmc needs a grid that ends at sigma = 0; build it with final='zero'")
    n_lev = grid.num_steps
    if level_weights is None:
        log_w = np.zeros(n_lev)
    else:
        w = np.asarray(level_weights, np.float64)
        if w.shape != (n_lev,) or np.any(~np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"level_weights must be {n_lev} positive numbers (one per level of grid), got {w!r}")
        log_w = np.log(w / w.sum())
    t_lev, h_lev = grid.t[:-1], r * grid.sigma[:-1] ** 2
    ode = SOLVERS[solver](schedule, grid, "score")
    total = n_mcmc + ode.num_steps

    def mcmc(state, key, model_fn):
        x, dt, lev = state.x, state.x.dtype, state.level
        k_z, k_acc, k_dir, k_lev = jax.random.split(key, 4)
        t_b, h_b = jnp.asarray(t_lev, dt)[lev], jnp.asarray(h_lev, dt)[lev]
        x_new = langevin_proposal(x, state.grad, h_b, jax.random.normal(k_z, x.shape, dt))
        ld_new, g_new = per_chain_value_and_grad(model_fn, x_new, t_b)
        log_a = mala_log_accept(x, x_new, state.logdensity, ld_new, state.grad, g_new, h_b)
        (x, ld, g), _, log_a = metropolis(k_acc, log_a, (x_new, ld_new, g_new), (x, state.logdensity, state.grad))
        prop = lev + jnp.where(jax.random.bernoulli(k_dir, 0.5, lev.shape), 1, -1)
        valid = (prop >= 0) & (prop < n_lev)
        prop = jnp.clip(prop, 0, n_lev - 1)
        ld_p, g_p = per_chain_value_and_grad(model_fn, x, jnp.asarray(t_lev, dt)[prop])
        lw = jnp.asarray(log_w, dt)
        log_b = jnp.where(valid, lw[prop] + ld_p - lw[lev] - ld, -jnp.inf)
        (lev, ld, g), _, log_b = metropolis(k_lev, log_b, (prop, ld_p, g_p), (lev, ld, g))
        return state.replace(x=x, i=state.i + 1, nfe=state.nfe + 2, level=lev, logdensity=ld, grad=g,
                             accept_sum=state.accept_sum + accept_prob(log_a),
                             level_accept_sum=state.level_accept_sum + accept_prob(log_b))

    def solve(state, key, model_fn):
        k = state.i - n_mcmc
        s = jax.lax.cond(k == 0, lambda: ode.init(state.x), lambda: state.solver)
        new = ode.step(s, key, native(model_fn, "logdensity")[0])
        x = jnp.where(per_chain(k >= state.level, state.x), new.x, s.x)
        return state.replace(x=x, i=state.i + 1, nfe=state.nfe + new.nfe - s.nfe, solver=new.replace(x=x))

    def init(x, key=None, model_fn=None):
        del key
        b, dt = x.shape[0], x.dtype
        lev = jnp.zeros((b,), jnp.int32)
        ld, g = per_chain_value_and_grad(model_fn, x, jnp.full((b,), t_lev[0], dt))
        z = jnp.zeros((b,), dt)
        return DenoisingMCMCState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.ones((), jnp.int32), level=lev,
                                  logdensity=ld, grad=g, accept_sum=z, level_accept_sum=z, solver=ode.init(x))

    def step(state, key, model_fn):
        return jax.lax.cond(state.i < n_mcmc, lambda s, k: mcmc(s, k, model_fn), lambda s, k: solve(s, k, model_fn),
                            state, key)

    return Sampler(init=init, step=step, num_steps=total, nfe=1 + 2 * n_mcmc + ode.nfe)
