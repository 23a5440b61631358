"""Weight import from diffusers' ``UNet2DModel`` (e.g. ``google/ddpm-cifar10-32``) into ``models.unet.UNet``.

A local directory in diffusers' format holds ``config.json`` and
``diffusion_pytorch_model.safetensors`` (read with ``safetensors.numpy``, no torch needed) or
``diffusion_pytorch_model.bin`` (read with ``torch.load``). ``unet_kwargs_from_diffusers``
maps the config to our ``UNet`` fields, refusing (ValueError naming the field) anything our
UNet cannot express; ``convert_state_dict`` renames and transposes the tensors:

* ``down_blocks.i.{resnets,attentions}.j``   -> ``down_{i}_{res,attn}_{j}``,
  ``down_blocks.i.downsamplers.0.conv``       -> ``down_{i}_downsample``;
* ``up_blocks.k.*`` (k counts from the lowest resolution) -> ``up_{L-1-k}_*``;
* ``mid_block.resnets.{0,1}`` / ``attentions.0`` -> ``mid_res_{0,1}`` / ``mid_attn``;
* ``time_embedding.linear_{1,2}`` -> ``time_dense_{0,1}``, ``conv_norm_out`` -> ``norm_out``;
* conv weights (O, I, kh, kw) -> kernels (kh, kw, I, O), linear (O, I) -> (I, O), norm weight -> scale;
  the pre-0.12 attention names ``query/key/value/proj_attn`` (older hub checkpoints store them) are accepted.

Every tensor must be used and every parameter filled with the expected shape, else ValueError.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from models.common import param_shapes, unflatten_checked
from models.unet import UNet

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# UNet2DModel.__init__ defaults (diffusers 0.42) for fields a config.json may omit.
_DIFFUSERS_DEFAULTS = dict(
    sample_size=None, in_channels=3, out_channels=3, center_input_sample=False, time_embedding_type="positional",
    time_embedding_dim=None, freq_shift=0, flip_sin_to_cos=True,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    mid_block_type="UNetMidBlock2D",
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(224, 448, 672, 896), layers_per_block=2, mid_block_scale_factor=1, downsample_padding=1,
    downsample_type="conv", upsample_type="conv", dropout=0.0, act_fn="silu", attention_head_dim=8,
    norm_num_groups=32, attn_norm_num_groups=None, norm_eps=1e-5, resnet_time_scale_shift="default",
    add_attention=True, class_embed_type=None, num_class_embeds=None, num_train_timesteps=None,
)
# Fields that must have exactly this value for our UNet to express the model.
_REQUIRED = dict(
    center_input_sample=False, time_embedding_type="positional", mid_block_type="UNetMidBlock2D",
    mid_block_scale_factor=1, downsample_type="conv", upsample_type="conv", act_fn="silu",
    resnet_time_scale_shift="default", class_embed_type=None, num_class_embeds=None,
)
_OLD_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}

# config.json of google/ddpm-cifar10-32 (Ho et al. 2020's CIFAR-10 model in diffusers).
DDPM_CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
    norm_num_groups=32, time_embedding_type="positional", center_input_sample=False, act_fn="silu",
    mid_block_scale_factor=1,
)


def _fail(path: str, message: str):
    raise ValueError(f"{path}: {message}")


def unet_kwargs_from_diffusers(config: dict, where: str = CONFIG_FILE) -> dict:
    """``UNet`` keyword arguments equal to a diffusers ``UNet2DModel`` config.

    A ValueError names the first field our UNet cannot express."""
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        _fail(where, f"_class_name must be 'UNet2DModel', got {config['_class_name']!r}")
    cfg = {**_DIFFUSERS_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    for key, value in _REQUIRED.items():
        if cfg[key] != value:
            _fail(where, f"{key} must be {value!r} for models.unet.UNet, got {cfg[key]!r}")
    channels = list(cfg["block_out_channels"])
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    if len(down) != len(channels) or len(up) != len(channels):
        _fail(where, f"down_block_types ({len(down)}), up_block_types ({len(up)}) and block_out_channels "
                     f"({len(channels)}) must have the same length")
    base = channels[0]
    if any(c % base for c in channels):
        _fail(where, f"block_out_channels {channels} must be multiples of block_out_channels[0] = {base}")
    attn_levels = []
    for i, (d, u) in enumerate(zip(down, reversed(up))):
        if d not in ("DownBlock2D", "AttnDownBlock2D"):
            _fail(where, f"down_block_types[{i}] must be 'DownBlock2D' or 'AttnDownBlock2D', got {d!r}")
        if u not in ("UpBlock2D", "AttnUpBlock2D"):
            _fail(where, f"up_block_types[{len(up) - 1 - i}] must be 'UpBlock2D' or 'AttnUpBlock2D', got {u!r}")
        if (d == "AttnDownBlock2D") != (u == "AttnUpBlock2D"):
            _fail(where, f"attention must be at the same levels on both paths: down_block_types[{i}] = {d!r} but "
                         f"up_block_types[{len(up) - 1 - i}] = {u!r}")
        if d == "AttnDownBlock2D":
            attn_levels.append(i)
    size = cfg["sample_size"]
    size = size[0] if isinstance(size, (list, tuple)) else size
    if attn_levels and not isinstance(size, int):
        _fail(where, f"sample_size must be an integer to place attention by resolution, "
                     f"got {cfg['sample_size']!r}")
    groups = cfg["norm_num_groups"]
    if cfg["attn_norm_num_groups"] not in (None, groups):
        _fail(where, f"attn_norm_num_groups must be None or norm_num_groups={groups}, "
                     f"got {cfg['attn_norm_num_groups']!r}")
    return dict(
        channels=base, channel_mult=tuple(c // base for c in channels),
        num_res_blocks=int(cfg["layers_per_block"]),
        attn_resolutions=tuple(size >> i for i in attn_levels), dropout=float(cfg["dropout"]),
        out_channels=int(cfg["out_channels"]), resblock="ddpm", skip_rescale=False, time_embedding="positional",
        time_scale=1.0, freq_shift=float(cfg["freq_shift"]), flip_sin_to_cos=bool(cfg["flip_sin_to_cos"]),
        time_embed_dim=cfg["time_embedding_dim"] or 4 * base, attn_head_dim=cfg["attention_head_dim"],
        mid_attention=bool(cfg["add_attention"]), norm_groups=int(groups), norm_eps=float(cfg["norm_eps"]),
        downsample_padding=int(cfg["downsample_padding"]),
    )


def _our_path(key: str, levels: int) -> tuple[str, ...]:
    """diffusers parameter name -> path in our params tree (module names + leaf name)."""
    parts = key.split(".")
    leaf, mod = parts[-1], parts[:-1]
    if len(mod) >= 2 and mod[-1] in _OLD_ATTENTION_NAMES and "attentions" in mod:
        mod = mod[:-1] + _OLD_ATTENTION_NAMES[mod[-1]].split(".")
    if mod[-2:] == ["to_out", "0"]:
        mod = mod[:-1]
    top = {"conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out"}
    if len(mod) == 1 and mod[0] in top:
        names = [top[mod[0]]]
    elif mod[:1] == ["time_embedding"] and len(mod) == 2 and mod[1] in ("linear_1", "linear_2"):
        names = [f"time_dense_{int(mod[1][-1]) - 1}"]
    elif mod[:1] in (["down_blocks"], ["up_blocks"]) and len(mod) >= 4:
        side, level = mod[0][:-7], int(mod[1])
        if side == "up":
            level = levels - 1 - level
        if mod[2] in ("resnets", "attentions"):
            kind = "res" if mod[2] == "resnets" else "attn"
            names = [f"{side}_{level}_{kind}_{int(mod[3])}", *mod[4:]]
        elif mod[2] in ("downsamplers", "upsamplers") and mod[3] == "0" and mod[4:] == ["conv"]:
            names = [f"{side}_{level}_{side}sample"]
        else:
            raise KeyError(key)
    elif mod[:1] == ["mid_block"] and len(mod) >= 3:
        if mod[1] == "resnets":
            names = [f"mid_res_{int(mod[2])}", *mod[3:]]
        elif mod[1] == "attentions" and mod[2] == "0":
            names = ["mid_attn", *mod[3:]]
        else:
            raise KeyError(key)
    else:
        raise KeyError(key)
    return (*names, leaf)


def _leaf(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    if name == "bias":
        return "bias", value
    if value.ndim == 4:
        return "kernel", value.transpose(2, 3, 1, 0)
    if value.ndim == 2:
        return "kernel", value.T
    return "scale", value


def convert_state_dict(state_dict: dict[str, Any], module: UNet, image_shape, where: str = "state dict") -> dict:
    """diffusers ``UNet2DModel`` tensors -> our ``module``'s params (float32 numpy), every shape checked."""
    levels = len(module.channel_mult)
    converted, unused = {}, []
    for key, value in state_dict.items():
        try:
            path = _our_path(key, levels)
        except (KeyError, ValueError, IndexError):
            unused.append(key)
            continue
        leaf, array = _leaf(path[-1], np.asarray(value, np.float32))
        converted[(*path[:-1], leaf)] = (key, array)
    expected = traverse_util.flatten_dict(param_shapes(module, image_shape))
    return unflatten_checked(expected, converted, unused, where)


