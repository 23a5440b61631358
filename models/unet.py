"""DDPM / DDPM++ UNet for images (NHWC), a Flax linen ``model_fn(x, t)``.

The network of Ho et al. 2020 (DDPM) and of Song et al. 2021 (score_sde's DDPM++, also used
for CIFAR-10 by DPM-Solver): ``conv_in``; per resolution level ``num_res_blocks`` residual
blocks (+ self-attention at ``attn_resolutions``) and a 2x downsampling; a middle
``res - attn - res``; the mirrored up path whose ``num_res_blocks + 1`` blocks per level each
take a skip connection; ``GroupNorm - SiLU - conv_out``. The time ``t`` (times ``time_scale``)
is embedded (sinusoidal or Gaussian Fourier), passed through ``Dense - SiLU - Dense`` and
added inside every residual block.

* ``resblock="ddpm"``: DDPM blocks with separate conv up/down-sampling (DDPM, diffusers'
  ``UNet2DModel``); ``"biggan"``: the resampling happens inside a residual block (DDPM++).
* ``skip_rescale``: residual sums divided by sqrt(2) (DDPM++).
* ``init_scale``: scale of the last conv of each block, of the attention output and of
  ``conv_out`` (0 = zero init, as DDPM and score_sde).

``ddpm_cifar10()`` is the architecture of diffusers' ``google/ddpm-cifar10-32`` (its weights
load with ``models.convert``), ``ddpmpp_cifar10()`` score_sde's DDPM++ cont. (VP).
Flax linen: parameters are a plain pytree apart from the module (see ``models.common``).
Call as ``UNet(...).apply({"params": p}, x, t, train=False, rngs={"dropout": key})`` with
x of shape (B, H, W, C) and t of shape () or (B,).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from models.common import (batch_times, cached_block, fourier_embedding, multi_head_attention, scaled_init,
                           sinusoidal_embedding)
from samplers.ode.common import check_choice

RESBLOCKS = ("ddpm", "biggan")
TIME_EMBEDDINGS = ("positional", "fourier")


def _conv(features, init_scale=1.0, kernel=3, name=None, **kw):
    pad = kw.pop("padding", ((kernel // 2,) * 2,) * 2)
    return nn.Conv(features, (kernel, kernel), padding=pad, kernel_init=scaled_init(init_scale), name=name, **kw)


def _upsample_nearest(h):
    return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)


def _downsample_avg(h):
    return nn.avg_pool(h, (2, 2), strides=(2, 2))


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Dense(SiLU(temb)), GN-SiLU-dropout-conv, + (1x1 conv) shortcut (Ho et al. 2020)."""

    features: int
    dropout: float
    groups: int
    eps: float
    init_scale: float
    skip_rescale: bool
    resample: str | None = None  # None, "up" or "down" (BigGAN block)

    @nn.compact
    def __call__(self, x, temb, train: bool):
        norm = lambda name: nn.GroupNorm(self.groups, epsilon=self.eps, use_fast_variance=False, name=name)
        h = nn.silu(norm("norm1")(x))
        if self.resample == "up":
            h, x = _upsample_nearest(h), _upsample_nearest(x)
        elif self.resample == "down":
            h, x = _downsample_avg(h), _downsample_avg(x)
        h = _conv(self.features, name="conv1")(h)
        temb = nn.Dense(self.features, kernel_init=scaled_init(1.0), name="time_emb_proj")(nn.silu(temb))
        h = h + temb[:, None, None]
        h = nn.silu(norm("norm2")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv(self.features, self.init_scale, name="conv2")(h)
        if x.shape[-1] != self.features or self.resample is not None:
            x = _conv(self.features, kernel=1, name="conv_shortcut")(x)
        out = x + h
        return out / np.sqrt(2.0) if self.skip_rescale else out


class AttnBlock(nn.Module):
    """Spatial self-attention with a residual connection: x + out(attn(GN(x)))."""

    head_dim: int | None
    groups: int
    eps: float
    init_scale: float
    skip_rescale: bool

    @nn.compact
    def __call__(self, x):
        b, hgt, wid, c = x.shape
        if self.head_dim is not None and c % self.head_dim:
            raise ValueError(f"attn_head_dim={self.head_dim} must divide the attention channels {c}")
        heads = 1 if self.head_dim is None else c // self.head_dim
        h = nn.GroupNorm(self.groups, epsilon=self.eps, use_fast_variance=False, name="group_norm")(x)
        h = h.reshape(b, hgt * wid, c)
        dense = lambda name, scale=1.0: nn.Dense(c, kernel_init=scaled_init(scale), name=name)
        h = multi_head_attention(dense("to_q")(h), dense("to_k")(h), dense("to_v")(h), heads)
        h = dense("to_out", self.init_scale)(h).reshape(b, hgt, wid, c)
        out = x + h
        return out / np.sqrt(2.0) if self.skip_rescale else out


class UNet(nn.Module):
    """``UNet(...)(x, t, train=False)``: x (B, H, W, C) -> (B, H, W, out_channels or C)."""

    channels: int = 128
    channel_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    out_channels: int | None = None
    resblock: str = "ddpm"
    skip_rescale: bool = False
    time_embedding: str = "positional"
    time_scale: float = 1.0
    freq_shift: float = 1.0
    flip_sin_to_cos: bool = False
    fourier_scale: float = 16.0
    time_embed_dim: int | None = None
    attn_head_dim: int | None = None
    mid_attention: bool = True
    norm_groups: int = 32
    norm_eps: float = 1e-6
    downsample_padding: int = 0
    init_scale: float = 0.0

    def __post_init__(self):
        check_choice("resblock", self.resblock, RESBLOCKS)
        check_choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        check_choice("downsample_padding", self.downsample_padding, (0, 1))
        for name in ("channels", "num_res_blocks", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        mult = tuple(self.channel_mult)
        if not mult or any(not isinstance(m, int) or m < 1 for m in mult):
            raise ValueError(f"channel_mult must be a non-empty sequence of integers >= 1, "
                             f"got {self.channel_mult!r}")
        bad = [self.channels * m for m in mult if (self.channels * m) % self.norm_groups]
        if bad:
            raise ValueError(f"norm_groups={self.norm_groups} must divide every level's channels, not {bad}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attn_head_dim is not None and (not isinstance(self.attn_head_dim, int) or self.attn_head_dim < 1):
            raise ValueError(f"attn_head_dim must be None (one head) or an integer >= 1, "
                             f"got {self.attn_head_dim!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, train: bool = False, cache=None, refresh=None):
        """The output; with a boolean ``refresh`` (blocks,) the call returns (output, block outputs, number
        of blocks evaluated) and, given the ``cache`` (the tuple of block outputs of an earlier call),
        evaluates block i only where refresh[i] and reuses its cached output elsewhere (block caching,
        ``samplers.addons.cache``). The blocks, in evaluation order: every residual, attention and
        resampling block of the down path, the middle res - attn - res, the same of the up path
        (``conv_in`` and the output head always run)."""
        if x.ndim != 4:
            raise ValueError(f"x must have shape (batch, height, width, channels), got {x.shape}")
        levels = len(self.channel_mult)
        height, width = x.shape[1:3]
        if height % 2 ** (levels - 1) or width % 2 ** (levels - 1):
            raise ValueError(f"image size {height}x{width} must be divisible by 2^(levels-1) "
                             f"= {2 ** (levels - 1)}")
        t = batch_times(t, x) * self.time_scale
        if self.time_embedding == "positional":
            emb = sinusoidal_embedding(t, self.channels, freq_shift=self.freq_shift,
                                       flip_sin_to_cos=self.flip_sin_to_cos)
        else:
            emb = fourier_embedding(t, 2 * self.channels, self.fourier_scale)
        temb_dim = self.time_embed_dim or 4 * self.channels
        temb = nn.Dense(temb_dim, kernel_init=scaled_init(1.0), name="time_dense_0")(emb)
        temb = nn.Dense(temb_dim, kernel_init=scaled_init(1.0), name="time_dense_1")(nn.silu(temb))

        common = dict(dropout=self.dropout, groups=self.norm_groups, eps=self.norm_eps,
                      init_scale=self.init_scale, skip_rescale=self.skip_rescale)
        res = lambda f, name, resample=None: ResBlock(f, resample=resample, name=name, **common)
        attn = lambda name: AttnBlock(self.attn_head_dim, self.norm_groups, self.norm_eps, self.init_scale,
                                      self.skip_rescale, name=name)

        outputs, evals = [], []

        def block(module, h, call=lambda m, h: m(h)):
            """module's output at h through call(m, h) (cached: reused where refresh is False)."""
            if refresh is None:
                return call(module, h)
            h, n = cached_block(module, h, call, refresh, cache, len(outputs))
            outputs.append(h)
            evals.append(n)
            return h

        with_temb = lambda m, h: m(h, temb, train)
        h = _conv(self.channels, name="conv_in")(x)
        hs = [h]
        for i, m in enumerate(self.channel_mult):
            for j in range(self.num_res_blocks):
                h = block(res(self.channels * m, f"down_{i}_res_{j}"), h, with_temb)
                if height >> i in self.attn_resolutions:
                    h = block(attn(f"down_{i}_attn_{j}"), h)
                hs.append(h)
            if i != levels - 1:
                if self.resblock == "biggan":
                    h = block(res(h.shape[-1], f"down_{i}_downsample", "down"), h, with_temb)
                else:
                    pad = ((0, 1), (0, 1)) if self.downsample_padding == 0 else ((1, 1), (1, 1))
                    h = block(_conv(h.shape[-1], strides=(2, 2), padding=pad, name=f"down_{i}_downsample"), h)
                hs.append(h)

        h = block(res(h.shape[-1], "mid_res_0"), h, with_temb)
        if self.mid_attention:
            h = block(attn("mid_attn"), h)
        h = block(res(h.shape[-1], "mid_res_1"), h, with_temb)

        for i in reversed(range(levels)):
            for j in range(self.num_res_blocks + 1):
                h = block(res(self.channels * self.channel_mult[i], f"up_{i}_res_{j}"),
                          jnp.concatenate([h, hs.pop()], axis=-1), with_temb)
                if height >> i in self.attn_resolutions:
                    h = block(attn(f"up_{i}_attn_{j}"), h)
            if i != 0:
                if self.resblock == "biggan":
                    h = block(res(h.shape[-1], f"up_{i}_upsample", "up"), h, with_temb)
                else:
                    h = block(_conv(h.shape[-1], name=f"up_{i}_upsample"), h, lambda m, h: m(_upsample_nearest(h)))

        h = nn.GroupNorm(self.norm_groups, epsilon=self.norm_eps, use_fast_variance=False, name="norm_out")(h)
        h = nn.silu(h)
        out = _conv(self.out_channels or x.shape[-1], self.init_scale, name="conv_out")(h)
        return out if refresh is None else (out, tuple(outputs), sum(evals, jnp.zeros((), jnp.int32)))


def ddpm_cifar10(**overrides) -> UNet:
    """DDPM's CIFAR-10 UNet (Ho et al. 2020; diffusers' ``google/ddpm-cifar10-32``, 35.7M params).

    Takes the discrete step t in [0, 999]."""
    kw = dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1,
              resblock="ddpm", freq_shift=1.0, flip_sin_to_cos=False, downsample_padding=0)
    return UNet(**{**kw, **overrides})


def ddpmpp_cifar10(deep: bool = False, **overrides) -> UNet:
    """score_sde's DDPM++ cont. (VP) for CIFAR-10 (Song et al. 2021), ``deep`` = 8 blocks per level.

    Takes continuous t in [0, 1] (embedded as 999 t, as score_sde does)."""
    kw = dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=8 if deep else 4, attn_resolutions=(16,),
              dropout=0.1, resblock="biggan", skip_rescale=True, time_scale=999.0, freq_shift=1.0)
    return UNet(**{**kw, **overrides})
