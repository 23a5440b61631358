"""Inception-v3 of FID (Heusel et al. 2017) in Flax linen, as pytorch-fid computes it.

The network is pytorch-fid's ``fid_inception_v3`` (torchvision's Inception-v3 with the FID
patches: average pools that exclude padding in Mixed_5b-d, 6b-e, 7b and a max pool in 7c),
up to the 2048-d global average pool ("pool3"). Inputs are NHWC images in [0, 1], resized
bilinearly (half-pixel centres, no antialiasing, like ``F.interpolate(align_corners=False)``)
to 299 x 299 and mapped to [-1, 1], as in pytorch-fid's ``InceptionV3``.

Weights: the ported TF FID weights ``pt_inception-2015-12-05-6726825d.pth`` (``FID_WEIGHTS_URL``),
from a path the user gives; reading the ``.pth`` needs torch. ``state_dict_to_variables`` maps
``X.conv.weight`` -> ``params/X/conv/kernel`` (OIHW -> HWIO), ``X.bn.{weight,bias}`` ->
``params/X/bn/{scale,bias}``, ``X.bn.running_{mean,var}`` -> ``batch_stats/X/bn/{mean,var}``;
the 1008-way ``fc`` is not used. Flax linen: the variables are a plain pytree apart from the module.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from models.common import unflatten_checked

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
INPUT_SIZE = 299
FEATURE_DIM = 2048


def resize_bilinear(x, size: int = INPUT_SIZE):
    """(B, H, W, C) -> (B, size, size, C), bilinear with half-pixel centres and no antialiasing."""
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear", antialias=False)


def avg_pool_3x3(x):
    """3x3 stride-1 average pool over the valid (unpadded) pixels only (TF's, FID's)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def max_pool_3x3(x, stride: int = 1):
    pad = ((1, 1), (1, 1)) if stride == 1 else "VALID"
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=pad)


class BasicConv(nn.Module):
    """Conv (no bias) - BatchNorm (eps 1e-3, running statistics) - ReLU."""

    features: int
    kernel: Sequence[int]
    stride: int = 1
    padding: Sequence[int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, tuple(self.kernel), strides=(self.stride,) * 2, padding=((ph, ph), (pw, pw)),
                    use_bias=False, name="conv")(x)
        return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _conv(features, kernel, stride=1, padding=(0, 0), name=None):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (padding, padding) if isinstance(padding, int) else padding
    return BasicConv(features, kernel, stride, padding, name=name)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = _conv(64, 1, name="branch1x1")(x)
        b5 = _conv(64, 5, padding=2, name="branch5x5_2")(_conv(48, 1, name="branch5x5_1")(x))
        b3 = _conv(64, 1, name="branch3x3dbl_1")(x)
        b3 = _conv(96, 3, padding=1, name="branch3x3dbl_3")(_conv(96, 3, padding=1, name="branch3x3dbl_2")(b3))
        bp = _conv(self.pool_features, 1, name="branch_pool")(avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = _conv(384, 3, stride=2, name="branch3x3")(x)
        bd = _conv(96, 3, padding=1, name="branch3x3dbl_2")(_conv(64, 1, name="branch3x3dbl_1")(x))
        bd = _conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, max_pool_3x3(x, 2)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = _conv(192, 1, name="branch1x1")(x)
        b7 = _conv(c7, 1, name="branch7x7_1")(x)
        b7 = _conv(192, name="branch7x7_3", **col)(_conv(c7, name="branch7x7_2", **row)(b7))
        bd = _conv(c7, 1, name="branch7x7dbl_1")(x)
        for i, (features, shape) in enumerate([(c7, col), (c7, row), (c7, col), (192, row)], start=2):
            bd = _conv(features, name=f"branch7x7dbl_{i}", **shape)(bd)
        bp = _conv(192, 1, name="branch_pool")(avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = _conv(320, 3, stride=2, name="branch3x3_2")(_conv(192, 1, name="branch3x3_1")(x))
        b7 = _conv(192, 1, name="branch7x7x3_1")(x)
        b7 = _conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = _conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = _conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, max_pool_3x3(x, 2)], axis=-1)


