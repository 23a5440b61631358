"""The one shape: ``Sampler(init, step, num_steps)`` and ``sample`` built on ``lax.scan``.

Every ODE/SDE solver, MCMC kernel and SMC sampler of the library is a ``Sampler``:

* ``init(x, key=None, model_fn=None) -> State`` builds a fixed-shape pytree state.
  Deterministic solvers ignore ``key`` and ``model_fn``; MCMC kernels use
  ``model_fn`` to evaluate the initial log-density and gradient.
* ``step(state, key, model_fn) -> State`` is pure, jit-able and vmap-able; it
  reads its precomputed coefficients by ``state.i``.
* ``num_steps`` is static; ``nfe`` is the exact number of model calls of a full
  run (an upper bound for adaptive solvers, whose state counts the real number).
* ``transition`` (stochastic samplers whose step is a Gaussian transition only, else
  None): ``transition(state, model_fn) -> Transition``, the step before its noise:
  x_{i+1} ~ N(mean, scale^2 I) and ``step`` is ``gaussian_step(transition)``. SMC,
  twisting and guidance read it instead of re-deriving a method's coefficients.

Every state carries ``x`` (the current sample), ``i`` (the step index) and
``nfe`` (model calls so far).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array
PRNGKey = jax.Array
ModelFn = Callable[[Array, Array], Array]
State = Any


class Sampler(NamedTuple):
    init: Callable[..., State]
    step: Callable[[State, PRNGKey, ModelFn], State]
    num_steps: int
    nfe: int
    transition: Callable[[State, ModelFn], "Transition"] | None = None


class Transition(NamedTuple):
    """Step i of a Gaussian-transition sampler: x_{i+1} ~ N(mean, scale^2 I).

    ``mean`` is affine in the model output: mean = rest + out_coef * output, with
    ``output`` the model output at (x_i, t) in the sampler's space (``space``: x0, eps or
    velocity), so a guided or twisted output m' gives the mean + out_coef (m' - output).
    ``state`` is the next state with ``x = mean`` (noise not yet added)."""

    mean: Array
    scale: Array  # scalar noise std of this step (0 on a noise-free step)
    output: Array
    out_coef: Array  # scalar weight of ``output`` in ``mean``
    t: Array  # the model time of step i
    space: str
    state: State


def gaussian_step(transition: Callable[[State, ModelFn], Transition]) -> Callable[[State, PRNGKey, ModelFn], State]:
    """The step of a Gaussian transition: mean + scale z, z ~ N(0, I) from the step key."""

    def step(state, key, model_fn):
        tr = transition(state, model_fn)
        x = tr.mean + tr.scale * jax.random.normal(key, tr.mean.shape, tr.mean.dtype)
        return tr.state.replace(x=x)

    return step


@struct.dataclass
class BasicState:
    """State of samplers that carry nothing beyond the sample itself."""

    x: Array
    i: Array
    nfe: Array


def basic_init(x: Array, key: PRNGKey | None = None, model_fn: ModelFn | None = None) -> BasicState:
    del key, model_fn
    return BasicState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32))


def sample(
    sampler: Sampler,
    model_fn: ModelFn,
    x: Array,
    key: PRNGKey | None = None,
    trajectory: Union[bool, Callable[[State], Any]] = False,
):
    """Run ``sampler`` for ``num_steps`` steps from ``x`` with ``lax.scan``.

    Returns the final state; with ``trajectory=True`` returns ``(final, states)``
    where ``states`` stacks every state after each step (leading axis
    ``num_steps``); a callable ``trajectory`` selects what to stack, e.g.
    ``lambda s: s.x``. Jit it with ``jax.jit(sample, static_argnums=(0, 1))``.
    """
    if key is None:
        key = jax.random.PRNGKey(0)
    init_key, step_key = jax.random.split(key)
    state = sampler.init(x, key=init_key, model_fn=model_fn)
    keys = jax.random.split(step_key, sampler.num_steps)
    if trajectory is True:
        record = lambda s: s
    elif trajectory is False:
        record = lambda s: None
    else:
        record = trajectory

    def body(s, k):
        s = sampler.step(s, k, model_fn)
        return s, record(s)

    final, stacked = jax.lax.scan(body, state, keys)
    if trajectory is False:
        return final
    return final, stacked


def take(table, i: Array, dtype) -> Array:
    """Row ``i`` of a numpy coefficient table, as a JAX array of ``dtype``."""
    return jnp.asarray(table)[i].astype(dtype)


def take_rows(i: Array, dtype, *tables) -> list[Array]:
    """Row ``i`` of each numpy table (leading axis: the step), all read by one gather from one
    packed constant -- a step's coefficients cost one small dynamic slice, not one each."""
    n = np.shape(tables[0])[0]
    flat = np.concatenate([np.asarray(t, np.float64).reshape(n, -1) for t in tables], axis=1)
    row = jnp.asarray(flat, dtype)[i]
    out, start = [], 0
    for t in tables:
        shape = np.shape(t)[1:]
        size = int(np.prod(shape, dtype=int))
        out.append(row[start:start + size].reshape(shape))
        start += size
    return out
