"""A small TarFlow (Zhai et al. 2024, "Normalizing Flows are Capable Generative Models"): a stack of
autoregressive affine flow blocks, each a causal transformer over a sequence of T tokens of
dimension D, alternating the token order from block to block.

Block k reads its input u (B, T, D) in its order and maps it to z_t = (u_t - mu_t) exp(-a_t), where
(mu_t, a_t) come from u_<t only: the tokens are embedded, shifted right by one behind a learned
start token, and passed through causal self-attention layers. The log-scale is bounded,
a = s tanh(a_raw / s). Data -> noise is one parallel pass; noise -> data is sequential in t
(``samplers.parallel.ar_inverse``: sequential, or Jacobi in parallel).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from samplers.parallel.ar_inverse import ARFlow, forward


class CausalLayer(nn.Module):
    """Pre-norm transformer layer with causal self-attention."""

    width: int
    heads: int

    @nn.compact
    def __call__(self, h):
        b, t, c = h.shape
        y = nn.LayerNorm()(h)
        q, k, v = (nn.Dense(c)(y).reshape(b, t, self.heads, c // self.heads) for _ in range(3))
        att = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla").reshape(b, t, c)
        h = h + nn.Dense(c)(att)
        y = nn.LayerNorm()(h)
        return h + nn.Dense(c)(nn.gelu(nn.Dense(4 * c)(y)))


class AffineBlock(nn.Module):
    """(mu, a) (B, T, D) of one block from its input u (B, T, D); position t sees u_<t only."""

    width: int = 64
    depth: int = 2
    heads: int = 4
    max_log_scale: float = 2.0
    out_scale: float = 0.3

    @nn.compact
    def __call__(self, u):
        b, t, d = u.shape
        h = nn.Dense(self.width)(u)
        start = self.param("start", nn.initializers.normal(1.0), (1, 1, self.width))
        h = jnp.concatenate([jnp.broadcast_to(start, (b, 1, self.width)).astype(h.dtype), h[:, :-1]], axis=1)
        h = h + self.param("pos", nn.initializers.normal(0.5), (t, self.width)).astype(h.dtype)
        for _ in range(self.depth):
            h = CausalLayer(self.width, self.heads)(h)
        out = nn.Dense(2 * d, kernel_init=nn.initializers.normal(self.out_scale / self.width**0.5))(nn.LayerNorm()(h))
        mu, a = jnp.split(out, 2, axis=-1)
        return mu, self.max_log_scale * jnp.tanh(a / self.max_log_scale)


class TarFlow(nn.Module):
    """``num_blocks`` affine autoregressive blocks, odd ones reading the tokens reversed.
    ``__call__(x)`` maps data (B, T, D) to (z, logdet); ``block(k, u)`` is block k's (mu, a)."""

    num_blocks: int = 4
    width: int = 64
    depth: int = 2
    heads: int = 4
    max_log_scale: float = 2.0
    out_scale: float = 0.3

    def setup(self):
        for name in ("num_blocks", "width", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        self.blocks = [AffineBlock(self.width, self.depth, self.heads, self.max_log_scale, self.out_scale)
                       for _ in range(self.num_blocks)]

    def block(self, k: int, u):
        return self.blocks[k](u)

    def __call__(self, x):
        return forward(ARFlow(self.block, reverse_orders(self.num_blocks)), x)


def reverse_orders(num_blocks: int) -> tuple:
    """Block k reads the tokens reversed for odd k."""
    return tuple(k % 2 == 1 for k in range(num_blocks))


def as_ar_flow(module: TarFlow, variables) -> ARFlow:
    """The ``ARFlow`` of ``module`` with fixed ``variables``, for ``samplers.parallel.ar_inverse``."""
    return ARFlow(lambda k, u: module.apply(variables, k, u, method=TarFlow.block), reverse_orders(module.num_blocks))


def init_tarflow(module: TarFlow, key, seq_len: int, dim: int) -> dict:
    """The variables of ``module`` for sequences of ``seq_len`` tokens of dimension ``dim``."""
    return module.init(key, jnp.zeros((1, seq_len, dim), jnp.float32))
