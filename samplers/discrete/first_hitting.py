"""First-hitting sampler of masked diffusion (Zheng et al. 2024, "Masked diffusion models are secretly
time-agnostic masked models and exploit inaccurate categorical sampling", Alg. 2): exact, one token per
model call.

With n masked positions at time t each masked token's reveal time has P(reveal < s) = (1 - alpha_s) /
(1 - alpha_t), so the next reveal (the first hit going backwards) is at

    1 - alpha_s = (1 - alpha_t) u^(1 / (coef_i n)),   u ~ U(0, 1)      (linear schedule: s = t u^(1/n)),

s = alpha^-1(...) for a general schedule; one uniformly chosen masked position is then unmasked with a
token drawn from x0_hat(x, s) (in float64 by default where x64 is on: samplers/discrete/categorical.py).
``coef`` (per step, default ones) scales the reveal rate; ones reproduce the exact sampler bit for bit.
The exact sampler needs one step per masked token: num_steps = L for an all-masked start. A batch
whose sequences have no masked token left skips the model (``lax.cond``; ``nfe`` counts real calls).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from samplers.core import Sampler, take
from samplers.discrete.categorical import categorical, draw_tokens
from samplers.discrete.masked import check_coef, check_ids, check_mask_id, decode_options
from samplers.discrete.schedules import get_mask_schedule


@struct.dataclass
class FirstHittingState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    t: jax.Array  # (B,) the current time of each sequence


def first_hitting(vocab_size: int, length: int, schedule="linear", mask_id: int | None = None, coef=None,
                  temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False, dtype=None) -> Sampler:
    """The first-hitting sampler for sequences of ``length`` tokens (``length`` steps, module docstring)."""
    mask_id = check_mask_id(vocab_size, mask_id)
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    schedule = get_mask_schedule(schedule)
    coef = check_coef(coef, length)
    decode = decode_options("random", temperature, top_p, greedy, dtype)

    def init(x, key=None, model_fn=None):
        del key, model_fn
        check_ids(x, vocab_size, mask_id)
        x = jnp.asarray(x, jnp.int32)
        if x.shape[1] != length:
            raise ValueError(f"x must have length {length}, got shape {x.shape}")
        return FirstHittingState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32),
                                 t=jnp.ones(x.shape[:1], decode.dtype))

    def step(state, key, model_fn):
        k_time, k_pos, k_tok = jax.random.split(key, 3)
        masked = state.x == mask_id
        n = masked.sum(-1)
        c = take(coef, state.i, decode.dtype)
        u = jax.random.uniform(k_time, n.shape, decode.dtype)
        rate = c * jnp.maximum(n, 1).astype(decode.dtype)
        one_minus_alpha = (1.0 - schedule.alpha(state.t)) * u ** (1.0 / rate)
        t = jnp.where(n > 0, schedule.t_from_alpha(1.0 - one_minus_alpha), state.t).astype(decode.dtype)
        pos = categorical(k_pos, jnp.where(masked, 0.0, -jnp.inf), decode.dtype)  # uniform masked position
        pick = masked & (jnp.arange(length) == pos[:, None])

        def reveal():
            logits = model_fn(state.x, t.astype(jnp.float32))
            x0 = draw_tokens(k_tok, logits, decode.dtype, decode.temperature, decode.top_p, decode.greedy)
            return jnp.where(pick, x0, state.x)

        any_masked = jnp.any(masked)
        x = jax.lax.cond(any_masked, reveal, lambda: state.x)
        return FirstHittingState(x=x, i=state.i + 1, nfe=state.nfe + any_masked.astype(jnp.int32), t=t)

    return Sampler(init, step, length, length)
