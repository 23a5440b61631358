"""Networks by name for the trainers: ``config.model = {name, kwargs}`` -> a ``Network``.

Names: ``mlp`` (``models.mlp.MLP``; image data are flattened to vectors for it),
``unet`` (``models.unet.UNet``) with the presets ``ddpm_cifar10`` and
``ddpmpp_cifar10`` (kwargs override the preset), ``dit`` (``models.dit.DiT``).
A ``Network`` calls its Flax linen module as ``apply(params, x, t, rng, train)``
on x of the data's event shape; dropout is active only with ``train=True``.

Token networks (``TOKEN_NETWORKS``: ``token_mlp``, ``models.tokens.TokenMLP``) are ``TokenNetwork`` s
for discrete diffusion: integer ids (B, L) in, per-position logits (B, L, V) out (the discrete samplers'
``model_fn`` contract), with L the number of values in one example of the data (64 for the 8x8 digits)
and the mask id V = ``vocab_size``; their parameters, EMA and checkpoints are those of any network.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from samplers.ode.common import check_choice

# name -> (module path, constructor, takes (B, d) vectors, its __call__ has a ``train`` argument)
NETWORKS = {
    "mlp": ("models.mlp", "MLP", True, False),
    "unet": ("models.unet", "UNet", False, True),
    "ddpm_cifar10": ("models.unet", "ddpm_cifar10", False, True),
    "ddpmpp_cifar10": ("models.unet", "ddpmpp_cifar10", False, True),
    "dit": ("models.dit", "DiT", False, True),
}
# name -> (module path, constructor): modules called as module(x (B, L) int, t) -> logits (B, L, V)
TOKEN_NETWORKS = {
    "token_mlp": ("models.tokens", "TokenMLP"),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A Flax linen ``module`` for data of ``event_shape`` (the shape of one example)."""

    module: nn.Module
    event_shape: tuple[int, ...]
    flat: bool
    has_train: bool

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(np.prod(self.event_shape)),) if self.flat else self.event_shape

    def init(self, key) -> Any:
        x = jnp.zeros((1,) + self.input_shape, jnp.float32)
        return self.module.init(key, x, jnp.zeros((), jnp.float32))["params"]

    def param_shapes(self) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (traced only: no device is touched)."""
        return jax.eval_shape(self.init, jax.ShapeDtypeStruct((2,), jnp.uint32))

    def apply(self, params, x, t, rng=None, train: bool = False, cond=None):
        """The module's output for x of shape (B, *event_shape) and t of shape () or (B,); ``cond``
        (extra per-sample conditioning, e.g. a shortcut model's step size) goes to modules that take it."""
        b = x.shape[0]
        h = x.reshape((b,) + self.input_shape)
        if cond is not None:
            out = self.module.apply({"params": params}, h, t, cond=cond)
        elif self.has_train:
            out = self.module.apply({"params": params}, h, t, train=train,
                                    rngs={"dropout": rng} if train and rng is not None else None)
        else:
            out = self.module.apply({"params": params}, h, t)
        return out.reshape(x.shape)

    def model_fn(self, params):
        """The samplers' ``model_fn(x, t)`` (evaluation mode)."""
        return lambda x, t: self.apply(params, x, t)


@dataclasses.dataclass(frozen=True, eq=False)
class TokenNetwork:
    """A token ``module`` (``TOKEN_NETWORKS``) over sequences of ``length`` ids in 0..``vocab_size`` (the
    last is the mask), for data of ``event_shape`` (prod(event_shape) = length; the data are quantised to
    tokens by the objective, ``train.discrete``)."""

    module: nn.Module
    event_shape: tuple[int, ...]
    vocab_size: int

    @property
    def length(self) -> int:
        return int(np.prod(self.event_shape))

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def init(self, key) -> Any:
        x = jnp.zeros((1, self.length), jnp.int32)
        return self.module.init(key, x, jnp.zeros((), jnp.float32))["params"]

    def param_shapes(self) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (traced only: no device is touched)."""
        return jax.eval_shape(self.init, jax.ShapeDtypeStruct((2,), jnp.uint32))

    def apply(self, params, x, t, rng=None, train: bool = False, cond=None):
        """Logits (B, L, V) for ids x of shape (B, L) (or (B, *event_shape)) and t of shape () or (B,)."""
        del rng, train  # no dropout in the token modules
        if cond is not None:
            raise ValueError("token networks take no extra conditioning (cond)")
        return self.module.apply({"params": params}, x.reshape(x.shape[0], self.length), t)

    def model_fn(self, params):
        """``model_fn(x, t)`` -> logits (B, L, V) (the samplers add the observed token's likelihood:
        ``train.discrete.observe``)."""
        return lambda x, t: self.apply(params, x, t)


def _constructor(name: str, path: str, attr: str):
    try:
        return getattr(importlib.import_module(path), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model.name={name!r} needs {path}.{attr}, which is not available: {err}") from err


def _construct(ctor, kwargs: dict, path: str, attr: str) -> nn.Module:
    try:
        return ctor(**kwargs)
    except TypeError as err:
        raise ValueError(f"model.kwargs do not fit {path}.{attr}: {err}") from err


def build_network(name: str, kwargs: dict, event_shape) -> Network | TokenNetwork:
    """The network ``name`` (one of ``NETWORKS`` or ``TOKEN_NETWORKS``) with constructor ``kwargs`` for data
    of ``event_shape``; a token network's ``length`` is that of the data (given in kwargs, it must agree)."""
    check_choice("model.name", name, sorted(NETWORKS) + sorted(TOKEN_NETWORKS))
    event_shape = tuple(int(d) for d in event_shape)
    if name in TOKEN_NETWORKS:
        path, attr = TOKEN_NETWORKS[name]
        length = int(np.prod(event_shape))
        kwargs = dict(kwargs)
        if kwargs.setdefault("length", length) != length:
            raise ValueError(f"model.kwargs.length must be the data's {length} values per example, "
                             f"got {kwargs['length']!r}")
        if "vocab_size" not in kwargs:
            raise ValueError(f"model.kwargs.vocab_size is required by model.name={name!r}")
        module = _construct(_constructor(name, path, attr), kwargs, path, attr)
        return TokenNetwork(module, event_shape, int(module.vocab_size))
    path, attr, flat, has_train = NETWORKS[name]
    module = _construct(_constructor(name, path, attr), dict(kwargs), path, attr)
    return Network(module, event_shape, flat, has_train)
