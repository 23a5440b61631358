"""A Flax linen MLP ``model_fn(x, t)`` for low-dimensional data (toy densities, tests, benchmarks).

The time ``t`` (scalar or one per sample) is embedded by

* ``fourier``    -- Gaussian random Fourier features [sin(2 pi w t), cos(2 pi w t)],
  w ~ N(0, fourier_scale^2) fixed at init (Tancik et al. 2020; score_sde's
  GaussianFourierProjection), for continuous times in [0, 1];
* ``positional`` -- the sinusoidal embedding of DDPM / Transformers,
  [sin(t f_k), cos(t f_k)], f_k = max_period^(-k / half), for times in steps
  (e.g. 0..999) -- multiply continuous times by ``time_scale``;

then concatenated with x and passed through ``depth`` Dense+SiLU layers of
width ``hidden`` and a last Dense layer to ``out_dim`` (x's dimension by default).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

TIME_EMBEDDINGS = ("fourier", "positional")


def positional_embedding(t, dim: int, max_period: float = 10_000.0):
    """DDPM sinusoidal embedding (B,) -> (B, dim): [sin(t f_k), cos(t f_k)], f_k = max_period^(-k/half)."""
    half = dim // 2
    freqs = jnp.exp(-np.log(max_period) * jnp.arange(half, dtype=t.dtype) / half)
    args = t[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class MLP(nn.Module):
    """``MLP(...)(x, t)`` with x of shape (B, d) and t of shape () or (B,)."""

    hidden: int = 256
    depth: int = 3
    out_dim: int | None = None
    time_embedding: str = "fourier"
    embed_dim: int = 64
    fourier_scale: float = 16.0
    time_scale: float = 1.0

    def __post_init__(self):
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding must be one of {list(TIME_EMBEDDINGS)}, got {self.time_embedding!r}")
        for name in ("hidden", "depth", "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {self.embed_dim}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t):
        if x.ndim != 2:
            raise ValueError(f"x must have shape (batch, dim), got {x.shape}")
        t = jnp.asarray(t, x.dtype)
        if t.shape not in ((), (x.shape[0],)):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {t.shape}")
        t = jnp.broadcast_to(t, (x.shape[0],)) * self.time_scale
        if self.time_embedding == "fourier":
            w = self.param("fourier_w", nn.initializers.normal(self.fourier_scale), (self.embed_dim // 2,))
            args = 2.0 * jnp.pi * t[:, None] * jax.lax.stop_gradient(w).astype(x.dtype)[None]
            emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
        else:
            emb = positional_embedding(t, self.embed_dim)
        h = jnp.concatenate([x, emb], axis=-1)
        for _ in range(self.depth):
            h = nn.silu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.out_dim or x.shape[-1])(h)


def init_mlp(module: MLP, key, dim: int):
    """The ``params`` collection of ``module`` for data of dimension ``dim``."""
    return module.init(key, jnp.zeros((1, dim), jnp.float32), jnp.zeros((), jnp.float32))["params"]


def mlp_model_fn(module: MLP, params) -> Callable:
    """``model_fn(x, t)`` of the library's samplers: the module applied with fixed ``params``."""
    return lambda x, t: module.apply({"params": params}, x, t)


def param_count(params) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
