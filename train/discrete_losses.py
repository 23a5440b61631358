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

Uniform noise (D3PM uniform, Austin et al. 2021, in continuous time; ``samplers/discrete/uniform.py``): each
token is kept with probability alpha(t), else replaced by a uniform one, a CTMC with the symmetric per-position
rate Q(x -> y) = sigma_t / V (y != x), sigma_t = -alpha'(t) / alpha(t). ``UniformELBO`` is the path-space
bound of SEDD (Lou et al. 2024, Thm 3.6, the diffusion-weighted denoising score entropy; Campbell et al.
2022's CTMC ELBO):

    NELBO(x0) = int_0^1 E_{x_t ~ q(.|x0)} sum_l sum_{v != x_t,l} (sigma_t / V) [s_lv - r_lv log s_lv + K(r_lv)] dt
                + KL(q(x_1 | x0) || uniform),      K(a) = a (log a - 1),

with s_lv the model's ratio q_t(x_t with position l set to v) / q_t(x_t) computed from its x0 logits
(``samplers.discrete.uniform.marginal_ratio``, what the uniform samplers use; here in log space) and
r_lv = q(v | x0_l) / q(x_t,l | x0_l) the true conditional ratio. It is the KL between the path laws of the
conditional and the model's reverse processes, so with the exact x0 predictor and alpha(1) = 0 (every schedule
but log-linear, whose gap averages to KL(p_1 || uniform) over the data) it equals -log p(x0) for every x0, as
the masked ELBO does.
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


def stratified_times(key, n: int, t_lo: float = 0.0, dtype=jnp.float32):
    """n times in [t_lo, 1], t_i = t_lo + (1 - t_lo) ((u + i / n) mod 1): MD4's antithetic sampling (unbiased)."""
    u = jax.random.uniform(key, (), dtype)
    return t_lo + (1.0 - t_lo) * jnp.mod(u + jnp.arange(n, dtype=dtype) / n, 1.0)


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
        return stratified_times(key, n, self.t_lo, dtype)

    def sample_mask(self, key, t, length: int):
        keep = self.schedule.alpha(t)[:, None]
        return jax.random.uniform(key, (t.shape[0], length), keep.dtype) >= keep

    def loss(self, apply: Callable, x0, key) -> jax.Array:
        """Mean NELBO (nats per sequence) of the batch ``x0`` (B, L) int with fresh times and masks."""
        kt, km = jax.random.split(key)
        t = self.sample_t(kt, x0.shape[0])
        return jnp.mean(self.terms(apply, x0, t, self.sample_mask(km, t, x0.shape[1])))


def _check_common(vocab_size, t_lo) -> None:
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if not 0.0 <= t_lo < 1.0:
        raise ValueError(f"t_lo must be in [0, 1), got {t_lo!r}")


def uniform_probs(x0, alpha, vocab_size: int):
    """q(x_t = v | x0) (B, L, V) = alpha [v = x0] + (1 - alpha) / V, alpha (B,) per sequence."""
    a = alpha[:, None, None]
    return jnp.where(x0[..., None] == jnp.arange(vocab_size), a, 0.0) + (1.0 - a) / vocab_size


def log_marginal_ratio(logits, y, alpha) -> jax.Array:
    """log of ``samplers.discrete.uniform.marginal_ratio`` (B, L, V) in log space: log(alpha w_v + (1 - alpha) S / V)
    with log w_v = log_softmax(logits)_v - log q(y | x0 = v), so a probability that underflows in float32 still
    gives a finite log ratio (the loss takes its log); alpha (B,) in (0, 1)."""
    vocab_size = logits.shape[-1]
    a = alpha[:, None, None]
    log_w = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1) - jnp.log(uniform_probs(y, alpha, vocab_size))
    log_s = jax.nn.logsumexp(log_w, axis=-1, keepdims=True)
    return jnp.logaddexp(jnp.log(a) + log_w, jnp.log1p(-a) - jnp.log(vocab_size) + log_s)


@dataclasses.dataclass(frozen=True, eq=False)
class UniformELBO:
    """Monte-Carlo NELBO of uniform-noise discrete diffusion per token sequence (module docstring: SEDD's
    DWDSE with the x0-parameterised ratio). ``schedule``: a MaskSchedule or its name (alpha = keep
    probability); ``t_lo``: times in [t_lo, 1], stratified over the batch as ``MaskedELBO``'s."""

    schedule: MaskSchedule | str
    vocab_size: int
    t_lo: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "schedule", get_mask_schedule(self.schedule))
        _check_common(self.vocab_size, self.t_lo)

    def prior_kl(self, x0) -> jax.Array:
        """KL(q(x_1 | x0) || uniform) per sequence (0 where alpha(1) = 0)."""
        q = uniform_probs(x0, jnp.broadcast_to(self.schedule.alpha(jnp.float32(1.0)), x0.shape[:1]), self.vocab_size)
        return jnp.sum(q * jnp.log(q * self.vocab_size), axis=(-2, -1))

    def terms(self, model: Callable, x0, t, xt):
        """Per-sequence sigma_t / V sum_{l, v != x_t,l} [s - r log s + K(r)] at times t (B,) and noisy xt (B, L).

        Where alpha(t) rounds to 0 or 1 the term is its limit 0 for the exact model (O(alpha) and O(1 - alpha));
        such times have measure below float32's epsilon."""
        alpha = self.schedule.alpha(t)
        inside = (alpha > 0.0) & (alpha < 1.0)
        alpha = jnp.where(inside, alpha, 0.5)  # finite values (and gradients) where the term is dropped
        q = uniform_probs(x0, alpha, self.vocab_size)  # (B, L, V)
        log_r = jnp.log(q) - jnp.log(jnp.take_along_axis(q, xt[..., None], axis=-1))
        log_u = log_marginal_ratio(model(xt, t), xt, alpha) - log_r  # log(s / r)
        div = jnp.exp(log_r) * (jnp.expm1(log_u) - log_u)  # = s - r log s + K(r) = r (s/r - 1 - log(s/r))
        off = xt[..., None] != jnp.arange(self.vocab_size)
        rate = jnp.where(inside, -self.schedule.dalpha(t) / alpha / self.vocab_size, 0.0)
        return rate * jnp.sum(jnp.where(off, div, 0.0), axis=(-2, -1))

    def sample_t(self, key, n: int, dtype=jnp.float32):
        return stratified_times(key, n, self.t_lo, dtype)

    def sample_noisy(self, key, x0, t):
        """x_t ~ q(. | x0): each token kept with probability alpha(t), else uniform over the vocabulary."""
        k_keep, k_tok = jax.random.split(key)
        keep = jax.random.uniform(k_keep, x0.shape) < self.schedule.alpha(t)[:, None]
        return jnp.where(keep, x0, jax.random.randint(k_tok, x0.shape, 0, self.vocab_size, x0.dtype))

    def loss(self, apply: Callable, x0, key) -> jax.Array:
        """Mean NELBO (nats per sequence) of the batch ``x0`` (B, L) int with fresh times and noise."""
        kt, kx = jax.random.split(key)
        t = self.sample_t(kt, x0.shape[0])
        return jnp.mean(self.terms(apply, x0, t, self.sample_noisy(kx, x0, t)) + self.prior_kl(x0))
