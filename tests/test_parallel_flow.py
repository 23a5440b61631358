"""TarFlow (models/tarflow.py) and the parallel inversion of autoregressive flows
(samplers/parallel/ar_inverse.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.tarflow import TarFlow, as_ar_flow, init_tarflow
from samplers.parallel import ar_inverse

T, D = 12, 3
MODULE = TarFlow(num_blocks=4, width=32, depth=2, heads=4)
VARS = init_tarflow(MODULE, jax.random.PRNGKey(0), T, D)
FLOW = as_ar_flow(MODULE, VARS)
X = jax.random.normal(jax.random.PRNGKey(1), (3, T, D))
forward = jax.jit(MODULE.apply)
sequential = jax.jit(lambda z: ar_inverse.inverse_sequential(FLOW, z))
jacobi = jax.jit(lambda z, tol: ar_inverse.inverse_jacobi(FLOW, z, tol), static_argnums=1)


def test_blocks_are_causal():
    u = jax.random.normal(jax.random.PRNGKey(2), (2, T, D))
    mu, a = MODULE.apply(VARS, 1, u, method=TarFlow.block)
    v = u.at[:, 5:].add(1.0)  # changes at positions >= 5 leave (mu, a) at positions <= 5 unchanged
    mu2, a2 = MODULE.apply(VARS, 1, v, method=TarFlow.block)
    np.testing.assert_array_equal(mu[:, :6], mu2[:, :6])
    np.testing.assert_array_equal(a[:, :6], a2[:, :6])
    assert float(jnp.max(jnp.abs(mu[:, 6:] - mu2[:, 6:]))) > 1e-4


def test_logdet_is_the_jacobian_log_determinant():
    z, logdet = forward(VARS, X)
    f = lambda v: MODULE.apply(VARS, v.reshape(1, T, D))[0].reshape(-1)
    jac = jax.jit(jax.jacfwd(f))(X[0].reshape(-1))
    np.testing.assert_allclose(float(logdet[0]), float(jnp.linalg.slogdet(jac)[1]), rtol=1e-4, atol=1e-4)
    assert float(jnp.max(jnp.abs(z - X))) > 0.1  # the flow is far from the identity


def test_sequential_inverse_inverts():
    z, _ = forward(VARS, X)
    np.testing.assert_allclose(sequential(z), X, atol=1e-4)


@pytest.mark.parametrize("tol", [0.0, 1e-6])
def test_jacobi_inverse_equals_sequential(tol):
    z, _ = forward(VARS, X)
    x_seq = sequential(z)
    x_par, stats = jacobi(z, tol)
    assert float(jnp.max(jnp.abs(x_par - x_seq))) < 1e-5
    its = np.asarray(stats.iterations)
    assert its.shape == (4,) and np.all(its >= 1) and np.all(its <= T)


def test_loose_tolerance_needs_fewer_iterations():
    z, _ = forward(VARS, X)
    _, tight = jacobi(z, 0.0)
    x_par, loose = jacobi(z, 1e-3)
    assert np.all(np.asarray(loose.iterations) < np.asarray(tight.iterations))
    assert float(jnp.max(jnp.abs(x_par - X))) < 1e-2


def test_bad_input():
    with pytest.raises(ValueError, match="tol"):
        ar_inverse.inverse_jacobi(FLOW, X, -1.0)
    with pytest.raises(ValueError, match="heads"):
        init_tarflow(TarFlow(width=30, heads=4), jax.random.PRNGKey(0), T, D)
