"""UniPC / UniP: convergence orders against the exact PF-ODE of a Gaussian mixture, exact NFE,
DDIM equivalence at order 1, disable_corrector, thresholding, the step to sigma = 0 and
build-time errors.

Convergence runs use ``lower_order_final=False``: the order-1 final step that diffusers'
rule imposes has local error O(h^2) and would cap every global order at 2.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.ode.unipc import unipc
from samplers.schedules import flow, vp_linear
from tests.ode_utils import convergence, fitted_order, reference, rms_error, start_noise, toy_model


def _unipc(order, corrector, variant="bh2", predict_x0=True):
    return lambda s, g, p: unipc(s, g, p, order=order, variant=variant, corrector=corrector,
                                 predict_x0=predict_x0, lower_order_final=False)


# (id, builder, expected order, steps); all on vp_linear, logsnr spacing, t in [1e-3, 1].
# unip1 is DDIM exactly (test_order1_unip_is_ddim; DDIM's order is tested in test_ode_basic).
SLOW = pytest.mark.slow
CASES = [
    pytest.param("unip1", _unipc(1, False), 1, [64, 128, 256], id="unip1", marks=SLOW),
    pytest.param("unip2", _unipc(2, False), 2, [64, 128, 256], id="unip2"),
    pytest.param("unip3", _unipc(3, False), 3, [128, 256, 512], id="unip3"),
    pytest.param("unipc1", _unipc(1, True), 2, [64, 128, 256], id="unipc1"),
    pytest.param("unipc2", _unipc(2, True), 3, [128, 256, 512], id="unipc2"),
    pytest.param("unipc2_bh1_eps", _unipc(2, True, "bh1", predict_x0=False), 3, [128, 256, 512],
                 id="unipc2_bh1_eps", marks=SLOW),
]


@pytest.mark.parametrize("name,build,order,steps", CASES)
def test_convergence_order(x64, name, build, order, steps):
    nfes, errs = convergence(build, "vp_linear", steps)
    slope = fitted_order(nfes, errs)
    assert abs(slope - order) < 0.3, f"{name}: fitted order {slope:.2f} (errors {errs}) vs {order}"


def test_unipc3_reaches_order_four(x64):
    """UniPC-3 (UniP-3 + UniC-3) is of order 4, but no cheap range shows a clean 4: over 64..256
    steps the slope is 4.8 (pre-asymptotic) and from 256 to 512 it drops to 3.4 as the O(h^3)
    error of the warm-up steps (UniPC-1, -2) takes over. So the assertion is a lower bound,
    clearly above UniP-3's 3."""
    nfes, errs = convergence(_unipc(3, True), "vp_linear", [64, 128, 256])
    slope = fitted_order(nfes, errs)
    assert slope > 3.7, f"unipc3: fitted order {slope:.2f} (errors {errs}) vs >= 4"


def test_nfe_exact(x64):
    sch = vp_linear()
    for final in (None, "zero"):
        grid = time_grid(sch, 7, "logsnr", final=final)
        smp = unipc(sch, grid, order=3)
        out = sample(smp, toy_model, start_noise(4))
        assert int(out.nfe) == smp.nfe == smp.num_steps == grid.num_steps == 7


def test_order1_unip_is_ddim(x64):
    sch = vp_linear()
    grid = time_grid(sch, 10, "logsnr", final="zero")
    x, fn = start_noise(8), toy_model
    ref = sample(ddim(sch, grid), fn, x).x
    for predict_x0 in (True, False):
        ours = sample(unipc(sch, grid, order=1, corrector=False, predict_x0=predict_x0), fn, x).x
        np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=1e-11, err_msg=f"predict_x0={predict_x0}")


def test_disable_corrector(x64):
    sch = vp_linear()
    grid = time_grid(sch, 8, "logsnr")
    x, fn = start_noise(8), toy_model
    run = lambda **kw: np.asarray(sample(unipc(sch, grid, order=2, **kw), fn, x).x)
    np.testing.assert_array_equal(run(disable_corrector=range(8)), run(corrector=False))
    # x_N is never corrected, so disabling the last predictor step's correction changes nothing.
    np.testing.assert_array_equal(run(disable_corrector=[7]), run())
    assert np.max(np.abs(run(disable_corrector=[3]) - run())) > 1e-6


