"""The one mechanism for training-free add-ons around any sampler (issue 22).

An add-on is an ``Addon(init, wrap, update, calls_per_call, conditional)``:

* ``init(x, key) -> carry``: what it carries beside the base sampler's state (a pytree, ``()`` for
  none); it may also change the initial sample through ``init_x`` (boost-and-skip).
* ``wrap(carry, key, model_fn) -> model_fn``: the model function of this step, from the inner one,
  its carry and its own step key (``fold_in`` of the step key, so the base sampler keeps its key and
  a zero-strength add-on leaves stochastic samplers bit for bit unchanged).
* ``update(carry, calls) -> carry`` (optional): the carry after the step, from the model calls the
  step made, ``calls`` a list of ``(x, t, out)`` with ``out`` the inner model's output (the
  add-on's input). Stateful add-ons need the base step to call the model outside inner
  ``lax.scan`` / ``cond`` (every solver of ``samplers/ode`` and ``samplers/sde`` does).
* ``calls_per_call``: model calls the wrapped model spends per call of the solver (NFE factor).
* ``differentiates``: the add-on calls its inner model under ``jax.grad`` (self-guided minority); a
  stateful add-on inside it would leak the recorded tracers, so that order is a ValueError.
* ``conditional``: the add-on turns a conditional ``model_fn(x, t, c)`` into ``model_fn(x, t)``
  (CADS with CFG); it must then be the first (innermost) add-on.

``with_addons(sampler, *addons)`` is again a ``Sampler`` with one pure ``step``: the state is
``AddonState(base, carry)``; add-ons wrap the model in the order given (the first is innermost).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
from flax import struct

from samplers.core import ModelFn, PRNGKey, Sampler

Array = jax.Array


class Addon(NamedTuple):
    init: Callable[[Array, PRNGKey], Any]
    wrap: Callable[[Any, PRNGKey, ModelFn], ModelFn]
    update: Callable[[Any, list], Any] | None = None
    calls_per_call: int = 1
    conditional: bool = False
    init_x: Callable[[Array], Array] | None = None  # a change of the initial sample (boost)
    differentiates: bool = False


def stateless(wrap_model: Callable[[ModelFn], ModelFn]) -> Addon:
    """An add-on that is a pure model_fn -> model_fn wrapper (no carry, no key)."""
    return Addon(init=lambda x, key: (), wrap=lambda carry, key, model_fn: wrap_model(model_fn))


def identity() -> Addon:
    """The add-on of zero strength: the inner model itself."""
    return stateless(lambda model_fn: model_fn)


def keyed(wrap_model: Callable[[PRNGKey, ModelFn], ModelFn], conditional: bool = False) -> Addon:
    """An add-on whose model wrapper draws from the step's key (no carry)."""
    return Addon(init=lambda x, key: (), wrap=lambda carry, key, model_fn: wrap_model(key, model_fn),
                 conditional=conditional)


@struct.dataclass
class AddonState:
    base: Any
    carry: tuple
    factor: int = struct.field(pytree_node=False, default=1)

    @property
    def x(self) -> Array:
        return self.base.x

    @property
    def i(self) -> Array:
        return self.base.i

    @property
    def nfe(self) -> Array:
        return self.base.nfe * self.factor


def _recording(model_fn: ModelFn, calls: list) -> ModelFn:
    def fn(x, t, *args):
        out = model_fn(x, t, *args)
        calls.append((x, t, out))
        return out

    return fn


def with_addons(sampler: Sampler, *addons: Addon) -> Sampler:
    """``sampler`` with ``addons`` wrapped around its model (the first innermost), one ``Sampler``.

    ValueError when an entry is not an ``Addon``, a conditional add-on (CADS) is not the first, or a
    stateful add-on comes before (inside) one that differentiates its inner model."""
    if not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be a Sampler, got {type(sampler).__name__}")
    if not addons:
        raise ValueError("addons must name at least one Addon")
    for j, a in enumerate(addons):
        if not isinstance(a, Addon):
            raise ValueError(f"addons[{j}] must be an Addon, got {type(a).__name__}")
        if a.conditional and j != 0:
            raise ValueError(f"addons[{j}] takes a conditional model_fn(x, t, c) and must be the first add-on")
        if a.differentiates and any(b.update is not None for b in addons[:j]):
            raise ValueError(f"addons[{j}] differentiates its inner model: stateful add-ons must come after it")
    factor = 1
    for a in addons:
        factor *= int(a.calls_per_call)

    def init(x, key=None, model_fn=None):
        key = jax.random.PRNGKey(0) if key is None else key
        carry = []
        for j, a in enumerate(addons):
            if a.init_x is not None:
                x = a.init_x(x)
            carry.append(a.init(x, jax.random.fold_in(key, j + 1)))
        return AddonState(base=sampler.init(x, key=key, model_fn=model_fn), carry=tuple(carry), factor=factor)

    def step(state: AddonState, key, model_fn):
        fn, records = model_fn, []
        for j, a in enumerate(addons):
            calls: list = []
            inner = _recording(fn, calls) if a.update is not None else fn
            fn = a.wrap(state.carry[j], jax.random.fold_in(key, j + 1), inner)
            records.append(calls)
        base = sampler.step(state.base, key, fn)
        carry = tuple(c if a.update is None else a.update(c, calls)
                      for a, c, calls in zip(addons, state.carry, records))
        return AddonState(base=base, carry=carry, factor=factor)

    return Sampler(init=init, step=step, num_steps=sampler.num_steps, nfe=sampler.nfe * factor)
