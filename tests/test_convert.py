"""Weight import from diffusers' UNet2DModel: a randomly initialised diffusers model of the
``google/ddpm-cifar10-32`` structure (channels shrunk for speed), saved with ``save_pretrained``,
converted into our UNet, gives the same output (float32, torch CPU); bad paths and configs are
ValueErrors naming what is wrong. The full-size model is the slow test."""
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from models.common import model_fn, param_count, param_shapes  # noqa: E402
from models.convert import DDPM_CIFAR10, load_diffusers_unet, unet_kwargs_from_diffusers  # noqa: E402
from models.unet import UNet, ddpm_cifar10  # noqa: E402

TINY = {**DDPM_CIFAR10, "block_out_channels": (16, 32, 32, 32), "norm_num_groups": 8}
# Other options of UNet2DModel our UNet expresses: multi-head attention, symmetric downsampling
# padding, cos-first embedding, its own embedding width, no mid attention, out != in channels.
VARIANT = dict(sample_size=16, in_channels=2, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
               down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
               attention_head_dim=8, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
               time_embedding_dim=24, add_attention=False, norm_num_groups=4, norm_eps=1e-5)


def save_random_unet(path, config, seed=0):
    torch.manual_seed(seed)
    model = diffusers.UNet2DModel(**config).eval()
    model.save_pretrained(str(path))
    return model


def torch_output(model, x_nhwc, t):
    with torch.no_grad():
        out = model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)), t).sample
    return out.numpy().transpose(0, 2, 3, 1)


def parity_gap(tmp_path, config, batch=2):
    model = save_random_unet(tmp_path, config)
    unet, params = load_diffusers_unet(str(tmp_path))
    assert param_count(params) == sum(p.numel() for p in model.parameters())
    size, channels = config["sample_size"], config["in_channels"]
    x = np.random.default_rng(0).standard_normal((batch, size, size, channels)).astype(np.float32)
    ts = np.array([3, 999][:batch] + [500] * (batch - 2), np.float32)
    start = time.perf_counter()
    ours = np.asarray(jax.jit(model_fn(unet, params))(jnp.asarray(x), jnp.asarray(ts)))
    elapsed = time.perf_counter() - start
    ref = torch_output(model, x, torch.from_numpy(ts.astype(np.int64)))
    gap = float(np.max(np.abs(ours - ref)))
    print(f"\n{config['block_out_channels']}: {param_count(params):,} params, max |ours - diffusers| = {gap:.2e} "
          f"(output scale {np.abs(ref).max():.2f}); jit + run {elapsed:.1f}s")
    return gap, ours, ref


def test_ddpm_cifar10_structure_parity(tmp_path):
    gap, ours, _ = parity_gap(tmp_path, TINY)
    assert gap <= 1e-4 and ours.shape == (2, 32, 32, 3)


def test_option_variant_parity(tmp_path):
    gap, ours, _ = parity_gap(tmp_path, VARIANT)
    assert gap <= 1e-4 and ours.shape == (2, 16, 16, 4)


def test_bin_file_and_pre_012_attention_names_load_the_same(tmp_path):
    """The hub checkpoint stores attention as query/key/value/proj_attn; .bin is read with torch."""
    model = save_random_unet(tmp_path / "st", TINY)
    _, params = load_diffusers_unet(str(tmp_path / "st"))
    old = {}
    for key, value in model.state_dict().items():
        for new, legacy in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            key = key.replace(f".{new}.", f".{legacy}.")
        old[key] = value
    assert any(".proj_attn." in k for k in old)
    os.makedirs(tmp_path / "bin")
    torch.save(old, tmp_path / "bin" / "diffusion_pytorch_model.bin")
    with open(tmp_path / "st" / "config.json") as f, open(tmp_path / "bin" / "config.json", "w") as g:
        g.write(f.read())
    _, params_bin = load_diffusers_unet(str(tmp_path / "bin"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, params_bin)


def test_full_size_parameter_count_equals_diffusers():
    model = diffusers.UNet2DModel(**DDPM_CIFAR10)
    ours = param_count(param_shapes(UNet(**unet_kwargs_from_diffusers(DDPM_CIFAR10)), (32, 32, 3)))
    assert ours == sum(p.numel() for p in model.parameters()) == 35_746_307
    assert unet_kwargs_from_diffusers(DDPM_CIFAR10)["attn_resolutions"] == (16,)
    assert ours == param_count(param_shapes(ddpm_cifar10(), (32, 32, 3)))


@pytest.mark.slow
def test_full_size_ddpm_cifar10_parity(tmp_path):
    gap, _, _ = parity_gap(tmp_path, DDPM_CIFAR10)
    assert gap <= 1e-4


def _write(path, config, state=None):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    if state is not None:
        from safetensors.numpy import save_file
        save_file(state, os.path.join(path, "diffusion_pytorch_model.safetensors"))


def test_missing_paths_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*config.json"):
        load_diffusers_unet(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="config.json is missing"):
        load_diffusers_unet(str(tmp_path))
    _write(tmp_path, TINY)
    with pytest.raises(ValueError, match="no weights.*diffusion_pytorch_model.safetensors"):
        load_diffusers_unet(str(tmp_path))


@pytest.mark.parametrize("change, message", [
    (dict(time_embedding_type="fourier"), "time_embedding_type must be 'positional'"),
    (dict(resnet_time_scale_shift="scale_shift"), "resnet_time_scale_shift must be 'default'"),
    (dict(num_class_embeds=10), "num_class_embeds must be None"),
    (dict(up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
     r"down_block_types\[1\] = 'AttnDownBlock2D' but up_block_types\[2\] = 'UpBlock2D'"),
    (dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D")),
     r"down_block_types\[1\] must be"),
    (dict(_class_name="UNet2DConditionModel"), "_class_name must be 'UNet2DModel'"),
])
def test_configs_our_unet_cannot_express(tmp_path, change, message):
    _write(tmp_path, {**TINY, **change}, {})
    with pytest.raises(ValueError, match=message):
        load_diffusers_unet(str(tmp_path))


def test_mismatched_config_and_weights(tmp_path):
    model = save_random_unet(tmp_path / "ok", TINY)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    # the run's UNet differs from the checkpoint
    with pytest.raises(ValueError, match="channels=32 but the checkpoint has 16"):
        load_diffusers_unet(str(tmp_path / "ok"), UNet(**{**unet_kwargs_from_diffusers(TINY), "channels": 32}))
    _, params = load_diffusers_unet(str(tmp_path / "ok"), ddpm_cifar10(channels=16, norm_groups=8, dropout=0.0))
    assert params["conv_in"]["kernel"].shape == (3, 3, 3, 16)
    # the weights do not fit the config
    _write(tmp_path / "wide", {**TINY, "block_out_channels": (16, 32, 32, 64)}, state)
    with pytest.raises(ValueError, match=r"has shape .* the architecture needs"):
        load_diffusers_unet(str(tmp_path / "wide"))
    _write(tmp_path / "extra", TINY, {**state, "class_embedding.weight": np.zeros((10, 64), np.float32)})
    with pytest.raises(ValueError, match=r"1 tensors do not fit.*class_embedding.weight"):
        load_diffusers_unet(str(tmp_path / "extra"))
    _write(tmp_path / "short", TINY, {k: v for k, v in state.items() if not k.startswith("conv_out")})
    with pytest.raises(ValueError, match="2 parameters .* missing.*conv_out"):
        load_diffusers_unet(str(tmp_path / "short"))
