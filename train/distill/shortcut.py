"""Shortcut models (Frans et al. 2024; their JAX reference) as an objective of the one train loop.

The network s(x_t, t, d) is conditioned on the step size d (``models.mlp.MLP(cond_dim=1)``: the
condition is log2(1/d) / 7, so d = 1 -> 0 and d = 1/128 -> 1). On the flow schedule (t = 1 noise,
t = 0 data, velocity u = eps - x0) a step is x_{t-d} = x_t - d s(x_t, t, d). Each batch:

* the first B - B/8 rows (``1 - bootstrap_fraction``): flow matching at the finest d = 1/128,
  t on the 1/128 grid, target u = eps - x0 -- or, with a teacher (``distill.teacher``), the
  teacher's velocity at (x_t, t), its conditional expectation;
* the last B/8 rows: self-consistency at d = 2^-k, k ~ U{0..6}, t on d's grid (t >= d), target
  from the EMA parameters (the loop's EMA): v1 = s(x_t, t, d/2), x' = x_t - (d/2) v1,
  v2 = s(x', t - d/2, d/2), target stopgrad((v1 + v2) / 2), clipped to +-``clip`` (4 in the
  reference; 0: no clip).

Loss: mean squared error over all rows. Sampling: ``samplers.ode.shortcut`` (Euler with
d = 1/steps, steps in 1, 2, ..., 128) with the model_fn bound to d = 1/steps. Trained from data
(``mode=train`` or ``distill``, no teacher needed).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from samplers.checks import check_number
from samplers.ode.shortcut import MAX_STEPS, check_steps
from samplers.param import as_prediction
from samplers.schedules import Flow
from train.distill import DistillMethod, kwargs_over, register
from train.distill.teacher import WithTeacher
from train.loop import apply_gradients, init_state

LEVELS = int(math.log2(MAX_STEPS))  # 7: d = 1, 1/2, ..., 1/128
DEFAULTS = dict(bootstrap_fraction=0.125, clip=4.0)


def step_condition(d):
    """The network's step-size input log2(1/d) / 7 (0 for d = 1, 1 for d = 1/128)."""
    return -jnp.log2(d) / LEVELS


@dataclasses.dataclass(frozen=True, eq=False)
class ShortcutTrainer(WithTeacher):
    """A loop ``Method`` (``train.loop.ObjectiveMethod``) for the shortcut objective."""

    opts: dict
    teacher: Any = None

    def init_state(self, network, tx, key):
        return init_state(network, tx, key)

    def train_step(self, network, tx, decay: float, warmup: bool = True) -> Callable:
        fraction, clip = self.opts["bootstrap_fraction"], self.opts["clip"]

        def s(params, x, t, d):
            return network.apply(params, x, t, cond=step_condition(d)[:, None])

        def step(state, batch, key, frozen):
            x0 = batch
            b = x0.shape[0]
            nb = int(round(b * fraction))
            kt, kk, ke = jax.random.split(key, 3)
            eps = jax.random.normal(ke, x0.shape, x0.dtype)
            bshape = lambda v: v.reshape((b,) + (1,) * (x0.ndim - 1))
            # step sizes: d = 1/128 on flow-matching rows, 2^-k (k ~ U{0..6}) on the last nb rows
            k = jax.random.randint(kk, (b,), 0, LEVELS)
            d = jnp.where(jnp.arange(b) >= b - nb, 2.0 ** (-k.astype(x0.dtype)), 1.0 / MAX_STEPS)
            # t on d's grid, t in {d, 2d, ..., 1}
            cells = jnp.round(1.0 / d).astype(jnp.int32)
            t = (jax.random.randint(kt, (b,), 0, MAX_STEPS) % cells + 1).astype(x0.dtype) * d
            x_t = bshape(1.0 - t) * x0 + bshape(t) * eps
            if self.teacher is not None:
                teacher = self.teacher
                flow = as_prediction(teacher.model_fn(frozen), teacher.schedule, teacher.predicts, "velocity")(x_t, t)
            else:
                flow = eps - x0
            half = d / 2
            v1 = s(state.ema, x_t, t, half)
            v2 = s(state.ema, x_t - bshape(half) * v1, t - half, half)
            boot = (v1 + v2) / 2
            if clip:
                boot = jnp.clip(boot, -clip, clip)
            is_boot = bshape(jnp.arange(b) >= b - nb)
            target = jax.lax.stop_gradient(jnp.where(is_boot, boot, flow))

            def loss_fn(params):
                return jnp.mean(jnp.square(s(params, x_t, t, d) - target))

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            new = apply_gradients(state, grads, tx, decay, warmup)
            return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

        return step


def options(config) -> dict:
    """``distill.kwargs`` over ``DEFAULTS``; a ValueError names an unknown field."""
    return kwargs_over(config, DEFAULTS)


def check(config) -> None:
    from train.config import build_network, build_schedule

    o = options(config)
    check_number("distill.kwargs.bootstrap_fraction", o["bootstrap_fraction"], 0.0, 1.0)
    check_number("distill.kwargs.clip", o["clip"], 0.0)
    if not isinstance(build_schedule(config), Flow):
        raise ValueError(f"a shortcut model lives on the flow schedule: schedule.name must be 'flow', got "
                         f"{config.schedule.name!r}")
    if config.predicts != "velocity":
        raise ValueError(f"a shortcut model predicts the velocity: predicts must be 'velocity', got "
                         f"{config.predicts!r}")
    if getattr(build_network(config).module, "cond_dim", 0) != 1:
        raise ValueError("a shortcut model is conditioned on the step size: model.name='mlp' with "
                         "model.kwargs.cond_dim=1")


def build(config, network, teacher):
    return ShortcutTrainer(options(config), teacher)


def model_fn(config, network, params, name, nfe):
    """The student at d = 1/nfe as the samplers' ``model_fn(x, t)`` (velocity)."""
    del config, name
    d = 1.0 / check_steps(nfe)
    cond = step_condition(jnp.float32(d))[None]
    return lambda x, t: network.apply(params, x, t, cond=cond)


register("shortcut", DistillMethod(build, model_fn, ("shortcut",), "optional", check))
