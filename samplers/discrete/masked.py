"""Ancestral sampler of masked (absorbing) diffusion (MDLM, Sahoo et al. 2024; MD4, Shi et al. 2024).

From t to s < t every masked position is unmasked with probability

    p = coef_i (alpha_s - alpha_t) / (1 - alpha_t)

to a token drawn from x0_hat = softmax(model_fn(x_t, t)) (the model's logits exclude the mask, so the
mask logit is -inf); unmasked tokens are copied (REFERENCES.md, "Discrete diffusion"). The last step
reaches alpha = 1, so every token is unmasked. Options:

* ``cache``: when no token changed in the last step the model input is the same, so a model that
  ignores t gives the same x0_hat: reuse it with no model call (``lax.cond`` on a carried flag; the
  state's ``nfe`` counts real calls). Only valid for time-agnostic models (e.g. the exact one).
* ``temperature`` / ``top_p`` / ``greedy``: how x0 tokens are drawn from the logits.
* ``order``: ``random`` (the exact ancestral step above) or a MaskGIT / LLaDA-style deterministic
  order that unmasks the k most ``confidence`` (probability of the drawn token), ``margin`` (top-1
  minus top-2 probability) or lowest-``entropy`` masked positions, with k = n - floor(n (1 - p)) of the
  n masked positions (at least ceil(n p): the count the random order reaches on average), or the
  position-aware calibrated order ``pc`` (PC-Sampler, Huang et al. 2025): score
  exp(-pc_lambda l) min(pc_clip, -q log f_bg(token)) at position l with q the drawn token's
  probability and f_bg a background token frequency (``background``, default uniform);
  pc_lambda -> inf is left to right.
* ``coef`` (per step, default ones): multiplies p (learnable by LSD); ones reproduce the sampler bit
  for bit. ``dtype``: the dtype of the categorical draws (samplers/discrete/categorical.py).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, take_rows
from samplers.discrete.categorical import adjust_logits, check_logit_options, draw_tokens, sampling_dtype
from samplers.discrete.schedules import get_mask_schedule, time_grid
from samplers.ode.common import check_choice

ORDERS = ("random", "confidence", "margin", "entropy", "pc")


class Decode(NamedTuple):
    """How a masked step turns logits into tokens (checked at build time by ``decode_options``)."""

    order: str
    temperature: float
    top_p: float
    greedy: bool
    dtype: np.dtype
    pc_lambda: float = 0.0
    pc_clip: float = 10.0
    log_background: np.ndarray | None = None  # (V,) log f_bg of the pc order


def decode_options(order="random", temperature=1.0, top_p=1.0, greedy=False, dtype=None, pc_lambda=0.25,
                   pc_clip=10.0, background=None, vocab_size=None) -> Decode:
    check_choice("order", order, ORDERS)
    check_logit_options(temperature, top_p, greedy)
    decode = Decode(order, float(temperature), float(top_p), bool(greedy), sampling_dtype(dtype))
    if order != "pc":
        return decode
    if not pc_lambda >= 0 or not pc_clip > 0:
        raise ValueError(f"need pc_lambda >= 0 and pc_clip > 0, got {pc_lambda!r}, {pc_clip!r}")
    bg = np.full(vocab_size, 1.0 / vocab_size) if background is None else np.asarray(background, np.float64)
    if bg.shape != (vocab_size,) or np.any(bg <= 0):
        raise ValueError(f"background must be {vocab_size} positive token frequencies, got shape {bg.shape}")
    return decode._replace(pc_lambda=float(pc_lambda), pc_clip=float(pc_clip), log_background=np.log(bg / bg.sum()))


def check_mask_id(vocab_size, mask_id=None) -> int:
    """mask_id (default V) must lie outside the vocabulary 0..V-1."""
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    mask_id = vocab_size if mask_id is None else mask_id
    if not isinstance(mask_id, (int, np.integer)) or mask_id < vocab_size:
        raise ValueError(f"mask_id must be an integer >= vocab_size={vocab_size} (outside the vocabulary), got {mask_id!r}")
    return int(mask_id)


def check_ids(x, vocab_size: int, mask_id: int) -> None:
    """A concrete x must be (B, L) integer ids in 0..V-1 or mask_id (traced arrays are not checked)."""
    if isinstance(x, jax.core.Tracer):
        return
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"x must be a (B, L) integer array of token ids, got {x.dtype} {x.shape}")
    bad = (x < 0) | ((x >= vocab_size) & (x != mask_id))
    if bad.any():
        raise ValueError(f"x must hold token ids in 0..{vocab_size - 1} or mask_id={mask_id}; got {x[bad][:4].tolist()}")


def check_times(num_steps, timesteps=None) -> np.ndarray:
    """Decreasing times t_0 > ... > t_N in [0, 1] (default: uniform from 1 to 0), float64."""
    if timesteps is None:
        return time_grid(num_steps)
    ts = np.asarray(timesteps, np.float64)
    if ts.ndim != 1 or len(ts) != num_steps + 1 or np.any(np.diff(ts) >= 0) or ts[0] > 1 or ts[-1] < 0:
        raise ValueError(f"timesteps must be {num_steps + 1} strictly decreasing times in [0, 1], got {timesteps!r}")
    return ts


def check_coef(coef, num_steps: int) -> np.ndarray:
    """Per-step coefficients (default ones), positive, shape (num_steps,)."""
    if coef is None:
        return np.ones(num_steps)
    coef = np.asarray(coef, np.float64)
    if coef.shape != (num_steps,) or np.any(coef <= 0):
        raise ValueError(f"coef must be {num_steps} positive numbers (one per step), got shape {coef.shape}")
    return coef


def unmask_probabilities(schedule, ts: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """coef_i (alpha_s - alpha_t) / (1 - alpha_t) per step, clipped to [0, 1] (float64)."""
    a_t, a_s = schedule.alpha(ts[:-1]), schedule.alpha(ts[1:])
    return np.clip(coef * (a_s - a_t) / np.maximum(1.0 - a_t, 1e-300), 0.0, 1.0)


def order_scores(logits, x0, decode: Decode) -> jax.Array:
    """Per-position priority (higher unmasks first) of the drawn tokens x0 under softmax(logits)."""
    order = decode.order
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    if order in ("confidence", "pc"):
        q = jnp.take_along_axis(probs, x0[..., None], axis=-1)[..., 0]
        if order == "confidence":
            return q
        calibrated = jnp.minimum(decode.pc_clip, -q * jnp.asarray(decode.log_background, jnp.float32)[x0])
        # log of the score exp(-lambda l) * calibrated: no underflow for a large lambda
        return -decode.pc_lambda * jnp.arange(x0.shape[-1], dtype=jnp.float32) + jnp.log(calibrated)
    if order == "margin":
        top2 = jax.lax.top_k(probs, 2)[0]
        return top2[..., 0] - top2[..., 1]
    logp = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0)
    return jnp.sum(probs * logp, axis=-1)  # minus the entropy


def choose_positions(key, masked, p, scores, order: str) -> jax.Array:
    """Which masked positions to unmask: each with probability p (random order), else the top
    k = n - floor(n (1 - p)) by ``scores`` per sequence."""
    if order == "random":
        return masked & (jax.random.uniform(key, masked.shape) < p)
    n = masked.sum(-1, keepdims=True)
    k = n - jnp.floor(n * (1.0 - p) + 1e-4).astype(n.dtype)  # + 1e-4: p's rounding must not add a token
    s = jnp.where(masked, scores, -jnp.inf)
    rank = jnp.argsort(jnp.argsort(-s, axis=-1), axis=-1)
    return masked & (rank < k)


def unmask_step(key, x, logits, p, mask_id: int, decode: Decode, region=None) -> jax.Array:
    """One masked-diffusion move: draw x0 from the logits, unmask the chosen masked positions (only
    inside ``region`` (B, L) bool if given) to it, copy the rest."""
    k_draw, k_move = jax.random.split(key)
    x0 = draw_tokens(k_draw, logits, decode.dtype, decode.temperature, decode.top_p, decode.greedy)
    masked = x == mask_id
    if region is not None:
        masked = masked & region
    scores = None
    if decode.order != "random":
        scores = order_scores(adjust_logits(logits, decode.temperature, decode.top_p), x0, decode)
    move = choose_positions(k_move, masked, p, scores, decode.order)
    return jnp.where(move, x0, x)


@struct.dataclass
class MaskedState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    logits: jax.Array  # the last x0 logits (used by ``cache``)
    stale: jax.Array  # True when x changed since ``logits`` was computed


def ancestral(vocab_size: int, num_steps: int, schedule="linear", mask_id: int | None = None, timesteps=None,
              coef=None, order: str = "random", cache: bool = False, temperature: float = 1.0,
              top_p: float = 1.0, greedy: bool = False, dtype=None, pc_lambda: float = 0.25, pc_clip: float = 10.0,
              background=None) -> Sampler:
    """The MDLM / MD4 ancestral sampler on ``num_steps`` steps of the time grid (module docstring)."""
    mask_id = check_mask_id(vocab_size, mask_id)
    schedule = get_mask_schedule(schedule)
    ts = check_times(num_steps, timesteps)
    probs = unmask_probabilities(schedule, ts, check_coef(coef, num_steps))
    decode = decode_options(order, temperature, top_p, greedy, dtype, pc_lambda, pc_clip, background, vocab_size)
    if cache not in (True, False):
        raise ValueError(f"cache must be True or False, got {cache!r}")

    def init(x, key=None, model_fn=None):
        del key, model_fn
        check_ids(x, vocab_size, mask_id)
        x = jnp.asarray(x, jnp.int32)
        return MaskedState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32),
                           logits=jnp.zeros(x.shape + (vocab_size,), jnp.float32), stale=jnp.ones((), bool))

    def step(state, key, model_fn):
        t, p = take_rows(state.i, jnp.float32, ts[:-1], probs)
        call = lambda: model_fn(state.x, t).astype(jnp.float32)
        if cache:
            logits = jax.lax.cond(state.stale, call, lambda: state.logits)
            calls = state.stale.astype(jnp.int32)
        else:
            logits, calls = call(), 1
        x = unmask_step(key, state.x, logits, p, mask_id, decode)
        return MaskedState(x=x, i=state.i + 1, nfe=state.nfe + calls, logits=logits, stale=jnp.any(x != state.x))

    return Sampler(init, step, num_steps, num_steps)


def all_masked(batch: int, length: int, mask_id: int) -> jax.Array:
    """The starting point of masked samplers: (batch, length) of mask_id."""
    return jnp.full((batch, length), mask_id, jnp.int32)
