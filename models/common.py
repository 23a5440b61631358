"""Pieces shared by the networks of ``models/`` (MLP, UNet, DiT, FID Inception): time embeddings,
attention, initialisation, parameter shapes and counts, the checked assembly of imported weights
and the ``model_fn`` closure.

All networks of the project are Flax **linen** modules: their parameters are a plain pytree
(``variables["params"]``) kept apart from the module, which is what the samplers' pure
``model_fn(x, t)`` closures, orbax checkpoints, EMA and ``shard_map`` all take.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


def batch_times(t, x) -> jax.Array:
    """``t`` (scalar or (B,)) as a (B,) array in x's dtype; a ValueError for any other shape."""
    t = jnp.asarray(t, x.dtype)
    if t.shape not in ((), (x.shape[0],)):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {t.shape}")
    return jnp.broadcast_to(t, (x.shape[0],))


def sinusoidal_embedding(t, dim: int, max_period: float = 10_000.0, freq_shift: float = 0.0,
                         flip_sin_to_cos: bool = False) -> jax.Array:
    """Sinusoidal embedding (B,) -> (B, dim) of Vaswani et al. (2017) as used by DDPM and DiT.

    ``[sin(t f_k), cos(t f_k)]`` with ``f_k = max_period^(-k / (dim/2 - freq_shift))``; DDPM
    (Ho et al. 2020, and diffusers' ``google/ddpm-cifar10-32``) uses ``freq_shift=1``,
    DiT ``freq_shift=0, flip_sin_to_cos=True`` (cos first). An odd ``dim`` is zero-padded.
    """
    half = dim // 2
    freqs = np.exp(-np.log(max_period) * np.arange(half) / (half - freq_shift))
    args = t[:, None] * jnp.asarray(freqs, t.dtype)[None]
    sin, cos = jnp.sin(args), jnp.cos(args)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def fourier_frequencies(dim: int, scale: float = 16.0, seed: int = 0) -> np.ndarray:
    """The ``dim // 2`` frequencies ``w ~ N(0, scale^2)`` of ``fourier_embedding``, float64 numpy.

    Drawn from ``numpy.random.default_rng(seed)``: a pure function of (dim, scale, seed), so a
    network and its twins in other frameworks (bench/) read the same constant.
    """
    return np.random.default_rng(seed).standard_normal(dim // 2) * scale


def fourier_embedding(t, dim: int, scale: float = 16.0, seed: int = 0) -> jax.Array:
    """Gaussian random Fourier features (B,) -> (B, dim): ``[sin(2 pi w t), cos(2 pi w t)]``.

    ``w = fourier_frequencies(dim, scale, seed)`` (Tancik et al. 2020; score_sde's
    GaussianFourierProjection) is a constant, not a parameter, so optimisers (weight decay)
    and EMA never touch it.
    """
    two_pi_w = 2.0 * np.pi * fourier_frequencies(dim, scale, seed)  # folded in float64: one rounding, one product
    args = t[:, None] * jnp.asarray(two_pi_w, t.dtype)[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def multi_head_attention(q, k, v, num_heads: int) -> jax.Array:
    """softmax(q k^T / sqrt(d_head)) v over tokens, q/k/v of shape (B, T, C) split into heads."""
    b, n, c = q.shape
    split = lambda a: a.reshape(b, a.shape[1], num_heads, c // num_heads)
    out = jax.nn.dot_product_attention(split(q), split(k), split(v), implementation="xla")
    return out.reshape(b, n, c)


def scaled_init(scale: float):
    """Variance-scaling uniform init, fan_avg (score_sde's ``default_init``); ``scale=0`` gives zeros."""
    if scale == 0.0:
        return nn.initializers.zeros
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def cached_block(module: nn.Module, h, call: Callable, refresh, cache, index: int):
    """(``call(module, h)``, 1 evaluation); given a ``cache`` (block outputs of an earlier call) and the
    boolean ``refresh``, block caching (``samplers.addons.cache``): ``nn.cond`` on refresh[index] between
    evaluating the block (1) and reusing cache[index] (0). The DiT's and the UNet's blocks go through it."""
    if refresh is None or cache is None:
        return call(module, h), 1
    return nn.cond(refresh[index], lambda m, h, old: (call(m, h), 1), lambda m, h, old: (old, 0), module, h,
                   cache[index])


def init_params(module: nn.Module, key, input_shape) -> dict:
    """The ``params`` of ``module`` for inputs of shape ``input_shape`` (without the batch axis)."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    return jax.jit(module.init)(key, x, jnp.zeros((), jnp.float32))["params"]


def param_count(params) -> int:
    """Number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def param_shapes(module: nn.Module, input_shape) -> dict:
    """The ``params`` tree of ``module`` with ``jax.ShapeDtypeStruct`` leaves; nothing is computed."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x, t)["params"]


def random_params(module: nn.Module, image_shape, seed: int = 0, scale: float = 0.2) -> dict:
    """Gaussian params of the module's shapes (no init compile: threefry compiles slowly on CPU)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), jnp.float32),
                                  param_shapes(module, image_shape))


def unflatten_checked(expected: dict, converted: dict, unused: list, where: str) -> dict:
    """Check converted weights against the expected flat ``{path: ShapeDtypeStruct}`` and unflatten.

    ``converted`` maps our path to ``(source_key, array)``; a shape mismatch, an unused source
    tensor or a missing parameter is a ValueError naming ``where`` and the keys.
    """
    for path, (key, array) in converted.items():
        if path not in expected:
            unused.append(key)
        elif array.shape != expected[path].shape:
            raise ValueError(f"{where}: {key} has shape {array.shape} in our layout, the architecture needs "
                             f"{expected[path].shape} for {'/'.join(path)}")
    if unused:
        raise ValueError(f"{where}: {len(unused)} tensors do not fit the architecture, e.g. {sorted(unused)[:5]}")
    missing = sorted("/".join(p) for p in expected if p not in converted)
    if missing:
        raise ValueError(f"{where}: {len(missing)} parameters of the architecture are missing, e.g. {missing[:5]}")
    return traverse_util.unflatten_dict({p: a for p, (_, a) in converted.items()})


def model_fn(module: nn.Module, params, train: bool = False, rng: jax.Array | None = None) -> Callable:
    """The samplers' ``model_fn(x, t)``: ``module`` applied with fixed ``params``.

    With ``train=True`` dropout is active and ``rng`` is its key (``rngs={"dropout": rng}``).
    """
    if train and rng is None:
        raise ValueError("model_fn(train=True) needs rng, the dropout key")
    rngs = {"dropout": rng} if train else None
    return lambda x, t: module.apply({"params": params}, x, t, train=train, rngs=rngs)
