"""Inference-time scaling for flow models (Kim et al. 2025, "Inference-Time Scaling for Flow
Models via Stochastic Generation and Rollover Budget Forcing").

* ``flow_sde``: the probability-flow ODE dx/dt = u(x, t) of a flow (or any) schedule turned into
  the reverse-time SDE with the same marginals for any diffusion coefficient g(t) >= 0:

      dx = [u(x, t) - (g(t)^2 / 2) score(x, t)] dt + g(t) dW-bar   (dt < 0, noise at t = 1),

  (the Fokker-Planck equation of this SDE is the ODE's continuity equation), with the score
  from the velocity, score = (a/a' u - x) / (s^2 - (a/a') s' s) for x = a x0 + s eps (Kim et
  al. eq. 8; ``samplers.param`` converts velocity -> score, the one place conversions live).
  Euler-Maruyama on the grid: since the score is affine in u at fixed (x, t), one step is the
  Gaussian transition x_{i+1} = A_i x_i + B_i u_i + g_i sqrt(|dt_i|) z of the multistep engine
  (``Sampler.transition`` exposed, memoryless: usable by SMC and search).
* ``rollover_budget_forcing`` (Kim et al. Sec. 5): under a fixed budget of model calls, at each
  step draw candidates from the base kernel one at a time until one's look-ahead value
  r(x0_hat) beats the current particle's (else keep the best drawn when the step's calls run
  out); the unused calls of a step roll over to the next one, and the last step spends the rest.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.checks import check_int
from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid, predictor
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule
from samplers.smc.search import LookaheadState, check_base, check_reward, draw, lookahead, lookahead_init


def _schedule_derivs(schedule: Schedule, t) -> tuple[np.ndarray, ...]:
    """(alpha, sigma, alpha', sigma') at times ``t`` in float64 (forward-mode autodiff, build time)."""
    with jax.enable_x64(True):
        t = jnp.asarray(np.asarray(t, np.float64))
        (a, s), (da, ds) = jax.jvp(lambda u: (schedule.alpha(u), schedule.sigma(u)), (t,), (jnp.ones_like(t),))
        return tuple(np.asarray(v, np.float64) for v in (a, s, da, ds))


def diffusion_values(diffusion, t: np.ndarray) -> np.ndarray:
    """g(t) >= 0 on the model times: ``diffusion`` is a number or a numpy-vectorised callable."""
    if callable(diffusion):
        g = np.asarray(diffusion(np.asarray(t, np.float64)), np.float64) * np.ones_like(t)
    elif np.isscalar(diffusion) and not isinstance(diffusion, (bool, str)):
        g = np.full_like(t, float(diffusion))
    else:
        raise ValueError(f"diffusion must be a number or a callable g(t), got {type(diffusion).__name__}")
    if g.shape != t.shape or not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError(f"diffusion must give finite values g(t) >= 0 at the grid's times, got {g}")
    return g


def flow_sde_coefficients(schedule: Schedule, grid: TimeGrid, diffusion) -> tuple[np.ndarray, ...]:
    """(A, B, noise) of the Euler-Maruyama step in velocity space: with the score
    -(a u - a' x) / (det s), det = a s' - s a', the mean x + dt (u - g^2/2 score) is
    A x + B u with A = 1 - dt g^2 a' / (2 det s), B = dt (1 + g^2 a / (2 det s)); noise g sqrt(|dt|)."""
    check_grid(grid)
    t = grid.t[:-1]
    a, s, da, ds = _schedule_derivs(schedule, t)
    g = diffusion_values(diffusion, t)
    det = a * ds - s * da
    if not (np.all(s > 0) and np.all(np.abs(det) > 0) and np.all(np.isfinite(det))):
        raise ValueError(f"flow_sde needs sigma > 0 at every model time of the grid; its times {t} reach sigma = 0 "
                         "(end the grid with the step onto it, e.g. time_grid(flow(), n, 'uniform'))")
    dt = grid.t[1:] - t
    half = g**2 / (2.0 * det * s)
    return 1.0 - dt * half * da, dt * (1.0 + half * a), g * np.sqrt(np.abs(dt))


def flow_sde(schedule: Schedule, grid: TimeGrid, diffusion=1.0, predicts: str = "velocity") -> Sampler:
    """The marginal-preserving reverse SDE with diffusion coefficient g(t) = ``diffusion`` (a number
    or a callable, e.g. ``lambda t: t**2``), Euler-Maruyama on ``grid``; g = 0 is the Euler ODE."""
    A, B, g = flow_sde_coefficients(schedule, grid, diffusion)
    return linear_multistep(grid, predictor(schedule, predicts, "velocity"), A, B[:, None], noise=g)


# -- rollover budget forcing ------------------------------------------------------------------------

def rollover_budget_forcing(sampler: Sampler, schedule: Schedule, reward_fn: Callable, budget: int) -> Sampler:
    """Rollover budget forcing (Kim et al. 2025, Sec. 5): each row of x is one problem with
    ``budget`` model calls for the run (plus one for the first value). Step i may spend its
    quota budget // num_steps (the last step: all that is left) plus the calls the earlier steps
    left unused; it draws candidates x_{i+1} ~ base kernel one at a time, each costing one call
    for its look-ahead value r(x0_hat), and takes the first that beats the current value, or the
    best drawn when the calls run out (at least one call a step). The last step spends all the
    calls left and keeps the best candidate, so every problem uses exactly 1 + ``budget`` calls."""
    check_base(sampler)
    check_reward(reward_fn)
    n = sampler.num_steps
    budget = check_int("budget", budget, n)
    quota = np.full(n, budget // n)
    quota[-1] += budget - quota.sum()
    spent_by = np.concatenate([[0], np.cumsum(quota)])  # calls allowed before step i

    def one(x, mean, scale, value, i, spent, key, model_fn):
        """One problem (x: (1, ...)): draw until improvement or the rollover quota is spent."""
        allowed = jnp.asarray(spent_by, jnp.int32)[i + 1] - spent

        def cond(c):
            k, used, best_v, _, _, _, better = c
            return (used < allowed) & ~(better & (i < n - 1))  # the last step spends all that is left

        def body(c):
            k, used, best_v, best_x, best_m, best_s, _ = c
            k, kz = jax.random.split(k)
            cand = draw(mean, scale, kz)
            v, m, s = lookahead(sampler, schedule, reward_fn, cand, i + 1, model_fn)
            take = (v[0] > best_v) | (used == 0)
            keep = lambda new, old: jnp.where(take, new, old)
            return (k, used + 1, keep(v[0], best_v), keep(cand, best_x), keep(m, best_m), keep(s, best_s),
                    v[0] > value)

        init = (key, jnp.zeros((), jnp.int32), -jnp.inf, x, mean, scale, jnp.zeros((), bool))
        _, used, v, x, m, s, _ = jax.lax.while_loop(cond, body, init)
        return x, m, s, v, spent + used

    def step(state, key, model_fn):
        b = state.x.shape[0]
        rows = lambda a: a.reshape((b, 1) + a.shape[1:])
        x, m, s, v, spent = jax.vmap(one, in_axes=(0, 0, None, 0, None, 0, 0, None))(
            rows(state.x), rows(state.mean), state.scale, state.value, state.i, state.nfe - 1,
            jax.random.split(key, b), model_fn)
        flat = lambda a: a.reshape((b,) + a.shape[2:])
        return LookaheadState(x=flat(x), i=state.i + 1, nfe=spent + 1, value=v, mean=flat(m), scale=s[0])

    base_init = lookahead_init(sampler, schedule, reward_fn)

    def init(x, key=None, model_fn=None):
        st = base_init(x, key, model_fn)
        return st.replace(nfe=jnp.ones((x.shape[0],), jnp.int32))

    return Sampler(init=init, step=step, num_steps=n, nfe=1 + budget)
