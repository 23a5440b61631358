"""A small Diffusion Transformer (DiT, Peebles & Xie 2023) for images (NHWC), a Flax linen ``model_fn(x, t)``.

``patchify`` (a p x p stride-p conv to ``hidden`` channels) + fixed 2-D sin-cos position
embedding; ``depth`` transformer blocks with adaLN-Zero conditioning on the time embedding
c = MLP(sinusoidal(t * time_scale)):

    shift, scale, gate (x2) = Dense(SiLU(c)),  zero-initialised
    x += gate_msa * MSA(LN(x) * (1 + scale_msa) + shift_msa)
    x += gate_mlp * MLP(LN(x) * (1 + scale_mlp) + shift_mlp)

a final adaLN-modulated LayerNorm and zero-initialised Dense to p*p*out_channels, and
``unpatchify``. With adaLN-Zero every block starts as the identity and the output as zero.
Defaults are DiT-S/2 (hidden 384, depth 12, 6 heads, patch 2). Flax linen: parameters are a
plain pytree apart from the module (see ``models.common``).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from models.common import batch_times, cached_block, multi_head_attention, sinusoidal_embedding


def patchify(x, p: int):
    """(B, H, W, C) -> (B, H/p * W/p, p*p*C), patches in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens, p: int, height: int, width: int):
    """Inverse of ``patchify``: (B, H/p * W/p, p*p*C) -> (B, H, W, C)."""
    b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.reshape(b, height // p, width // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding (MAE / DiT): half the channels for rows, half for columns."""
    def one_d(d, pos):
        omega = 1.0 / 10_000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gh, gw = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")
    return np.concatenate([one_d(dim // 2, gh), one_d(dim // 2, gw)], axis=1).astype(np.float32)


def _modulate(x, shift, scale):
    return x * (1.0 + scale[:, None]) + shift[:, None]


def _layer_norm(name=None):
    return nn.LayerNorm(epsilon=1e-6, use_scale=False, use_bias=False, use_fast_variance=False, name=name)


_dense = lambda features, name=None: nn.Dense(features, kernel_init=nn.initializers.xavier_uniform(), name=name)
_zero_dense = lambda features, name=None: nn.Dense(features, kernel_init=nn.initializers.zeros, name=name)


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block (Peebles & Xie 2023, Fig. 3)."""

    hidden: int
    num_heads: int
    mlp_ratio: float

    @nn.compact
    def __call__(self, x, c):
        mod = _zero_dense(6 * self.hidden, "adaLN_modulation")(nn.silu(c))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(mod, 6, axis=-1)
        h = _modulate(_layer_norm("norm1")(x), shift_msa, scale_msa)
        q, k, v = jnp.split(_dense(3 * self.hidden, "qkv")(h), 3, axis=-1)
        h = _dense(self.hidden, "proj")(multi_head_attention(q, k, v, self.num_heads))
        x = x + gate_msa[:, None] * h
        h = _modulate(_layer_norm("norm2")(x), shift_mlp, scale_mlp)
        h = _dense(int(self.hidden * self.mlp_ratio), "fc1")(h)
        h = _dense(self.hidden, "fc2")(nn.gelu(h, approximate=True))
        return x + gate_mlp[:, None] * h


class DiT(nn.Module):
    """``DiT(...)(x, t, train=False)``: x (B, H, W, C) -> (B, H, W, out_channels or C)."""

    patch_size: int = 2
    hidden: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    out_channels: int | None = None
    freq_dim: int = 256
    time_scale: float = 1.0

    def __post_init__(self):
        for name in ("patch_size", "hidden", "depth", "num_heads", "freq_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.hidden % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide hidden={self.hidden}")
        if self.hidden % 4:
            raise ValueError(f"hidden must be a multiple of 4 (2-D sin-cos position embedding), got {self.hidden}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, train: bool = False, cache=None, refresh=None):
        """The output; with a boolean ``refresh`` (depth,) the call returns (output, block outputs, number
        of blocks evaluated) and, given the ``cache`` (a tuple of the depth block outputs (B, tokens, hidden)
        of an earlier call), evaluates block i only where refresh[i] and reuses its cached output elsewhere
        (block caching, ``samplers.addons.cache``); without a cache every block is evaluated."""
        del train  # no dropout in DiT
        if x.ndim != 4:
            raise ValueError(f"x must have shape (batch, height, width, channels), got {x.shape}")
        _, height, width, channels = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} must be divisible by patch_size={p}")
        out_channels = self.out_channels or channels

        h = nn.Conv(self.hidden, (p, p), strides=(p, p), padding="VALID",
                    kernel_init=nn.initializers.xavier_uniform(), name="patch_embed")(x)
        h = h.reshape(h.shape[0], -1, self.hidden)
        h = h + jnp.asarray(sincos_pos_embed_2d(self.hidden, height // p, width // p), h.dtype)[None]

        emb = sinusoidal_embedding(batch_times(t, x) * self.time_scale, self.freq_dim, flip_sin_to_cos=True)
        c = nn.Dense(self.hidden, kernel_init=nn.initializers.normal(0.02), name="t_embed_0")(emb)
        c = nn.Dense(self.hidden, kernel_init=nn.initializers.normal(0.02), name="t_embed_1")(nn.silu(c))

        outputs, evals = [], jnp.zeros((), jnp.int32)
        for i in range(self.depth):
            block = DiTBlock(self.hidden, self.num_heads, self.mlp_ratio, name=f"block_{i}")
            h, n = cached_block(block, h, lambda m, h: m(h, c), refresh, cache, i)
            outputs.append(h)
            evals = evals + n

        shift, scale = jnp.split(_zero_dense(2 * self.hidden, "final_adaLN")(nn.silu(c)), 2, axis=-1)
        h = _modulate(_layer_norm("final_norm")(h), shift, scale)
        h = _zero_dense(p * p * out_channels, "final_linear")(h)
        out = unpatchify(h, p, height, width)
        return out if refresh is None else (out, tuple(outputs), evals)
