"""Block diffusion (BD3-LM, Arriola et al. 2025): autoregressive over blocks of ``block_size`` tokens,
masked diffusion inside each block (the ancestral step of samplers/discrete/masked.py, with its orders
and draw options, on ``steps_per_block`` steps of the time grid per block).

At a step of block b the model is called on the clean prefix plus the current block,
``model_fn(x[:, :(b + 1) block_size], t)``, and only the current block's masked positions move; later
blocks stay masked. The call has a static shape per block (``lax.switch`` over the blocks), so a
block-causal model can plug a key-value cache of the prefix into ``model_fn``. One block is plain
masked diffusion bit for bit (same key).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, basic_init, take_rows
from samplers.discrete.masked import (check_coef, check_ids, check_mask_id, check_times, decode_options,
                                      unmask_probabilities, unmask_step)
from samplers.discrete.schedules import get_mask_schedule


def block_diffusion(vocab_size: int, length: int, block_size: int, steps_per_block: int, schedule="linear",
                    mask_id: int | None = None, timesteps=None, coef=None, order: str = "random",
                    temperature: float = 1.0, top_p: float = 1.0, greedy: bool = False, dtype=None) -> Sampler:
    """Block diffusion over ``length // block_size`` blocks; ``coef`` has one entry per step (all blocks)."""
    mask_id = check_mask_id(vocab_size, mask_id)
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if not isinstance(block_size, int) or block_size < 1 or length % block_size:
        raise ValueError(f"block_size must be a positive integer dividing length={length}, got {block_size!r}")
    num_blocks = length // block_size
    num_steps = num_blocks * steps_per_block
    schedule = get_mask_schedule(schedule)
    ts = check_times(steps_per_block, timesteps)
    coef = check_coef(coef, num_steps).reshape(num_blocks, steps_per_block)
    probs = np.concatenate([unmask_probabilities(schedule, ts, c) for c in coef])
    t_steps = np.tile(ts[:-1], num_blocks)
    block_of = np.repeat(np.arange(num_blocks), steps_per_block)
    decode = decode_options(order, temperature, top_p, greedy, dtype, vocab_size=vocab_size)
    position_block = np.arange(length) // block_size

    def init(x, key=None, model_fn=None):
        check_ids(x, vocab_size, mask_id)
        if np.shape(x)[1] != length:
            raise ValueError(f"x must have length {length}, got shape {np.shape(x)}")
        return basic_init(jnp.asarray(x, jnp.int32), key, model_fn)

    def step(state, key, model_fn):
        t, p = take_rows(state.i, jnp.float32, t_steps, probs)
        b = jnp.asarray(block_of)[state.i]

        def call(end):
            def prefix_logits():
                logits = model_fn(state.x[:, :end], t).astype(jnp.float32)
                return jnp.pad(logits, ((0, 0), (0, length - end), (0, 0)))
            return prefix_logits

        logits = jax.lax.switch(b, [call((k + 1) * block_size) for k in range(num_blocks)])
        region = jnp.broadcast_to(jnp.asarray(position_block) == b, state.x.shape)
        x = unmask_step(key, state.x, logits, p, mask_id, decode, region)
        return BasicState(x=x, i=state.i + 1, nfe=state.nfe + 1)

    return Sampler(init, step, num_steps, num_steps)
