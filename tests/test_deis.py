"""DEIS tAB: convergence orders against the exact PF-ODE of a Gaussian mixture, exact NFE,
order 1 == DDIM, the exact exponential moments, the step to sigma = 0 and build-time errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.ode.rk import heun
from samplers.ode import deis as deis_module
from samplers.ode.deis import deis, deis_rk, exp_moments
from samplers.schedules import flow, vp_linear
from tests.ode_utils import convergence, fitted_order, reference, rms_error, start_noise, toy_model


# On vp_linear, logsnr spacing, t in [1e-3, 1]; N >= 15 so lower_order_final is inactive.
CASES = [
    pytest.param(1, [64, 128, 256], id="deis1", marks=pytest.mark.slow),  # DDIM (test_order1_is_ddim)
    pytest.param(2, [128, 256, 512], id="deis2"),
    pytest.param(3, [128, 256, 512], id="deis3"),
]


@pytest.mark.parametrize("order,steps", CASES)
def test_convergence_order(x64, order, steps):
    nfes, errs = convergence(lambda s, g, p: deis(s, g, p, order=order), "vp_linear", steps)
    slope = fitted_order(nfes, errs)
    assert abs(slope - order) < 0.3, f"deis{order}: fitted order {slope:.2f} (errors {errs})"


def test_order1_is_ddim_and_nfe(x64):
    sch = vp_linear()
    x = start_noise(8)
    for final in (None, "zero"):
        grid = time_grid(sch, 9, "logsnr", final=final)
        smp = deis(sch, grid, order=1)
        out = sample(smp, toy_model, x)
        assert int(out.nfe) == smp.nfe == smp.num_steps == grid.num_steps == 9
        np.testing.assert_allclose(out.x, sample(ddim(sch, grid), toy_model, x).x, rtol=1e-11, atol=1e-11)


def test_exp_moments_match_quadrature():
    """I_n(tau) = int_0^tau e^v v^n dv on both sides of the series/recursion switch, and at -inf."""
    for tau in (-0.05, -0.4999, -0.5001, -3.0, -40.0):
        v = np.linspace(0.0, tau, 400_001)
        for n, value in enumerate(exp_moments(3, tau)):
            f = np.exp(v) * v**n
            quad = np.sum((f[1:] + f[:-1]) / 2 * np.diff(v))
            np.testing.assert_allclose(value, quad, rtol=1e-8, atol=1e-13, err_msg=f"tau={tau}, n={n}")
    np.testing.assert_allclose(exp_moments(3, -np.inf), exp_moments(3, -80.0), rtol=1e-15)
    np.testing.assert_array_equal(exp_moments(3, -np.inf), [-1.0, 1.0, -2.0, 6.0])


def test_final_step_to_sigma_zero(x64):
    """The weights stay finite at sigma = 0 (tau = -inf), also for order 3 without lower_order_final."""
    sch = vp_linear()
    ref = reference("vp_linear", sch.t_max, sch.t_min, "zero")
    grid = time_grid(sch, 30, "logsnr", final="zero")
    smp = deis(sch, grid, order=3, lower_order_final=False)
    err, nfe = rms_error(smp, sch, "eps", start_noise(32), ref)
    assert np.isfinite(err) and err < 1e-2 and nfe == 30, err


def test_float32_jit():
    sch = vp_linear()
    smp = deis(sch, time_grid(sch, 12, "logsnr", final="zero"), order=3)
    out = jax.jit(sample, static_argnums=(0, 1))(smp, toy_model, jax.random.normal(jax.random.PRNGKey(0), (8, 4)))
    assert out.x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out.x)))


def test_build_errors():
    sch = vp_linear()
    grid = time_grid(sch, 5, "logsnr")
    for order in (0, 4, 2.5):
        with pytest.raises(ValueError, match="order must be one of"):
            deis(sch, grid, order=order)
    with pytest.raises(ValueError, match="predicts must be one of"):
        deis(sch, grid, "noise")
    with pytest.raises(ValueError, match="lower_order_final must be one of"):
        deis(sch, grid, lower_order_final="yes")
    with pytest.raises(ValueError, match="grid must be a TimeGrid"):
        deis(sch, [1.0, 0.5, 1e-3])
    fl = flow()
    with pytest.raises(ValueError, match="needs alpha > 0 at the first grid point"):
        deis(fl, time_grid(fl, 5, "uniform", t_end=1e-3), "velocity")


# DEIS rho-RK: measured slopes 2.07, 3.16, 3.98 (vp_linear, logsnr, t in [1e-3, 1], float64)
RK_CASES = [pytest.param(2, [32, 64, 128], id="rho_rk2"), pytest.param(3, [64, 128, 256], id="rho_rk3"),
            pytest.param(4, [32, 64, 128], id="rho_rk4")]


@pytest.mark.parametrize("order,steps", RK_CASES)
def test_rho_rk_convergence_order(x64, order, steps):
    nfes, errs = convergence(lambda s, g, p: deis_rk(s, g, p, order=order), "vp_linear", steps)
    slope = fitted_order(nfes, errs)
    assert abs(slope - order) < 0.3, f"rho-RK{order}: fitted order {slope:.2f} (errors {errs})"


def test_rho_rk_wrong_stage_coefficient_fails_the_order_check(x64, monkeypatch):
    """CONTROL: Kutta's a_31, a_32 = -1, 2 moved to -0.8, 1.8 (still consistent: the row sums to c_3 = 1)
    drops the measured order to 2.1."""
    a, b, c = deis_module.RHO_TABLEAUX[3]
    wrong = a.copy()
    wrong[2, :2] = [-0.8, 1.8]
    monkeypatch.setitem(deis_module.RHO_TABLEAUX, 3, (wrong, b, c))
    nfes, errs = convergence(lambda s, g, p: deis_rk(s, g, p, order=3), "vp_linear", [64, 128, 256])
    assert not abs(fitted_order(nfes, errs) - 3) < 0.3


def test_rho_rk2_is_karras_heun(x64):
    """rho-RK2 in rho = sigma/alpha is Karras's Heun in (y, s) bit for bit (the registry's "heun" is it, so
    that ``cap_orders`` can lower its long steps); CONTROL: Kutta's order 3 on the same grid is not."""
    sch = vp_linear()
    x = start_noise(8)
    for final in (None, "zero"):
        grid = time_grid(sch, 7, "karras", final=final)
        want = np.asarray(sample(heun(sch, grid), toy_model, x).x)
        np.testing.assert_array_equal(np.asarray(sample(deis_rk(sch, grid, order=2), toy_model, x).x), want)
        assert not np.allclose(np.asarray(sample(deis_rk(sch, grid, order=3), toy_model, x).x), want, rtol=1e-6)


def test_rho_rk_step_to_sigma_zero_and_errors(x64):
    sch = vp_linear()
    ref = reference("vp_linear", sch.t_max, sch.t_min, "zero")
    grid = time_grid(sch, 20, "logsnr", final="zero")
    smp = deis_rk(sch, grid, order=3)
    err, nfe = rms_error(smp, sch, "eps", start_noise(32), ref)
    assert np.isfinite(err) and err < 1e-2 and nfe == smp.nfe == 3 * 19 + 1, (err, nfe)
    with pytest.raises(ValueError, match="order must be one of"):
        deis_rk(sch, grid, order=1)
    fl = flow()
    with pytest.raises(ValueError, match="needs alpha > 0 at the first grid point"):
        deis_rk(fl, time_grid(fl, 5, "uniform", t_end=1e-3), "velocity")
