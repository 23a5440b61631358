"""The small DiT: patchify round trip, adaLN-Zero init, shapes, jit, time dependence, bad arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.common import init_params, model_fn, param_count, param_shapes
from models.dit import DiT, patchify, sincos_pos_embed_2d, unpatchify
from models.common import random_params

TINY = dict(patch_size=2, hidden=32, depth=2, num_heads=4, freq_dim=32)


def test_patchify_round_trip_and_position_embedding():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 12, 3))
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 6, 48)
    np.testing.assert_array_equal(tokens[0, 1], x[0, 0:4, 4:8].reshape(-1))  # row-major patches
    np.testing.assert_array_equal(unpatchify(tokens, 4, 8, 12), x)
    pos = sincos_pos_embed_2d(16, 3, 5)
    assert pos.shape == (15, 16) and len(np.unique(pos.round(6), axis=0)) == 15


def test_adaln_zero_init_gives_zero_output():
    module = DiT(**TINY)
    params = init_params(module, jax.random.key(0, impl="rbg"), (8, 8, 3))
    out = jax.jit(model_fn(module, params))(jnp.ones((2, 8, 8, 3)), 0.5)
    assert out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(out, 0.0)
    assert not np.any(params["block_0"]["adaLN_modulation"]["kernel"])


def test_shapes_jit_and_time_dependence():
    module = DiT(out_channels=6, time_scale=1000.0, **TINY)
    params = random_params(module, (8, 8, 3), scale=0.1)  # non-zero adaLN so that t reaches the output
    fn = jax.jit(model_fn(module, params))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 3))
    ts = jnp.array([0.1, 0.5, 0.9])
    out = fn(x, ts)
    assert out.shape == (3, 8, 8, 6) and bool(jnp.all(jnp.isfinite(out)))
    for i in range(3):
        np.testing.assert_allclose(fn(x, jnp.full((3,), ts[i]))[i], out[i], rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(out[0] - fn(x, jnp.full((3,), 0.2))[0]))) > 1e-3
    print(f"\ntiny DiT params: {param_count(params)}; "
          f"DiT-S/2 at 32x32x3: {param_count(param_shapes(DiT(), (32, 32, 3))):,}")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads=5 must divide hidden=32"):
        DiT(hidden=32, num_heads=5)
    with pytest.raises(ValueError, match="depth"):
        DiT(depth=0)
    with pytest.raises(ValueError, match="divisible by patch_size=2"):
        param_shapes(DiT(**TINY), (7, 8, 3))
