"""The MLP model: shapes, scalar vs per-sample time, jit, parameter count, bad arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.mlp import MLP, init_mlp, mlp_model_fn, param_count


@pytest.mark.parametrize("embedding", ["fourier", "positional"])
def test_shapes_scalar_vs_batched_t_and_jit(embedding):
    module = MLP(hidden=32, depth=2, time_embedding=embedding, embed_dim=16)
    params = init_mlp(module, jax.random.PRNGKey(0), 3)
    fn = mlp_model_fn(module, params)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    t = 0.3 if embedding == "fourier" else 300.0
    out = fn(x, t)
    assert out.shape == (5, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, fn(x, jnp.full((5,), t)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, jax.jit(fn)(x, jnp.float32(t)), rtol=1e-5, atol=1e-5)
    # time actually enters: different t, different output; different rows, different times
    assert float(jnp.max(jnp.abs(out - fn(x, 0.5 * t)))) > 1e-3
    per_row = fn(x, jnp.linspace(0.0, t, 5))
    np.testing.assert_allclose(per_row[-1], out[-1], rtol=1e-6, atol=1e-6)
    assert float(jnp.max(jnp.abs(per_row[0] - out[0]))) > 1e-3


def test_out_dim_and_param_count():
    module = MLP(hidden=8, depth=2, out_dim=1, embed_dim=4)
    params = init_mlp(module, jax.random.PRNGKey(0), 2)
    assert mlp_model_fn(module, params)(jnp.ones((4, 2)), 0.1).shape == (4, 1)
    # fourier w (2) + Dense(2+4 -> 8) + Dense(8 -> 8) + Dense(8 -> 1)
    assert param_count(params) == 2 + (6 * 8 + 8) + (8 * 8 + 8) + (8 + 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="time_embedding must be one of"):
        MLP(time_embedding="learned")
    with pytest.raises(ValueError, match="depth"):
        MLP(depth=0)
    module = MLP(hidden=8, depth=1, embed_dim=4)
    params = init_mlp(module, jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match="t must be a scalar"):
        mlp_model_fn(module, params)(jnp.ones((4, 2)), jnp.ones((3,)))
