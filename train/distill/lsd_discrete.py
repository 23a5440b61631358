"""LSD / LSD+ for the masked-diffusion sampler (Fu et al. 2025), on a frozen model small enough to
enumerate (``samplers.discrete.lsd``): learnt per-step unmask coefficients (LSD) and times (LSD+).

Parameters: ``log_coef`` (N - 1,) with c_i = exp(log_coef_i) for the first N - 1 steps (the last step's
coefficient stays 1: it must unmask everything), and for LSD+ ``u`` (N - 1,) giving the times through
alpha increments, alpha_k = alpha(t_max) + (1 - alpha(t_max)) sum_{j<k} softmax([u, 0])_j (any u is a
valid increasing alpha grid; u = 0 is the uniform-in-alpha start, = uniform in t for the linear
schedule). Both start at the fixed sampler (c = 1, uniform grid).

Loss: the teacher is the same sampler with ``teacher_substeps`` coefficient-1 steps inside every student
interval (read at the student's times); the loss is the sum over the N student times of
KL(teacher law || student law) of the exact state laws (``law_trajectory``) -- the authors align the
student's per-step distributions with the teacher's (github feiyangfu/LSD, ``compute_loss``); the exact
law is that alignment without sampling noise; ``final_weight`` scales the last (final-law) term.
Optimised with Adam for ``steps`` steps (one jit). ``base``: the student's step, ``"masked"``
(``masked.ancestral``) or ``"dfm"`` (``dfm.euler``, mask source; samplers/discrete/lsd.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from samplers.discrete.lsd import BASES, law_trajectory, state_space
from samplers.discrete.masked import check_mask_id
from samplers.discrete.schedules import get_mask_schedule
from samplers.ode.common import check_choice
from samplers.ode.learnt_grid import load_grid, save_grid

EPS = 1e-12


@dataclasses.dataclass(frozen=True, eq=False)
class MaskedLSD:
    """The LSD (``learn_steps=False``) / LSD+ objective of ``nfe`` masked steps on ``model_fn``."""

    model_fn: Callable
    vocab_size: int
    length: int
    nfe: int
    learn_steps: bool = False
    schedule: str = "linear"
    mask_id: int | None = None
    teacher_substeps: int = 16
    base: str = "masked"
    final_weight: float = 1.0

    def __post_init__(self):
        if not isinstance(self.nfe, int) or self.nfe < 2:
            raise ValueError(f"nfe must be an integer >= 2 (the last step's coefficient is fixed), got {self.nfe!r}")
        if not isinstance(self.teacher_substeps, int) or self.teacher_substeps < 1:
            raise ValueError(f"teacher_substeps must be a positive integer, got {self.teacher_substeps!r}")
        check_choice("base", self.base, BASES)
        if not self.final_weight >= 0.0:
            raise ValueError(f"final_weight must be >= 0, got {self.final_weight!r}")
        object.__setattr__(self, "mask_id", check_mask_id(self.vocab_size, self.mask_id))
        object.__setattr__(self, "schedule", get_mask_schedule(self.schedule))
        object.__setattr__(self, "states", state_space(self.vocab_size, self.length, self.mask_id))

    def initial_params(self) -> dict:
        zeros = jnp.zeros((self.nfe - 1,), jnp.float32)
        return {"log_coef": zeros, "u": zeros}

    def times(self, params) -> jax.Array:
        """The N + 1 times t_0 = 1 > ... > t_N = 0 (traced; fixed uniform-in-alpha for LSD)."""
        u = params["u"] if self.learn_steps else jax.lax.stop_gradient(params["u"])
        a0 = float(self.schedule.alpha(np.float64(1.0)))
        alpha = a0 + (1.0 - a0) * jnp.concatenate([jnp.zeros(1), jnp.cumsum(jax.nn.softmax(jnp.append(u, 0.0)))])
        return self.schedule.t_from_alpha(alpha)

    def coef(self, params) -> jax.Array:
        return jnp.append(jnp.exp(params["log_coef"]), 1.0)

    def _probs(self, ts, coef):
        """The base's unmask probabilities: ``masked.unmask_probabilities`` or ``dfm.jump_probabilities``."""
        sch = self.schedule
        a_t, a_s = sch.alpha(ts[:-1]), sch.alpha(ts[1:])
        if self.base == "masked":
            return jnp.clip(coef * (a_s - a_t) / jnp.maximum(1.0 - a_t, 1e-30), 0.0, 1.0)
        p = -jnp.expm1(coef * (ts[:-1] - ts[1:]) * sch.dalpha(ts[:-1]) / jnp.maximum(1.0 - a_t, 1e-30))
        return p.at[-1].set(1.0) if float(sch.alpha(np.float64(0.0))) >= 1.0 else p

    def student_laws(self, params) -> list[jax.Array]:
        ts = self.times(params)
        return law_trajectory(self.model_fn, self.states, ts, self._probs(ts, self.coef(params)), self.mask_id)

    def teacher_laws(self, params) -> list[jax.Array]:
        """The many-step teacher's laws at the student's times (``teacher_substeps`` per interval)."""
        ts, k = self.times(params), self.teacher_substeps
        fine = jnp.concatenate([jnp.linspace(ts[i], ts[i + 1], k + 1)[:-1] for i in range(self.nfe)] + [ts[-1:]])
        laws = law_trajectory(self.model_fn, self.states, fine, self._probs(fine, jnp.ones(self.nfe * k)), self.mask_id)
        return laws[k - 1:: k]

    def loss(self, params) -> jax.Array:
        """Sum over the student's times of KL(teacher law || student law)."""
        target = self.teacher_laws(params)
        if not self.learn_steps:
            target = jax.lax.stop_gradient(target)
        kl = [jnp.sum(g * (jnp.log(g + EPS) - jnp.log(s + EPS))) for g, s in zip(target, self.student_laws(params))]
        return jnp.sum(jnp.stack(kl[:-1])) + self.final_weight * kl[-1]

    def fit(self, steps: int = 200, learning_rate: float = 0.05) -> dict:
        """Adam on ``loss`` from the fixed sampler; the learnt artefact."""
        tx = optax.adam(learning_rate)
        params = self.initial_params()

        def body(carry, _):
            params, opt = carry
            loss, grads = jax.value_and_grad(self.loss)(params)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), loss

        (params, _), _ = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=steps))(params)
        return self.artefact_of(params)

    def artefact_of(self, params) -> dict:
        """{"t": N + 1 times, "coef": N coefficients, "base"} (``samplers.discrete.lsd.lsd_sampler``)."""
        return {"t": np.asarray(self.times(params), np.float64), "coef": np.asarray(self.coef(params), np.float64),
                "base": self.base}


def save_artefact(path: str, artefact: dict) -> None:
    """Write a masked LSD artefact with orbax (``samplers.ode.learnt_grid.save_grid``), like the continuous LSD."""
    save_grid(path, artefact)


def load_artefact(path: str) -> dict:
    return load_grid(path)
