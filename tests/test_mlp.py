"""The MLP model: shapes, scalar vs per-sample time, jit, parameter count, the Fourier frequencies as a
constant (not a parameter: weight decay and EMA never touch them), the torch twin, bad arguments."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models.common import fourier_embedding, fourier_frequencies, model_fn, param_count, sinusoidal_embedding
from models.mlp import MLP, init_mlp, mlp_model_fn


def first_layer_input(module, params, x, t):
    """The input of ``Dense_0``: [x, time embedding], captured with ``nn.intercept_methods``."""
    seen = []

    def interceptor(next_fun, args, kwargs, context):
        if context.module.name == "Dense_0" and context.method_name == "__call__":
            seen.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        module.apply({"params": params}, x, t)
    return seen[0]


@pytest.mark.parametrize("embedding", ["fourier", "positional"])
def test_shapes_scalar_vs_batched_t_and_jit(embedding):
    module = MLP(hidden=32, depth=2, time_embedding=embedding, embed_dim=16)
    params = init_mlp(module, jax.random.PRNGKey(0), 3)
    fn = model_fn(module, params)
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
    # the embedding is the shared one of models.common
    h = first_layer_input(module, params, x, jnp.full((5,), t))
    emb = (fourier_embedding(jnp.full((5,), t), 16, module.fourier_scale) if embedding == "fourier"
           else sinusoidal_embedding(jnp.full((5,), t), 16))
    np.testing.assert_allclose(h[:, 3:], emb, rtol=1e-6, atol=1e-6)
    assert mlp_model_fn is model_fn


def test_out_dim_and_param_count_without_fourier_parameters():
    module = MLP(hidden=8, depth=2, out_dim=1, embed_dim=4)
    params = init_mlp(module, jax.random.PRNGKey(0), 2)
    assert model_fn(module, params)(jnp.ones((4, 2)), 0.1).shape == (4, 1)
    # the Fourier frequencies are a constant, not in params: Dense(2+4 -> 8) + Dense(8 -> 8) + Dense(8 -> 1)
    assert sorted(params) == ["Dense_0", "Dense_1", "Dense_2"]
    assert param_count(params) == (6 * 8 + 8) + (8 * 8 + 8) + (8 + 1)


def test_weight_decay_leaves_the_fourier_embedding_unchanged():
    module = MLP(hidden=16, depth=2, embed_dim=8, fourier_scale=4.0, fourier_seed=3)
    params = init_mlp(module, jax.random.PRNGKey(0), 2)
    x, t = jnp.ones((4, 2)), jnp.linspace(0.1, 0.9, 4)
    tx = optax.adamw(1e-1, weight_decay=0.5)
    grads = jax.grad(lambda p: jnp.sum(model_fn(module, p)(x, t) ** 2))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    before, after = first_layer_input(module, params, x, t), first_layer_input(module, new, x, t)
    np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    assert float(jnp.max(jnp.abs(new["Dense_0"]["kernel"] - params["Dense_0"]["kernel"]))) > 1e-2  # it did update
    # the embedding is 2 pi w t with w = fourier_frequencies(8, 4.0, seed=3), and the seed matters
    w = fourier_frequencies(8, 4.0, 3)
    np.testing.assert_allclose(before[:, 2:6], np.sin(2 * np.pi * np.asarray(t)[:, None] * w), rtol=1e-5, atol=1e-5)
    other = first_layer_input(module.clone(fourier_seed=4), params, x, t)
    assert float(jnp.max(jnp.abs(other - before))) > 1e-2


def test_torch_twin_matches():
    torch = pytest.importorskip("torch")
    from bench.overhead import torch_mlp

    module = MLP(hidden=16, depth=2, embed_dim=8, fourier_seed=5)
    params = init_mlp(module, jax.random.PRNGKey(0), 3)
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    ours = np.asarray(model_fn(module, params)(jnp.asarray(x), 0.4))
    with torch.inference_mode():
        theirs = torch_mlp(module, params, "cpu")(torch.tensor(x), torch.tensor(0.4)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="time_embedding must be one of"):
        MLP(time_embedding="learned")
    with pytest.raises(ValueError, match="depth"):
        MLP(depth=0)
    with pytest.raises(ValueError, match="embed_dim must be even"):
        MLP(embed_dim=5)
    module = MLP(hidden=8, depth=1, embed_dim=4)
    params = init_mlp(module, jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        model_fn(module, params)(jnp.ones((4, 2)), jnp.ones((3,)))
    with pytest.raises(ValueError, match="x must have shape"):
        model_fn(module, params)(jnp.ones((4, 2, 1)), 0.1)