class InceptionE(nn.Module):
    pool: str  # "avg" (Mixed_7b) or "max" (Mixed_7c, FID's patch)

    @nn.compact
    def __call__(self, x):
        def split(h, name):  # parallel 1x3 and 3x1 convs, concatenated
            return jnp.concatenate([_conv(384, (1, 3), padding=(0, 1), name=f"{name}a")(h),
                                    _conv(384, (3, 1), padding=(1, 0), name=f"{name}b")(h)], axis=-1)

        b1 = _conv(320, 1, name="branch1x1")(x)
        b3 = split(_conv(384, 1, name="branch3x3_1")(x), "branch3x3_2")
        bd = _conv(384, 3, padding=1, name="branch3x3dbl_2")(_conv(448, 1, name="branch3x3dbl_1")(x))
        bd = split(bd, "branch3x3dbl_3")
        pooled = avg_pool_3x3(x) if self.pool == "avg" else max_pool_3x3(x)
        bp = _conv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInception(nn.Module):
    """``FIDInception()(images)``: NHWC images in [0, 1] of any size -> pool3 features (B, 2048)."""

    resize_input: bool = True

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"images must have shape (batch, height, width, 3), got {x.shape}")
        if self.resize_input:
            x = resize_bilinear(x)
        x = 2.0 * x - 1.0
        x = _conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
        x = _conv(32, 3, name="Conv2d_2a_3x3")(x)
        x = _conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = max_pool_3x3(x, 2)
        x = _conv(80, 1, name="Conv2d_3b_1x1")(x)
        x = _conv(192, 3, name="Conv2d_4a_3x3")(x)
        x = max_pool_3x3(x, 2)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = InceptionA(pool_features, name=name)(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(c7, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE("avg", name="Mixed_7b")(x)
        x = InceptionE("max", name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


@functools.lru_cache(maxsize=1)
def variable_shapes() -> dict:
    """``{"params", "batch_stats"}`` of ``FIDInception`` as ShapeDtypeStructs; nothing is computed."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(FIDInception().init, jax.random.PRNGKey(0), x)


_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def state_dict_to_variables(state_dict: dict, where: str = "state dict") -> dict:
    """pytorch-fid FID Inception state dict -> ``FIDInception`` variables, every shape checked."""
    fc = state_dict.get("fc.weight")
    if fc is not None and tuple(fc.shape) != (1008, FEATURE_DIM):
        raise ValueError(f"{where}: fc.weight has shape {tuple(fc.shape)}, the FID Inception "
                         f"(2015-12-05 TF graph) has (1008, 2048): these are not the FID weights ({FID_WEIGHTS_FILE})")
    converted, unused = {}, []
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "fc" or parts[-1] == "num_batches_tracked":
            continue
        array = np.asarray(value, np.float32)
        if parts[-2:] == ["conv", "weight"] and array.ndim == 4:
            converted[("params", *parts[:-1], "kernel")] = (key, array.transpose(2, 3, 1, 0))
        elif parts[-2] == "bn" and parts[-1] in _BN_LEAVES:
            collection, leaf = _BN_LEAVES[parts[-1]]
            converted[(collection, *parts[:-1], leaf)] = (key, array)
        else:
            unused.append(key)
    expected = traverse_util.flatten_dict(variable_shapes())
    return unflatten_checked(expected, converted, unused, where)


def variables_to_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """Inverse of ``state_dict_to_variables`` (without ``fc``): variables -> torch names and layouts."""
    inverse = {("params", "kernel"): "conv.weight", ("params", "scale"): "bn.weight", ("params", "bias"): "bn.bias",
               ("batch_stats", "mean"): "bn.running_mean", ("batch_stats", "var"): "bn.running_var"}
    out = {}
    for path, value in traverse_util.flatten_dict(variables).items():
        module = list(path[1:-2])
        name = inverse[(path[0], path[-1])]
        array = np.asarray(value)
        out[".".join([*module, name])] = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array
    return out


def load_fid_inception(path: str) -> dict:
    """FIDInception variables from ``path``: the ``.pth`` file itself or a directory holding it.

    A ValueError names the expected file and where to download it when it is absent.
    """
    file = os.path.join(path, FID_WEIGHTS_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"FID Inception weights not found at {file!r}: download {FID_WEIGHTS_FILE} from "
                         f"{FID_WEIGHTS_URL} and pass its path (or its directory)")
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(f"reading {file} needs torch (the 'parity' extra)") from e
    state = torch.load(file, map_location="cpu", weights_only=True)
    return state_dict_to_variables({k: v.float().numpy() for k, v in state.items()}, file)


_apply = jax.jit(lambda variables, x: FIDInception().apply(variables, x))


def inception_features(variables: dict, images, batch_size: int = 50, value_range=(0.0, 1.0),
                       quantize: bool = True) -> np.ndarray:
    """pool3 features (N, 2048), float64, of NHWC ``images`` with values in ``value_range``.

    ``quantize`` rounds to 8 bits first, as when samples are saved to PNG and read by pytorch-fid.
    Batches are of ``batch_size`` (the last one padded), one compilation for all.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    images = np.clip((np.asarray(images, np.float32) - lo) / (hi - lo), 0.0, 1.0)
    if quantize:
        images = np.round(images * 255.0) / 255.0
    feats = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        n = len(batch)
        if n < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)])
        feats.append(np.asarray(_apply(variables, jnp.asarray(batch)), np.float64)[:n])
    return np.concatenate(feats) if feats else np.zeros((0, FEATURE_DIM))
