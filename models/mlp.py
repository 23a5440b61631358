"""A Flax linen MLP ``model_fn(x, t)`` for low-dimensional data (toy densities, tests, benchmarks).

The time ``t`` (scalar or one per sample) is embedded by

* ``fourier``    -- Gaussian random Fourier features [sin(2 pi w t), cos(2 pi w t)],
  w ~ N(0, fourier_scale^2) a constant drawn from ``fourier_seed`` (Tancik et al. 2020;
  score_sde's GaussianFourierProjection; ``models.common.fourier_embedding``), for
  continuous times in [0, 1];
* ``positional`` -- the sinusoidal embedding of DDPM / Transformers,
  [sin(t f_k), cos(t f_k)], f_k = 10000^(-k / half) (``models.common.sinusoidal_embedding``),
  for times in steps (e.g. 0..999) -- multiply continuous times by ``time_scale``;

then concatenated with x (and, with ``cond_dim`` > 0, with the same embedding of each of
``cond_dim`` extra scalars per sample -- e.g. the step size of a shortcut model, Frans et al.
2024 -- zero when not given) and passed through ``depth`` Dense+SiLU layers of
width ``hidden`` and a last Dense layer to ``out_dim`` (x's dimension by default).
The parameters are the Dense layers only (``Dense_0`` .. ``Dense_depth``).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from models.common import batch_times, fourier_embedding, init_params, model_fn, sinusoidal_embedding

TIME_EMBEDDINGS = ("fourier", "positional")


class MLP(nn.Module):
    """``MLP(...)(x, t)`` with x of shape (B, d) and t of shape () or (B,)."""

    hidden: int = 256
    depth: int = 3
    out_dim: int | None = None
    time_embedding: str = "fourier"
    embed_dim: int = 64
    fourier_scale: float = 16.0
    time_scale: float = 1.0
    fourier_seed: int = 0
    cond_dim: int = 0

    def __post_init__(self):
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding must be one of {list(TIME_EMBEDDINGS)}, got {self.time_embedding!r}")
        for name in ("hidden", "depth", "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.cond_dim, int) or self.cond_dim < 0:
            raise ValueError(f"cond_dim must be an integer >= 0, got {self.cond_dim!r}")
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {self.embed_dim}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, t, train: bool = False, cond=None):
        """``train`` is accepted for ``models.common.model_fn``; the MLP has no dropout. ``cond``: shape
        (B, cond_dim) or (cond_dim,) (one for all), only with ``cond_dim`` > 0."""
        if x.ndim != 2:
            raise ValueError(f"x must have shape (batch, dim), got {x.shape}")
        if cond is not None and not self.cond_dim:
            raise ValueError("cond given to an MLP with cond_dim=0")

        def embed(v, seed):
            v = batch_times(v, x) * self.time_scale
            if self.time_embedding == "fourier":
                return fourier_embedding(v, self.embed_dim, self.fourier_scale, seed)
            return sinusoidal_embedding(v, self.embed_dim)

        parts = [x, embed(t, self.fourier_seed)]
        if self.cond_dim:
            c = jnp.zeros((self.cond_dim,), x.dtype) if cond is None else jnp.asarray(cond, x.dtype)
            c = jnp.broadcast_to(c, (x.shape[0], self.cond_dim))
            parts += [embed(c[:, j], self.fourier_seed + 1 + j) for j in range(self.cond_dim)]
        h = jnp.concatenate(parts, axis=-1)
        for _ in range(self.depth):
            h = nn.silu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.out_dim or x.shape[-1])(h)


def init_mlp(module: MLP, key, dim: int):
    """The ``params`` collection of ``module`` for data of dimension ``dim``."""
    return init_params(module, key, (dim,))


mlp_model_fn = model_fn  # the samplers' model_fn(x, t) of an MLP: models.common.model_fn itself
