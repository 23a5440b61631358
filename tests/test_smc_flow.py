"""Flow inference-time scaling (samplers/smc/flow_sde.py): the marginal-preserving SDE of a flow
model and rollover budget forcing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.common import predictor
from samplers.ode.multistep import linear_multistep
from samplers.smc import flow_sde as fs

SCHED = schedules.flow()
GRID = time_grid(SCHED, 200, "uniform")
MEAN = np.array([1.0, -0.5])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
MODEL = GaussianMixture([1.0], MEAN[None], COV[None]).model_fn(SCHED, "velocity")
N = 8000
X_T = jax.random.normal(jax.random.PRNGKey(0), (N, 2))


def _max_z(A, B, g):
    """Largest z-score of the sample mean and covariance entries against the data's (the ODE's
    exact marginal at t = 0), Gaussian standard errors."""
    sampler = linear_multistep(GRID, predictor(SCHED, "velocity", "velocity"), A, B[:, None], noise=g)
    y = np.asarray(sample(sampler, MODEL, X_T, jax.random.PRNGKey(1)).x, np.float64)
    d = np.sqrt(np.diag(COV))
    z_mean = (y.mean(0) - MEAN) / (d / np.sqrt(N))
    z_cov = (np.cov(y.T) - COV) / np.sqrt((np.outer(d**2, d**2) + COV**2) / N)
    return max(np.abs(z_mean).max(), np.abs(z_cov).max())


@pytest.mark.parametrize("diffusion", [1.0, lambda t: 2.0 * t**2], ids=["g=1", "g=2t^2"])
def test_sde_keeps_the_ode_marginals(diffusion):
    A, B, g = fs.flow_sde_coefficients(SCHED, GRID, diffusion)
    assert _max_z(A, B, g) < 4.0
    assert _max_z(A, B, 1.1 * g) > 4.0  # control: 10% too much noise
    # control: a wrong score conversion (the g^2/2 score correction with g^2 instead)
    A2, B2, _ = fs.flow_sde_coefficients(SCHED, GRID, lambda t: np.sqrt(2.0) * fs.diffusion_values(diffusion, t))
    assert _max_z(A2, B2, g) > 4.0


def test_flow_sde_is_a_gaussian_transition():
    sampler = fs.flow_sde(SCHED, GRID, 0.5)
    assert sampler.transition is not None and sampler.nfe == 200
    ode = fs.flow_sde(SCHED, GRID, 0.0)
    tr = ode.transition(ode.init(X_T[:4]), MODEL)
    assert float(tr.scale) == 0.0 and tr.space == "velocity"
    # g = 0: the Euler step of the ODE, x + dt u
    u = MODEL(X_T[:4], jnp.float32(1.0))
    np.testing.assert_allclose(tr.mean, X_T[:4] + (GRID.t[1] - GRID.t[0]) * u, rtol=1e-5, atol=1e-6)


def test_rollover_budget_forcing():
    """Every problem spends exactly its budget; the reward rises with the budget (control: a reward
    blind to the sample does not)."""
    mix = GaussianMixture([0.9, 0.1], [[-1.0], [2.0]], [[0.25], [0.25]])
    model = mix.model_fn(SCHED, "velocity")
    base = fs.flow_sde(SCHED, time_grid(SCHED, 8, "uniform", t_start=0.99), lambda t: t)
    x = jax.random.normal(jax.random.PRNGKey(0), (128, 1))

    def means(reward):
        out = []
        for budget in (8, 40):
            st = sample(fs.rollover_budget_forcing(base, SCHED, reward, budget), model, x, jax.random.PRNGKey(1))
            assert np.all(np.asarray(st.nfe) == 1 + budget)
            out.append(np.asarray(st.x[:, 0], np.float64))
        return out[1].mean() - out[0].mean(), (out[1] - out[0]).std() / np.sqrt(len(x))

    gain, se = means(lambda x: x[:, 0])
    assert gain > 4 * se
    gain, se = means(lambda x: jnp.zeros(x.shape[0]))
    assert not gain > 4 * se


def test_bad_input():
    with pytest.raises(ValueError, match="diffusion"):
        fs.flow_sde(SCHED, GRID, -1.0)
    with pytest.raises(ValueError, match="diffusion"):
        fs.flow_sde(SCHED, GRID, "t^2")
    with pytest.raises(ValueError, match="sigma > 0"):
        fs.flow_sde(SCHED, time_grid(SCHED, 4, "uniform", t_start=0.9, final="zero"), 1.0)
    with pytest.raises(ValueError, match="budget"):
        fs.rollover_budget_forcing(fs.flow_sde(SCHED, GRID, 1.0), SCHED, lambda x: x[:, 0], 10)