def test_final_step_to_sigma_zero(x64):
    """Without lower_order_final, bh1 and bh2 in both forms still reach sigma = 0 finite (that
    step is order 1) and close to the exact solution; the gap left is mostly the fixed last
    step from t = 1e-3 to sigma = 0. (diffusers' bh1 gives nan there: B(h) = -inf.)"""
    sch = vp_linear()
    ref = reference("vp_linear", sch.t_max, sch.t_min, "zero")
    grid = time_grid(sch, 30, "logsnr", final="zero")
    x = start_noise(32)
    for variant, predict_x0, order in [("bh1", True, 3), ("bh2", True, 2), ("bh1", False, 2), ("bh2", False, 3)]:
        smp = unipc(sch, grid, order=order, variant=variant, predict_x0=predict_x0, lower_order_final=False)
        err, _ = rms_error(smp, sch, "eps", x, ref)
        assert np.isfinite(err) and err < 1e-2, (variant, predict_x0, order, err)


def test_thresholding_bounds_final_sample(x64):
    """With a final step to sigma = 0 the output is the (thresholded) data prediction, inside [-1, 1]."""
    sch = vp_linear()
    grid = time_grid(sch, 10, "logsnr", final="zero")
    fn, x = toy_model, 3.0 * start_noise(16)
    plain = sample(unipc(sch, grid, order=2), fn, x).x
    out = sample(unipc(sch, grid, order=2, thresholding={"ratio": 0.9, "max_value": 1.5}), fn, x).x
    assert float(jnp.max(jnp.abs(plain))) > 1.0
    assert float(jnp.max(jnp.abs(out))) <= 1.0 + 1e-12


def test_float32_jit_vmap():
    sch = vp_linear()
    grid = time_grid(sch, 12, "logsnr", final="zero")
    smp = unipc(sch, grid, order=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 4))
    out = jax.jit(jax.vmap(lambda xi: sample(smp, toy_model, xi).x))(x)
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"order": 0}, "order must be one of"),
        ({"order": 4}, "order must be one of"),
        ({"variant": "bh3"}, "variant must be one of"),
        ({"corrector": "yes"}, "corrector must be one of"),
        ({"predict_x0": None}, "predict_x0 must be one of"),
        ({"disable_corrector": [5]}, r"disable_corrector entries must be integers in \[0, 4\]"),
        ({"disable_corrector": [-1]}, r"disable_corrector entries must be integers in \[0, 4\]"),
        ({"disable_corrector": [1.0]}, "disable_corrector entries must be integers"),
        ({"disable_corrector": 3}, "disable_corrector must be a sequence"),
        ({"predict_x0": False, "thresholding": {"ratio": 0.9}}, "thresholding applies to data-prediction"),
    ],
)
def test_build_errors(kwargs, match):
    sch = vp_linear()
    grid = time_grid(sch, 5, "logsnr")
    with pytest.raises(ValueError, match=match):
        unipc(sch, grid, **kwargs)


def test_build_errors_predicts_grid_and_alpha_zero():
    sch = vp_linear()
    grid = time_grid(sch, 5, "logsnr")
    with pytest.raises(ValueError, match="predicts must be one of"):
        unipc(sch, grid, "noise")
    with pytest.raises(ValueError, match="grid must be a TimeGrid"):
        unipc(sch, np.linspace(1.0, 1e-3, 6))
    fl = flow()
    fgrid = time_grid(fl, 5, "uniform", t_end=1e-3)  # starts at t = 1: alpha = 0
    with pytest.raises(ValueError, match="predict_x0=False"):
        unipc(fl, fgrid, "velocity", predict_x0=False)
    # The data-prediction form starts from alpha = 0 (that point is no interpolation node).
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 4))
    out = sample(unipc(fl, fgrid, "velocity", order=3), toy_model, x)
    assert bool(jnp.all(jnp.isfinite(out.x)))
