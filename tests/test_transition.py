"""Sampler.transition: the Gaussian-transition view of the stochastic multistep samplers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import random_mixture
from samplers import registry, schedules
from samplers.grids import time_grid
from samplers.sde.ancestral import ddpm, ddpm_coefficients

SCHED = schedules.vp_linear()
MIX = random_mixture(dim=3, num_components=2, seed=1)
MODEL = MIX.model_fn(SCHED, "eps")


@pytest.mark.parametrize("name", ["ddpm", "ddim_eta", "euler_maruyama", "sde_dpm_solver_pp_2m", "sde_dpm_solver_1"])
def test_step_is_mean_plus_scale_noise(name):
    sampler = registry.build(name, SCHED, 6)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    state = sampler.init(x)
    for i in range(3):
        key = jax.random.PRNGKey(10 + i)
        tr = sampler.transition(state, MODEL)
        nxt = sampler.step(state, key, MODEL)
        z = jax.random.normal(key, x.shape)
        np.testing.assert_array_equal(nxt.x, tr.mean + tr.scale * z)
        # the mean is affine in the output with weight out_coef
        shifted = tr.mean + tr.out_coef * 0.5
        assert tr.space in ("x0", "eps")
        assert np.isfinite(np.asarray(shifted)).all()
        state = nxt


def test_ddpm_transition_is_the_posterior(x64):
    """mean = A x + B x0 with x0 the exact Tweedie output, scale = DDPM's posterior std."""
    grid = time_grid(SCHED, 5, "uniform")
    sampler = ddpm(SCHED, grid)
    # x0 = (x - sigma eps) / alpha at alpha ~ 7e-3: compare in float64
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3), jnp.float64)
    tr = sampler.transition(sampler.init(x), MODEL)
    x0 = MIX.denoise(x, grid.alpha[0], grid.sigma[0])[0]
    start = (grid.alpha[:1], grid.sigma[:1], grid.lam[:1])
    end = (grid.alpha[1:2], grid.sigma[1:2], grid.lam[1:2])
    A, B, g = (float(v[0]) for v in ddpm_coefficients(start, end))
    np.testing.assert_allclose(tr.output, x0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tr.mean, A * x + B * x0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tr.scale, g, rtol=1e-6)
    np.testing.assert_allclose(tr.out_coef, B, rtol=1e-6)
    assert tr.space == "x0" and float(tr.t) == pytest.approx(grid.t[0])


def test_deterministic_and_non_gaussian_samplers_have_no_transition():
    for name in ["ddim", "dpm_solver_pp_2m", "unipc", "heun", "edm_stochastic", "pc"]:
        assert registry.build(name, SCHED, 8).transition is None, name
