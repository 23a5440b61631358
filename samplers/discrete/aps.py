"""Anchored posterior sampling (APS, Rout et al. 2025, "Test-Time Anchoring for Discrete Diffusion
Posterior Sampling") for a masked-diffusion prior and a measurement y with a differentiable
log-likelihood on embedded sequences, ``log_likelihood(e) -> (B,)``, e (B, L, D) = rows of a token
``embedding`` (V, D) (default the identity: one-hot tokens; ``posterior.flip_embedded_log_likelihood``).

Each step t -> s makes one model call and two moves:

* quantized-expectation guidance: with p0 = softmax(model_fn(x_t, t)) at masked positions (one-hot of the
  token elsewhere), the expected embedding e_bar = p E is replaced in the forward pass by its nearest
  codebook row e_q (a valid token sequence), straight-through in the backward pass:
  e = e_bar + stop_gradient(e_q - e_bar). The likelihood gradient w.r.t. p through e, E grad log p(y | e_q),
  is projected back to token logits by a mirror-ascent step, logits' = log p0 + ``guidance`` E grad, which
  maximises <p, guidance E grad> - KL(p || p0) (the KL keeps the guided prediction near the prior's);
  ``inner_steps`` > 1 re-linearises at the guided prediction (no extra model calls). For a likelihood linear
  in e (e.g. token flips) with guidance = 1 this is the exact per-position tilt p0_l(v) p(y_l | v).
* anchored remasking: masked tokens are decoded from the guided logits with the ReMDM probability
  q = (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t) (samplers/discrete/remask.py, ``cap``:
  sigma = min(eta, sigma_max)), each keeping the guided probability it had when decoded (its
  confidence, prior and measurement together); decoded tokens whose confidence is below ``anchor`` are
  remasked with probability sigma and re-predicted later from more context, the others are anchors and kept.
  The last step (alpha_s = 1) decodes every masked token.

APS is approximate (the per-position tilt ignores what the measurement says through the still-masked
positions); tests/test_discrete_aps.py measures its distance to the enumerated posterior.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import Sampler, take_rows
from samplers.discrete.masked import check_coef, check_mask_id, check_times, decode_options
from samplers.discrete.remask import RemaskState, remask_init, remask_move, remdm_tables
from samplers.discrete.schedules import get_mask_schedule


def quantized_expectation(probs, embedding) -> jax.Array:
    """e_bar = probs @ E (B, L, D) in the backward pass, its nearest row of E in the forward pass."""
    e_bar = probs @ embedding
    dist = jnp.sum(e_bar**2, -1, keepdims=True) - 2.0 * e_bar @ embedding.T + jnp.sum(embedding**2, -1)
    e_q = embedding[jnp.argmin(dist, -1)]
    return e_bar + jax.lax.stop_gradient(e_q - e_bar)


def guide_logits(logits, x, mask_id: int, log_likelihood: Callable, embedding, guidance, inner_steps: int) -> jax.Array:
    """Quantized-expectation guidance of x0 logits (B, L, V) at the masked positions of x (module docstring)."""
    vocab_size = logits.shape[-1]
    masked = (x == mask_id)[..., None]
    clean = jax.nn.one_hot(jnp.where(x == mask_id, 0, x), vocab_size)
    log_p0 = jax.nn.log_softmax(logits, axis=-1)
    grad_p = jax.grad(lambda p: jnp.sum(log_likelihood(quantized_expectation(p, embedding))))
    guided = log_p0
    for _ in range(inner_steps):
        probs = jnp.where(masked, jax.nn.softmax(guided, axis=-1), clean)
        guided = log_p0 + guidance * grad_p(probs)
    return jnp.where(masked, guided, logits)


def aps(vocab_size: int, num_steps: int, log_likelihood: Callable, embedding=None, guidance: float = 1.0,
        inner_steps: int = 1, anchor: float = 0.9, eta: float = 0.05, order: str = "random", schedule="linear",
        mask_id: int | None = None, timesteps=None, coef=None, dtype=None) -> Sampler:
    """APS on ``num_steps`` steps from all-masked (module docstring); ``coef`` (per step, default ones)
    multiplies the decode probability q as in ReMDM; ``order`` = ``confidence`` (or ``margin`` / ``entropy``)
    decodes the most confident guided tokens first (samplers/discrete/masked.py) instead of random ones."""
    mask_id = check_mask_id(vocab_size, mask_id)
    if not callable(log_likelihood):
        raise ValueError(f"log_likelihood must be a callable e (B, L, D) -> (B,) log p(y | e), got {log_likelihood!r}")
    embedding = np.eye(vocab_size) if embedding is None else np.asarray(embedding, np.float64)
    if embedding.ndim != 2 or embedding.shape[0] != vocab_size:
        raise ValueError(f"embedding must be a (vocab_size={vocab_size}, D) array, got shape {embedding.shape}")
    if not np.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if not isinstance(inner_steps, (int, np.integer)) or inner_steps < 1:
        raise ValueError(f"inner_steps must be a positive integer, got {inner_steps!r}")
    if not 0.0 <= anchor <= 1.0:
        raise ValueError(f"anchor must be a confidence in [0, 1], got {anchor!r}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    ts = check_times(num_steps, timesteps)
    coef = check_coef(coef, num_steps)
    a_t, a_s, sigma = remdm_tables(get_mask_schedule(schedule), ts, "cap", eta, 1.0, 0.5)  # t_on / t_off unused by cap
    decode = decode_options(order, dtype=dtype, vocab_size=vocab_size)
    emb = jnp.asarray(embedding, jnp.float32)

    def step(state, key, model_fn):
        t, at, as_, sig, c = take_rows(state.i, jnp.float32, ts[:-1], a_t, a_s, sigma, coef)
        logits = model_fn(state.x, t).astype(jnp.float32)
        guided = guide_logits(logits, state.x, mask_id, log_likelihood, emb, guidance, inner_steps)
        keep = state.confidence >= anchor
        x, confidence = remask_move(key, state.x, guided, state.confidence, at, as_, sig, c, mask_id, decode, keep=keep)
        return RemaskState(x=x, i=state.i + 1, nfe=state.nfe + 1, confidence=confidence)

    return Sampler(remask_init(vocab_size, mask_id), step, num_steps, num_steps)
