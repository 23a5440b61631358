"""ReMDM: remasking diffusion sampler (Wang et al. 2025, "Remasking Discrete Diffusion Models with
Inference-Time Scaling", Sec. 3-4), REFERENCES.md "Discrete diffusion".

From t to s an unmasked token is remasked with probability sigma_t, and a masked one goes to a token of
x0_hat with probability

    q = coef_i (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t),     0 <= sigma_t <= sigma_max = min(1, (1 - alpha_s) / alpha_t),

which keeps the forward marginals of masked diffusion for any such sigma; sigma = 0 is the ancestral
sampler of samplers/discrete/masked.py bit for bit (same key). Strategies for sigma_t:

* ``cap``:     sigma_t = min(eta, sigma_max);
* ``rescale``: sigma_t = eta sigma_max;
* ``conf``:    per token sigma_t^l = eta_l sigma_max, eta = softmax over the unmasked tokens of minus
               the confidence (probability) each token had when it was decoded (masked tokens use
               sigma_max in q);
* ``loop``:    alpha follows the schedule down to t_on, is held at alpha(t_on) for t in [t_off, t_on)
               while tokens are remasked with sigma_t = min(eta, sigma_max) (then q = sigma alpha /
               (1 - alpha)), and goes from alpha(t_on) to 1 for t < t_off (alpha rescaled affinely);
               sigma = 0 outside the loop.

Predictor-corrector (the ReMDM move at a held level, as in ``loop``; the discrete predictor-corrector
scheme of Campbell et al. 2022, "A Continuous Time Framework for Discrete Denoising Models"): with
``corrector_steps`` = C > 0, every predictor step t -> s that does not reach alpha = 1 is followed by C
corrector steps at the fixed level s: the same move with alpha_t = alpha_s = a, i.e. each unmasked token
is remasked with probability sigma_c = min(corrector_eta, min(1, (1 - a) / a)) and each masked token is
re-predicted (one model call at time s) with probability q_c = corrector_coef sigma_c a / (1 - a). With an
exact x0_hat this keeps the forward marginal at level a (corrector_coef = 1) while re-drawing tokens from
a fresher context, which corrects the joint errors of large predictor steps; C = 0 is the plain sampler.
For small sigma_c the corrector is reversible w.r.t. that marginal: unmasking token v at l and remasking it
balance since p(z with x_l = v) / p(z) = a / (1 - a) p(x_l = v | z) and q_c / sigma_c = a / (1 - a).
NFE = num_steps + C (number of predictor steps below alpha = 1).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, take_rows
from samplers.discrete.masked import (check_coef, check_ids, check_mask_id, check_times, decode_options,
                                      unmask_step)
from samplers.discrete.schedules import get_mask_schedule
from samplers.ode.common import check_choice

STRATEGIES = ("cap", "rescale", "conf", "loop")


def loop_alphas(schedule, ts: np.ndarray, t_on: float, t_off: float) -> np.ndarray:
    """alpha on the grid for the loop strategy: the schedule above t_on, alpha(t_on) on [t_off, t_on),
    affinely from alpha(t_on) to 1 below t_off."""
    a, a_on, a_off = schedule.alpha(ts), float(schedule.alpha(t_on)), float(schedule.alpha(t_off))
    below = a_on + (1.0 - a_on) * (a - a_off) / (1.0 - a_off)
    return np.where(ts >= t_on, a, np.where(ts >= t_off, a_on, below))


def remdm_tables(schedule, ts, strategy: str, eta: float, t_on: float, t_off: float):
    """Per step (alpha_t, alpha_s, sigma_max, sigma): sigma is the scalar sigma_t of cap / rescale / loop
    and sigma_max for conf (scaled per token at run time)."""
    a = loop_alphas(schedule, ts, t_on, t_off) if strategy == "loop" else schedule.alpha(ts)
    a_t, a_s = a[:-1], a[1:]
    sigma_max = np.clip((1.0 - a_s) / np.maximum(a_t, 1e-300), 0.0, 1.0)
    if strategy == "cap":
        sigma = np.minimum(eta, sigma_max)
    elif strategy == "rescale":
        sigma = eta * sigma_max
    elif strategy == "conf":
        sigma = sigma_max
    else:
        in_loop = (ts[:-1] < t_on) & (ts[:-1] >= t_off)
        sigma = np.where(in_loop, np.minimum(eta, sigma_max), 0.0)
    sigma = np.where(a_s >= 1.0, 0.0, sigma)  # the last step unmasks everything
    return a_t, a_s, sigma


def corrector_rows(ts, a_t, a_s, sigma, coef, corrector_steps: int, corrector_eta: float, corrector_coef: float):
    """The per-step rows (t, alpha_t, alpha_s, sigma, coef) of the predictor grid with ``corrector_steps``
    rows at the fixed level alpha_s (model time s) after each predictor step that stays below alpha = 1."""
    rows = []
    for i, a in enumerate(a_s):
        rows.append((ts[i], a_t[i], a, sigma[i], coef[i]))
        if a < 1.0:
            sigma_c = min(corrector_eta, min(1.0, (1.0 - a) / max(a, 1e-300)))
            rows += [(ts[i + 1], a, a, sigma_c, corrector_coef)] * corrector_steps
    return tuple(np.asarray(col, np.float64) for col in zip(*rows))


@struct.dataclass
class RemaskState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    confidence: jax.Array  # (B, L) probability of each unmasked token when it was decoded (conf)


def remask_move(key, x, logits, confidence, alpha_t, alpha_s, sigma, coef, mask_id: int, decode, strategy: str = "cap",
                keep=None):
    """One ReMDM move from t to s (module docstring): masked tokens go to tokens drawn from ``logits`` with
    probability q, tokens unmasked before the move are remasked with probability sigma (per token under
    ``conf``) unless ``keep`` (B, L) bool holds them. Returns (tokens, the probability under
    softmax(logits) each token had when it was decoded)."""
    q = jnp.clip(coef * (alpha_s - (1.0 - sigma) * alpha_t) / jnp.maximum(1.0 - alpha_t, 1e-30), 0.0, 1.0)
    new = unmask_step(key, x, logits, q, mask_id, decode)
    probs = jax.nn.softmax(logits, axis=-1)
    decoded = jnp.take_along_axis(probs, jnp.minimum(new, logits.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    confidence = jnp.where(new != x, decoded, confidence)
    unmasked = x != mask_id
    if strategy == "conf":
        weights = jax.nn.softmax(jnp.where(unmasked, -confidence, -jnp.inf), axis=-1)
        sigma = jnp.where(unmasked.any(-1, keepdims=True), weights, 0.0) * sigma
    remask = unmasked & (jax.random.uniform(jax.random.fold_in(key, 1), x.shape) < sigma)
    if keep is not None:
        remask = remask & ~keep
    return jnp.where(remask, mask_id, new), confidence


def remask_init(vocab_size: int, mask_id: int):
    """``init(x, key, model_fn)`` of a remasking sampler: checked ids, every confidence 1."""
    def init(x, key=None, model_fn=None):
        del key, model_fn
        check_ids(x, vocab_size, mask_id)
        x = jnp.asarray(x, jnp.int32)
        return RemaskState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32),
                           confidence=jnp.ones(x.shape, jnp.float32))
    return init


def remdm(vocab_size: int, num_steps: int, schedule="linear", strategy: str = "cap", eta: float = 0.02,
          t_on: float = 0.55, t_off: float = 0.05, mask_id: int | None = None, timesteps=None, coef=None,
          temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False, dtype=None, corrector_steps: int = 0,
          corrector_eta: float = 0.1, corrector_coef: float = 1.0) -> Sampler:
    """ReMDM with the given remasking ``strategy`` and strength ``eta``, optionally with ``corrector_steps``
    remask-and-re-predict steps at each level (module docstring)."""
    mask_id = check_mask_id(vocab_size, mask_id)
    check_choice("strategy", strategy, STRATEGIES)
    if not eta >= 0 or (strategy in ("rescale", "conf") and eta > 1):
        raise ValueError(f"eta must be >= 0 (<= 1 for rescale and conf), got {eta!r}")
    if not 0.0 < t_off < t_on <= 1.0:
        raise ValueError(f"need 0 < t_off < t_on <= 1, got t_on={t_on!r}, t_off={t_off!r}")
    schedule = get_mask_schedule(schedule)
    ts = check_times(num_steps, timesteps)
    coef = check_coef(coef, num_steps)
    if not isinstance(corrector_steps, (int, np.integer)) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be a non-negative integer, got {corrector_steps!r}")
    if not 0.0 < corrector_eta <= 1.0:
        raise ValueError(f"corrector_eta must be in (0, 1], got {corrector_eta!r}")
    if not corrector_coef > 0:
        raise ValueError(f"corrector_coef must be > 0, got {corrector_coef!r}")
    a_t, a_s, sigma = remdm_tables(schedule, ts, strategy, eta, t_on, t_off)
    t, a_t, a_s, sigma, coef = corrector_rows(ts, a_t, a_s, sigma, coef, corrector_steps, corrector_eta, corrector_coef)
    total = len(t)
    decode = decode_options("random", temperature, top_p, greedy, dtype)

    def step(state, key, model_fn):
        t_i, at, as_, sig, c = take_rows(state.i, jnp.float32, t, a_t, a_s, sigma, coef)
        logits = model_fn(state.x, t_i).astype(jnp.float32)
        x, confidence = remask_move(key, state.x, logits, state.confidence, at, as_, sig, c, mask_id, decode, strategy)
        return RemaskState(x=x, i=state.i + 1, nfe=state.nfe + 1, confidence=confidence)

    return Sampler(remask_init(vocab_size, mask_id), step, total, total)
