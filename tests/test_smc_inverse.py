"""Linear inverse problems (samplers/smc/inverse.py): the SVD-basis SMC against exact posterior
samples of a Gaussian-mixture prior; DPS runs (its bias is measured in bench/smc_scaling.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from models.metrics import sliced_wasserstein
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.sde.ancestral import ddpm
from samplers.smc import inverse

SCHED = schedules.vp_linear()
PRIOR = GaussianMixture([0.3, 0.5, 0.2], [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]],
                        [[0.3, 0.5], [0.4, 0.2], [0.3, 0.3]])
A, Y, NOISE = np.array([[1.0, 0.6]]), np.array([0.5]), 0.3
GRID = time_grid(SCHED, 100, "uniform")
BASE = ddpm(SCHED, GRID, variance="large")
MODEL = PRIOR.model_fn(SCHED, "eps")
POST = inverse.mixture_posterior(PRIOR, A, Y, NOISE)
EXACT = POST.sample(jax.random.PRNGKey(5), 4096)
SW = jax.jit(lambda a: jnp.mean(jnp.stack([sliced_wasserstein(a, EXACT, k)
                                           for k in jax.random.split(jax.random.PRNGKey(9), 4)])))


def test_mixture_posterior_is_bayes_rule(x64):
    """The closed-form posterior density equals prior x likelihood / evidence at random points."""
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 2), jnp.float64) * 2
    lik = -0.5 * np.sum((Y - np.asarray(x) @ A.T) ** 2, -1) / NOISE**2 - 0.5 * np.log(2 * np.pi * NOISE**2)
    rhs = np.asarray(PRIOR.log_prob(x)) + lik - inverse.mixture_evidence(PRIOR, A, Y, NOISE)
    np.testing.assert_allclose(np.asarray(POST.log_prob(x)), rhs, rtol=1e-9, atol=1e-9)


def _smc_sw(n, noise):
    smc = inverse.svd_smc(BASE, GRID, A, Y, noise)
    st = sample(smc, MODEL, jax.random.normal(jax.random.PRNGKey(n), (n, 2)), jax.random.PRNGKey(1))
    assert int(st.nfe) == GRID.num_steps
    return float(SW(st.x))


def test_svd_smc_converges_to_the_exact_posterior():
    """SW to exact posterior samples falls as the particles grow and ends within the Monte Carlo
    error of exact samples of the same size (mean + 4 sd of their SW); control: the same check on
    the SMC for a wrong noise level (1.5 x) is rejected."""
    sws = [_smc_sw(n, NOISE) for n in (16, 256, 4096)]
    assert sws[0] > sws[1] > sws[2], sws
    ref = np.array([float(SW(POST.sample(jax.random.PRNGKey(10 + j), 4096))) for j in range(6)])
    bound = ref.mean() + 4 * ref.std()
    assert sws[2] < bound, (sws, ref)
    assert _smc_sw(4096, 1.5 * NOISE) > bound


def test_dps_runs_and_is_guided():
    """DPS moves the samples toward the observation (|y - A x| falls against the prior's); its
    distance to the exact posterior is a number in the benchmark, not asserted here."""
    x = jax.random.normal(jax.random.PRNGKey(0), (512, 2))
    prior_x = sample(BASE, MODEL, x, jax.random.PRNGKey(1)).x
    dps_x = sample(inverse.dps(BASE, SCHED, A, Y, NOISE, zeta=0.1), MODEL, x, jax.random.PRNGKey(1)).x
    resid = lambda z: float(jnp.mean(jnp.abs(Y - z @ A.T)))
    assert resid(dps_x) < 0.5 * resid(prior_x)
    # control: zeta = 0 (the guidance term dropped) fails the same check
    off = sample(inverse.dps(BASE, SCHED, A, Y, NOISE, zeta=0.0), MODEL, x, jax.random.PRNGKey(1)).x
    assert not resid(off) < 0.5 * resid(prior_x)


def test_bad_input():
    with pytest.raises(ValueError, match="noise_std"):
        inverse.svd_smc(BASE, GRID, A, Y, 0.0)
    with pytest.raises(ValueError, match="y must"):
        inverse.svd_smc(BASE, GRID, A, np.zeros(3), NOISE)
    with pytest.raises(ValueError, match="resampler"):
        inverse.svd_smc(BASE, GRID, A, Y, NOISE, resampler="best")
    with pytest.raises(ValueError, match="ess_threshold"):
        inverse.svd_smc(BASE, GRID, A, Y, NOISE, ess_threshold=1.5)
    with pytest.raises(ValueError, match="grid"):
        inverse.svd_smc(BASE, time_grid(SCHED, 10, "uniform"), A, Y, NOISE)
    with pytest.raises(ValueError, match="sampler"):
        inverse.svd_smc(ddim(SCHED, GRID), GRID, A, Y, NOISE)
    with pytest.raises(ValueError, match="zeta"):
        inverse.dps(BASE, SCHED, A, Y, NOISE, zeta=-1.0)
    with pytest.raises(ValueError, match="x must"):
        inverse.svd_smc(BASE, GRID, A, Y, NOISE).init(jnp.zeros((8, 3)))
