"""Networks by name for the trainers: ``config.model = {name, kwargs}`` -> a ``Network``.

Names: ``mlp`` (``models.mlp.MLP``; image data are flattened to vectors for it),
``unet`` (``models.unet.UNet``) with the presets ``ddpm_cifar10`` and
``ddpmpp_cifar10`` (kwargs override the preset), ``dit`` (``models.dit.DiT``).
A ``Network`` calls its Flax linen module as ``apply(params, x, t, rng, train)``
on x of the data's event shape; dropout is active only with ``train=True``.
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


def build_network(name: str, kwargs: dict, event_shape) -> Network:
    """The network ``name`` (one of ``NETWORKS``) with constructor ``kwargs`` for data of ``event_shape``."""
    check_choice("model.name", name, sorted(NETWORKS))
    path, attr, flat, has_train = NETWORKS[name]
    try:
        ctor = getattr(importlib.import_module(path), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model.name={name!r} needs {path}.{attr}, which is not available: {err}") from err
    try:
        module = ctor(**dict(kwargs))
    except TypeError as err:
        raise ValueError(f"model.kwargs do not fit {path}.{attr}: {err}") from err
    return Network(module, tuple(int(d) for d in event_shape), flat, has_train)
