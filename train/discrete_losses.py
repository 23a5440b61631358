"""The masked (absorbing) diffusion ELBO of MDLM / MD4 as a training objective.

Forward process: each token of x0 is independently kept with probability alpha(t) and replaced by the
mask id otherwise (``samplers/discrete/schedules.py``). The continuous-time negative ELBO is
(MD4, Shi et al. 2024, eq. 5; MDLM, Sahoo et al. 2024, eq. 10)

    NELBO(x0) = int_0^1 w(t) E_{x_t ~ q(.|x0)} [ sum_{l : x_t,l = mask} -log p_theta(x0_l | x_t) ] dt,
    w(t) = -alpha'(t) / (1 - alpha(t))        (> 0; 1/t for the linear schedule).

With the exact x0 predictor and alpha(0) = 1, alpha(1) = 0 the bound is tight: substituting
s = 1 - alpha(t) gives int_0^1 ds/s E_{mask ~ Bernoulli(s)^L}[...], the any-order autoregressive
expectation of -log p(x0) (Ou et al. 2024), so NELBO(x0) = -log p(x0) for every x0 and every schedule.

``model(x_t, t)`` follows the discrete samplers' contract: per-position logits (B, L, V) over the
vocabulary, the mask id (>= V) excluded. The loss is an ``Objective``-shaped object
(``loss(apply, x0, key)``) for the one train loop (``train.loop.ObjectiveMethod``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from samplers.discrete.schedules import MaskSchedule, get_mask_schedule


def elbo_weight(schedule: MaskSchedule, t):
    """w(t) = -alpha'(t) / (1 - alpha(t)), the MD4 / MDLM weight of the masked cross-entropy."""
    return -schedule.dalpha(t) / (1.0 - schedule.alpha(t))


def masked_nll(logits, x0, masked):
    """sum_{l masked} -log softmax(logits)[l, x0_l] per sequence: logits (B, L, V), x0 / masked (B, L)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, x0[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(masked, picked, 0.0), axis=-1)


def corrupt(x0, masked, mask_id: int):
    """x_t: x0 with ``mask_id`` where ``masked``."""
    return jnp.where(masked, jnp.asarray(mask_id, x0.dtype), x0)


@dataclasses.dataclass(frozen=True, eq=False)
class MaskedELBO:
    """Monte-Carlo NELBO of masked diffusion per token sequence (MD4 eq. 5).

    ``schedule``: a MaskSchedule or its name; ``mask_id`` (>= ``vocab_size``) is the absorbing token;
    ``t_lo`` keeps the times in [t_lo, 1] (the weight 1/(1 - alpha) is singular at t = 0; 0 is allowed
    since a draw at exactly t = 0 masks nothing). Times are stratified over the batch
    (t_i = (u + i / B) mod 1, MD4's antithetic sampling) which leaves the estimator unbiased.
    """

    schedule: MaskSchedule | str
    vocab_size: int
    mask_id: int
    t_lo: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "schedule", get_mask_schedule(self.schedule))
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer >= 2, got {self.vocab_size!r}")
        if not isinstance(self.mask_id, int) or self.mask_id < self.vocab_size:
            raise ValueError(f"mask_id must be an integer >= vocab_size={self.vocab_size}, got {self.mask_id!r}")
        if not 0.0 <= self.t_lo < 1.0:
            raise ValueError(f"t_lo must be in [0, 1), got {self.t_lo!r}")

    def terms(self, model: Callable, x0, t, masked):
        """Per-sequence w(t) * masked cross-entropy at given times t (B,) and masks (B, L)."""
        logits = model(corrupt(x0, masked, self.mask_id), t)
        nll = masked_nll(logits, x0, masked)
        w = jnp.where(jnp.any(masked, axis=-1), elbo_weight(self.schedule, t), 0.0)
        return w.astype(nll.dtype) * nll

    def sample_t(self, key, n: int, dtype=jnp.float32):
        u = jax.random.uniform(key, (), dtype)
        s = jnp.mod(u + jnp.arange(n, dtype=dtype) / n, 1.0)
        return self.t_lo + (1.0 - self.t_lo) * s

    def sample_mask(self, key, t, length: int):
        keep = self.schedule.alpha(t)[:, None]
        return jax.random.uniform(key, (t.shape[0], length), keep.dtype) >= keep

    def loss(self, apply: Callable, x0, key) -> jax.Array:
        """Mean NELBO (nats per sequence) of the batch ``x0`` (B, L) int with fresh times and masks."""
        kt, km = jax.random.split(key)
        t = self.sample_t(kt, x0.shape[0])
        return jnp.mean(self.terms(apply, x0, t, self.sample_mask(km, t, x0.shape[1])))
