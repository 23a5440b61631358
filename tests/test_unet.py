"""The DDPM/DDPM++ UNet: shapes, jit, time dependence, dropout, init, parameter counts, bad arguments.

Parity with diffusers' UNet2DModel (same weights, same output) is in tests/test_convert.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.common import init_params, model_fn, param_count, param_shapes, random_params
from models.unet import UNet, ddpm_cifar10, ddpmpp_cifar10

TINY = dict(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), norm_groups=4)


def test_shapes_jit_and_time_dependence():
    module = UNet(dropout=0.0, **TINY)
    params = random_params(module, (8, 8, 3))
    fn = jax.jit(model_fn(module, params))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 3))
    ts = jnp.array([10.0, 500.0, 990.0])
    out = fn(x, ts)
    assert out.shape == (3, 8, 8, 3) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    # a scalar t equals the same t for every sample; each row sees its own time
    for i in range(3):
        np.testing.assert_allclose(fn(x, jnp.full((3,), ts[i]))[i], out[i], rtol=1e-5, atol=1e-5)
    # the time embedding changes the output
    assert float(jnp.max(jnp.abs(fn(x, jnp.full((3,), 500.0)) - fn(x, jnp.full((3,), 510.0))))) > 1e-3
    print(f"\ntiny UNet params: {param_count(params)}")


def test_biggan_fourier_variant_and_dropout():
    module = UNet(resblock="biggan", skip_rescale=True, time_embedding="fourier", attn_head_dim=4,
                  out_channels=2, dropout=0.5, **TINY)
    params = random_params(module, (8, 8, 1), seed=1)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
    f = jax.jit(lambda x, t, key, train: module.apply({"params": params}, x, t, train=train, rngs={"dropout": key}),
                static_argnums=3)
    k1, k2 = jax.random.split(jax.random.key(1, impl="rbg"))  # rbg: threefry compiles slowly on CPU
    out = f(x, 0.3, k1, False)
    assert out.shape == (2, 8, 8, 2)
    assert float(jnp.max(jnp.abs(out - f(x, 0.7, k1, False)))) > 1e-3
    np.testing.assert_array_equal(out, f(x, 0.3, k2, False))  # eval mode ignores the dropout key
    train1, train2 = f(x, 0.3, k1, True), f(x, 0.3, k2, True)
    assert float(jnp.max(jnp.abs(train1 - out))) > 1e-3 and float(jnp.max(jnp.abs(train1 - train2))) > 1e-3
    with pytest.raises(ValueError, match="rng"):
        model_fn(module, params, train=True)


def test_init_zero_output_layers():
    """init_scale=0 (DDPM, score_sde) zero-initialises the last layers: the untrained UNet outputs 0."""
    module = UNet(dropout=0.0, init_scale=0.0, **{**TINY, "attn_resolutions": ()})
    params = init_params(module, jax.random.key(0, impl="rbg"), (8, 8, 3))
    assert not np.any(params["conv_out"]["kernel"]) and np.any(params["conv_in"]["kernel"])
    assert not np.any(params["down_0_res_0"]["conv2"]["kernel"])
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(param_shapes(module, (8, 8, 3)))


def test_param_counts_of_the_cifar10_configs():
    counts = {name: param_count(param_shapes(m, (32, 32, 3)))
              for name, m in [("DDPM", ddpm_cifar10()), ("DDPM++", ddpmpp_cifar10())]}
    print("\n" + "\n".join(f"{k}: {v:,} params" for k, v in counts.items()))
    # DDPM's CIFAR-10 model is 35.7M (Ho et al. 2020); equality with diffusers' count is in test_convert.
    assert counts["DDPM"] == 35_746_307
    assert 60e6 < counts["DDPM++"] < 65e6  # score_sde's DDPM++ cont. (VP): 62M


def test_bad_arguments():
    with pytest.raises(ValueError, match="resblock must be one of"):
        UNet(resblock="wide")
    with pytest.raises(ValueError, match="time_embedding must be one of"):
        UNet(time_embedding="learned")
    with pytest.raises(ValueError, match="norm_groups=32 must divide"):
        UNet(channels=16)
    with pytest.raises(ValueError, match="channel_mult"):
        UNet(channel_mult=())
    with pytest.raises(ValueError, match="dropout"):
        UNet(dropout=1.0)
    with pytest.raises(ValueError, match="downsample_padding"):
        UNet(downsample_padding=2)
    module = UNet(**TINY)
    with pytest.raises(ValueError, match="divisible by 2"):
        param_shapes(module, (7, 8, 3))
    with pytest.raises(ValueError, match="t must be a scalar"):
        jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 3)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match="x must have shape"):
        jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((8, 8, 3)), jnp.zeros(()))
    with pytest.raises(ValueError, match="attn_head_dim=3 must divide"):
        param_shapes(UNet(attn_head_dim=3, **TINY), (8, 8, 3))
