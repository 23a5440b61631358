"""DDPM ancestral, DDIM with eta, SDE-DPM-Solver(++) and Euler-Maruyama: identities between them
with the same key, the SDE coefficients, exact NFE, jit/vmap and build-time errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.sde.ancestral import ddim_eta, ddpm, ddpm_noise
from samplers.sde.euler_maruyama import euler_maruyama, sde_coefficients
from samplers.sde.sde_dpm import sde_dpm_solver
from tests.test_sde_moments import GMM

KEY = jax.random.PRNGKey(11)


def _run(smp, sch, x, key=KEY):
    return jax.jit(sample, static_argnums=(0, 1))(smp, GMM.model_fn(sch, "eps"), x, key)


@pytest.mark.parametrize("schedule,spacing", [("ve", "uniform"), ("vp_discrete", "leading")])
def test_ddim_eta_one_is_ddpm(x64, schedule, spacing):
    sch = schedules.get_schedule(schedule)
    grid = time_grid(sch, 20, spacing, final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 2), jnp.float64) * float(np.hypot(grid.alpha[0], grid.sigma[0]))
    a, b = _run(ddim_eta(sch, grid, eta=1.0), sch, x), _run(ddpm(sch, grid), sch, x)
    c = _run(sde_dpm_solver(sch, grid, order=1, algorithm="dpmsolver++"), sch, x)  # SDE-DPM-Solver++1 is DDPM too
    scale = float(jnp.max(jnp.abs(b.x)))
    assert float(jnp.max(jnp.abs(a.x - b.x))) <= 1e-9 * scale
    assert float(jnp.max(jnp.abs(c.x - b.x))) <= 1e-9 * scale


def test_ddim_eta_one_is_ddpm_float32():
    sch = schedules.vp_linear()
    grid = time_grid(sch, 50, "logsnr", final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
    a, b = _run(ddim_eta(sch, grid, eta=1.0), sch, x), _run(ddpm(sch, grid), sch, x)
    assert float(jnp.max(jnp.abs(a.x - b.x))) <= 1e-6 * float(jnp.max(jnp.abs(b.x)))


def test_eta_zero_is_ddim():
    sch = schedules.vp_cosine()
    grid = time_grid(sch, 15, "logsnr", final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 2))
    a, b = _run(ddim_eta(sch, grid, eta=0.0), sch, x), _run(ddim(sch, grid), sch, x)
    np.testing.assert_allclose(np.asarray(a.x), np.asarray(b.x), rtol=0, atol=1e-5)


def test_sde_coefficients_closed_forms():
    """VP-linear: f = -beta(t)/2, g^2 = beta(t); VE: f = 0, g^2 = d sigma^2/dt; EDM: g^2 = 2t."""
    t = np.array([0.01, 0.3, 0.9])
    vp = schedules.vp_linear()
    f, g2 = sde_coefficients(vp, t)
    beta = vp.beta_min + t * (vp.beta_max - vp.beta_min)
    np.testing.assert_allclose(f, -0.5 * beta, rtol=1e-12)
    np.testing.assert_allclose(g2, beta, rtol=1e-12)
    ve = schedules.ve()
    f, g2 = sde_coefficients(ve, t)
    np.testing.assert_allclose(f, 0.0, atol=0)
    np.testing.assert_allclose(g2, 2 * np.log(ve.sigma_max / ve.sigma_min) * ve.sigma(t) ** 2, rtol=1e-12)
    np.testing.assert_allclose(sde_coefficients(schedules.edm(), 10 * t)[1], 20 * t, rtol=1e-12)


def test_nfe_vmap_and_key_dependence():
    sch = schedules.vp_linear()
    grid = time_grid(sch, 10, "logsnr", final="zero")
    fn = GMM.model_fn(sch, "eps")
    for smp in [ddim_eta(sch, grid, eta=0.3), sde_dpm_solver(sch, grid, order=2, algorithm="dpmsolver",
                                                           solver_type="heun")]:
        one = jax.jit(lambda x, k: sample(smp, fn, x, k))
        xs = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 2))
        keys = jax.random.split(jax.random.PRNGKey(1), 3)
        batched = jax.jit(jax.vmap(one))(xs, keys)
        assert smp.nfe == 10 and np.all(np.asarray(batched.nfe) == smp.nfe)
        np.testing.assert_allclose(np.asarray(batched.x[1]), np.asarray(one(xs[1], keys[1]).x), atol=1e-5)
        other = one(xs[1], keys[0]).x
        assert float(jnp.max(jnp.abs(other - batched.x[1]))) > 1e-3  # the noise comes from the key


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_noise_is_the_steps_noise(variance):
    """ddpm_noise(grid) is the std of the noise each DDPM step adds: two keys, same x and model,
    differ by g_i (z1 - z2), whose std is g_i sqrt(2)."""
    sch = schedules.vp_linear()
    grid = time_grid(sch, 6, "uniform")
    smp, g = ddpm(sch, grid, variance=variance), ddpm_noise(grid, variance)
    fn = GMM.model_fn(sch, "eps")
    x = jax.random.normal(jax.random.PRNGKey(0), (20000, 2))
    for i in range(grid.num_steps):
        state = smp.init(x).replace(i=jnp.int32(i))
        a, b = (smp.step(state, jax.random.PRNGKey(k), fn).x for k in (1, 2))
        measured = float(jnp.std(a - b)) / np.sqrt(2)
        np.testing.assert_allclose(measured, g[i], rtol=0.02, atol=1e-7)
        if g[i] > 0:  # control: the same check rejects a 10% wrong variance (sd x sqrt(1.1))
            assert not np.isclose(measured, g[i] * np.sqrt(1.1), rtol=0.02, atol=1e-7)
    assert np.all(ddpm_noise(grid, "small") <= ddpm_noise(grid, "large"))  # posterior variance <= beta
    with pytest.raises(ValueError, match="variance"):
        ddpm_noise(grid, "medium")


@pytest.mark.parametrize("schedule,spacing,final", [("vp_linear", "uniform", None), ("vp_discrete", "leading", None),
                                                     ("vp_discrete", "trailing", "zero")])
def test_ddpm_noise_is_the_ddpm_papers_variance(schedule, spacing, final):
    """Ho et al. 2020, Sec. 3.2 / eq. 7, computed here from the grid's alpha-bar = alpha^2 alone:
    beta_t = 1 - abar_t / abar_prev ("large", sigma_t^2 = beta_t) and the posterior variance
    beta~_t = (1 - abar_prev) / (1 - abar_t) beta_t ("small")."""
    sch = schedules.get_schedule(schedule)
    grid = time_grid(sch, 10, spacing, final=final)
    abar = grid.alpha.astype(np.float64) ** 2
    beta = 1.0 - abar[:-1] / abar[1:]
    beta_tilde = (1.0 - abar[1:]) / (1.0 - abar[:-1]) * beta
    if abar[-1] == 1.0:  # a last step onto the data adds no noise (Algorithm 2: z = 0 at t = 1)
        beta[-1] = 0.0
    for variance, exact in (("large", beta), ("small", beta_tilde)):
        got = ddpm_noise(grid, variance) ** 2
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-12)
        assert not np.allclose(got, 1.1 * exact, rtol=1e-6, atol=1e-12)  # control: a 10% wrong variance
    assert not np.allclose(ddpm_noise(grid, "large") ** 2, beta_tilde, rtol=1e-6, atol=1e-12)  # control: swapped


@pytest.mark.parametrize("build,kwargs,match", [
    (ddim_eta, dict(eta=1.5), "eta"), (ddim_eta, dict(eta=-0.1), "eta"), (ddpm, dict(variance="medium"), "variance"),
    (sde_dpm_solver, dict(order=3), "order"), (sde_dpm_solver, dict(algorithm="sde"), "algorithm"),
    (sde_dpm_solver, dict(solver_type="taylor"), "solver_type"), (ddpm, dict(predicts="noise"), "predicts"),
    (sde_dpm_solver, dict(algorithm="dpmsolver", thresholding={}), "thresholding"),
])
def test_errors(build, kwargs, match):
    sch = schedules.vp_linear()
    with pytest.raises(ValueError, match=match):
        build(sch, time_grid(sch, 8), **kwargs)


def test_euler_maruyama_singular_start():
    sch = schedules.flow()
    with pytest.raises(ValueError, match="singular"):
        euler_maruyama(sch, time_grid(sch, 8, "uniform", t_start=1.0, t_end=0.1))
    with pytest.raises(ValueError, match="grid"):
        euler_maruyama(sch, np.linspace(1, 0, 5))
