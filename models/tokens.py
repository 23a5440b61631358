"""A small time-conditioned token model for discrete diffusion: ``TokenMLP(...)(x, t)`` -> logits.

x: (B, L) integer ids in 0..vocab_size (``vocab_size`` is the mask id, the absorbing token of MDLM /
MD4); t: () or (B,). Each position's token and position embeddings are concatenated over the
sequence with a sinusoidal time embedding and mixed by an MLP; the output is per-position logits
(B, L, vocab_size) over the vocabulary, the mask excluded (the discrete samplers' ``model_fn``
contract, ``samplers/discrete``).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from models.common import batch_times, sinusoidal_embedding


class TokenMLP(nn.Module):
    """MLP over a whole token sequence of ``length`` positions and ``vocab_size`` tokens (+ mask)."""

    length: int
    vocab_size: int
    hidden: int = 256
    depth: int = 3
    embed_dim: int = 16
    time_dim: int = 64

    def __post_init__(self):
        for name in ("length", "vocab_size", "hidden", "depth", "embed_dim", "time_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, train: bool = False):
        """``train`` is accepted for ``models.common.model_fn``; the model has no dropout."""
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"x must have shape (batch, {self.length}), got {x.shape}")
        tok = nn.Embed(self.vocab_size + 1, self.embed_dim)(x)  # (B, L, E), id vocab_size = mask
        pos = self.param("pos", nn.initializers.normal(0.02), (self.length, self.embed_dim))
        h = (tok + pos).reshape(x.shape[0], -1)
        temb = sinusoidal_embedding(batch_times(t, h) * 1000.0, self.time_dim)
        h = jnp.concatenate([h, temb], axis=-1)
        for _ in range(self.depth):
            h = nn.silu(nn.Dense(self.hidden)(h))
        logits = nn.Dense(self.length * self.vocab_size, kernel_init=nn.initializers.zeros)(h)
        return logits.reshape(x.shape[0], self.length, self.vocab_size)