def _read_weights(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ValueError(f"{path}: reading .safetensors needs the 'safetensors' package") from e
        return load_file(path)
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(f"{path}: reading a .bin checkpoint needs torch (the 'parity' extra)") from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}


def load_diffusers_unet(path: str, module: UNet | None = None) -> tuple[UNet, dict]:
    """Read a diffusers ``UNet2DModel`` directory -> ``(UNet, params)``.

    With ``module`` given (e.g. the UNet of the run's config) its fields must equal the
    checkpoint's architecture, else a ValueError lists the differing fields (``dropout``,
    a training-only setting, is taken from ``module``). The image size is the config's
    ``sample_size`` (32 when absent and no attention needs it).
    """
    if not os.path.isdir(path):
        raise ValueError(f"diffusers checkpoint directory {path!r} does not exist (expected {CONFIG_FILE} and one "
                         f"of {list(WEIGHT_FILES)} in it)")
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(f"{config_path} is missing: a diffusers model directory holds {CONFIG_FILE}")
    weights = [os.path.join(path, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(path, f))]
    if not weights:
        raise ValueError(f"no weights in {path!r}: expected one of {list(WEIGHT_FILES)}")
    with open(config_path) as f:
        config = json.load(f)
    kwargs = unet_kwargs_from_diffusers(config, config_path)
    in_channels = int(config.get("in_channels", 3))
    if module is not None:
        defaults = dict(out_channels=in_channels, time_embed_dim=4 * module.channels)

        def norm(k, v):  # lists as tuples, None as the value it stands for
            if isinstance(v, (list, tuple)):
                return tuple(v)
            return defaults[k] if v is None and k in defaults else v

        mine = {k: norm(k, getattr(module, k)) for k in kwargs if k != "dropout"}
        diff = {k: (mine[k], kwargs[k]) for k in mine if mine[k] != norm(k, kwargs[k])}
        if diff:
            fields = ", ".join(f"{k}={ours!r} but the checkpoint has {theirs!r}" for k, (ours, theirs) in diff.items())
            raise ValueError(f"{config_path} does not match the given UNet: {fields}")
        kwargs["dropout"] = module.dropout
    unet = UNet(**kwargs)
    size = config.get("sample_size") or 32
    size = size if isinstance(size, (list, tuple)) else (size, size)
    image_shape = (*size, in_channels)
    params = convert_state_dict(_read_weights(weights[0]), unet, image_shape, weights[0])
    return unet, jax.tree_util.tree_map(np.asarray, params)
