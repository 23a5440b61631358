"""DPM-Solver / DPM-Solver++: convergence orders on a Gaussian mixture, order conditions,
DDIM equivalence, exact NFE, DPM-Solver-fast grids, the adaptive solver and argument checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import TimeGrid, time_grid
from samplers.ode.ddim import ddim, ddim_coefficients
from samplers.ode.dpm_solver import (dpm_solver, dpm_solver_fast_grid, dpm_solver_pp, multistep_tables,
                                     singlestep_coefs, singlestep_tables)
from samplers.ode.multistep import multistep_orders
from samplers.ode.dpm_solver_adaptive import dpm_solver_adaptive
from tests.ode_utils import GMM, convergence, fitted_order, reference, start_noise

T_START, T_END = 1.0, 0.01  # vp_linear; logSNR-uniform grids

CASES = [
    ("dpm_solver_1", lambda s, g, p: dpm_solver(s, g, 1, p), 1, [32, 64, 128]),
    ("dpm_solver_2", lambda s, g, p: dpm_solver(s, g, 2, p), 2, [16, 32, 64]),
    ("dpm_solver_3", lambda s, g, p: dpm_solver(s, g, 3, p), 3, [32, 64, 128]),
    ("dpm_solver_2m", lambda s, g, p: dpm_solver(s, g, 2, p, "multistep"), 2, [32, 64, 128]),
    ("dpm_solver_3m_taylor", lambda s, g, p: dpm_solver(s, g, 3, p, "multistep", third_order="taylor"), 3,
     [32, 64, 128]),
    ("dpm_solver_pp_2m", lambda s, g, p: dpm_solver_pp(s, g, 2, p), 2, [16, 32, 64]),
    ("dpm_solver_pp_3m_taylor", lambda s, g, p: dpm_solver_pp(s, g, 3, p, third_order="taylor"), 3,
     [128, 256, 512]),
    ("dpm_solver_pp_2s", lambda s, g, p: dpm_solver_pp(s, g, 2, p, "singlestep"), 2, [16, 32, 64]),
]


@pytest.mark.parametrize("name,build,order,steps", CASES, ids=[c[0] for c in CASES])
def test_convergence_order(x64, name, build, order, steps):
    nfes, errs = convergence(build, "vp_linear", steps, t_start=T_START, t_end=T_END, n=16)
    slope = fitted_order(nfes, errs)
    print(f"{name}: nfe {nfes.tolist()} errors {errs} fitted order {slope:.3f}")
    assert abs(slope - order) < 0.3, f"{name}: fitted order {slope:.2f} (errors {errs}) vs {order}"


def _vp_point(lam):
    return float(np.sqrt(1 / (1 + np.exp(-2 * lam)))), float(np.sqrt(1 / (1 + np.exp(2 * lam)))), float(lam)


def _exact_quadratic(space, p_s, p_t):
    """Exact x_t - A x_s when the model output is m(lambda) = lambda^2 (independent of x)."""
    (_, _, ls), (a_t, s_t, lt) = p_s, p_t
    if space == "x0":  # sigma_t int e^l l^2 dl
        prim = lambda l: np.exp(l) * (l * l - 2 * l + 2)
        return s_t * (prim(lt) - prim(ls))
    prim = lambda l: -np.exp(-l) * (l * l + 2 * l + 2)  # -alpha_t int e^-l l^2 dl
    return -a_t * (prim(lt) - prim(ls))


@pytest.mark.parametrize("space", ["x0", "eps"])
def test_order_conditions_on_quadratics(space):
    """One step on an output quadratic in lambda: the Taylor-consistent third orders are exact; the
    reference/diffusers 3M weight of D_2 leaves a local error O(h^3) (a second-order method)."""
    errs = {}
    for h in [0.2, 0.1]:
        lams = -0.5 + h * np.array([0.0, 1.3, 2.0, 3.0])  # non-uniform history
        pts = [_vp_point(l) for l in lams]
        grid = TimeGrid(np.arange(4.0)[::-1], *(np.array(v) for v in zip(*pts)))
        m = lams**2
        exact = _exact_quadratic(space, pts[2], pts[3])
        for variant in ["reference", "taylor"]:
            _, B = multistep_tables(grid, space, np.array([1, 2, 3]), "dpmsolver", variant)
            errs[variant, h] = abs(B[2] @ m[2::-1] - exact)
        mids = [_vp_point(pts[2][2] + r * (lams[3] - lams[2])) for r in (1 / 3, 2 / 3)]
        _, _, _, c_out = singlestep_coefs(space, "taylor", 3, pts[2], pts[3], mids)
        ms = np.array([p[2] ** 2 for p in [pts[2]] + mids])
        assert abs(np.dot(np.asarray(c_out), ms) - exact) < 1e-13
    assert errs["taylor", 0.2] < 1e-13 and errs["taylor", 0.1] < 1e-13
    ratio = errs["reference", 0.2] / errs["reference", 0.1]
    print(f"{space}: reference 3M local errors {errs['reference', 0.2]:.2e}, {errs['reference', 0.1]:.2e} "
          f"(ratio {ratio:.2f})")
    assert errs["reference", 0.1] > 1e-6 and 6.0 < ratio < 10.0


def test_order_one_is_ddim(x64):
    sch = schedules.vp_linear()
    grid = time_grid(sch, 12, "logsnr", final="zero")
    x = start_noise(8)
    run = lambda smp: np.asarray(jax.jit(sample, static_argnums=(0, 1))(smp, GMM.model_fn(sch, "eps"), x).x)
    ref = run(ddim(sch, grid))
    np.testing.assert_allclose(run(dpm_solver_pp(sch, grid, 1)), ref, rtol=1e-13, atol=1e-13)
    # eps space: same map, written alpha_t/alpha_s x - (alpha_t sigma_s/alpha_s)(1 - e^-h) eps, finite at sigma = 0
    np.testing.assert_allclose(run(dpm_solver(sch, grid, 1)), ref, rtol=1e-10, atol=1e-10)
    # singlestep order 1: the same coefficients as DDIM's
    a, b = ddim_coefficients(grid)
    _, _, _, a_out, c_out, _ = singlestep_tables(sch, grid, "x0", [1] * 12, "dpmsolver", "lambda")
    np.testing.assert_allclose(a_out, a, rtol=1e-15)
    np.testing.assert_allclose(c_out[:, 0], b, rtol=1e-15)


@pytest.mark.parametrize("n,order,lower_order_final,final_zero,expected", [
    (10, 3, True, False, [1, 2, 3, 3, 3, 3, 3, 3, 2, 1]),
    (10, 3, False, False, [1, 2] + [3] * 8),
    (16, 3, True, False, [1, 2] + [3] * 14),
    (16, 3, True, True, [1, 2] + [3] * 13 + [1]),
    (5, 2, False, True, [1, 2, 2, 2, 1]),
    (1, 2, True, False, [1]),
])
def test_multistep_orders(n, order, lower_order_final, final_zero, expected):
    assert multistep_orders(n, order, lower_order_final, final_zero).tolist() == expected


@pytest.mark.parametrize("space", ["x0", "eps"])
def test_final_zero_tables_finite(space):
    sch = schedules.vp_linear()
    grid = time_grid(sch, 20, "logsnr", final="zero")
    for variant in ["reference", "taylor"]:
        A, B = multistep_tables(grid, space, multistep_orders(20, 3, True, True), "dpmsolver", variant)
        assert np.all(np.isfinite(A)) and np.all(np.isfinite(B))
        assert A[-1] == (0.0 if space == "x0" else grid.alpha[-1] / grid.alpha[-2]) and np.all(B[-1, 1:] == 0)
    smp = (dpm_solver_pp if space == "x0" else dpm_solver)(sch, grid, 3, method="singlestep")
    assert smp.nfe == 3 * 19 + 1


def _counting_model(calls):
    """A cheap eps model (the count, not the answer, is under test) recording each call."""
    def model(x, t):
        calls.append(float(t))
        return 0.5 * x
    return model


def test_nfe_counted_calls():
    """DPM-Solver-fast with a budget of 10 calls: the model is called exactly 10 times."""
    sch = schedules.vp_linear()
    grid, orders = dpm_solver_fast_grid(sch, 10, order=3, t_end=T_END)
    assert orders == [3, 3, 3, 1] and grid.num_steps == 4
    smp = dpm_solver(sch, grid, 3, orders=orders)
    calls = []
    with jax.disable_jit():
        out = sample(smp, _counting_model(calls), jnp.ones((2, 3)))
    assert len(calls) == int(out.nfe) == smp.nfe == 10


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("spacing", ["logsnr", "uniform"])
def test_fast_grid_budget(order, spacing):
    sch = schedules.vp_linear()
    for nfe in range(1, 13):
        grid, orders = dpm_solver_fast_grid(sch, nfe, order, spacing)
        assert sum(orders) == nfe and grid.num_steps == len(orders) and max(orders) <= order
        assert dpm_solver(sch, grid, order, orders=orders).nfe == nfe
        if spacing != "logsnr":
            fine = time_grid(sch, nfe, spacing)
            np.testing.assert_array_equal(grid.t, fine.t[np.cumsum([0] + orders)])
    if order == 3:  # Lu et al. (2022a), DPM-Solver-fast
        assert dpm_solver_fast_grid(sch, 9, 3)[1] == [3, 3, 2, 1]
        assert dpm_solver_fast_grid(sch, 11, 3)[1] == [3, 3, 3, 2]


def test_adaptive_error_shrinks_with_rtol(x64):
    sch = schedules.vp_linear()
    ref = reference("vp_linear", T_START, T_END, None, 16)
    x = start_noise(16)
    errs = []
    for rtol, atol in [(0.05, 0.0078), (0.005, 0.00078)]:
        smp = dpm_solver_adaptive(sch, order=3, rtol=rtol, atol=atol, t_start=T_START, t_end=T_END, max_steps=100)
        out = jax.jit(sample, static_argnums=(0, 1))(smp, GMM.model_fn(sch, "eps"), x)
        assert bool(out.done) and float(out.t) == T_END
        assert int(out.nfe) == 3 * int(out.i) <= smp.nfe
        errs.append(float(jnp.sqrt(jnp.mean((out.x - ref) ** 2))))
        print(f"adaptive DPM-Solver-23 rtol={rtol}: rms error {errs[-1]:.2e}, nfe {int(out.nfe)}, "
              f"rejected {int(out.rejected)}")
    assert errs[1] < errs[0] / 4


def test_adaptive_counted_calls_and_noop_after_done():
    """Real model calls counted at run time (a callback inside the jitted run, which fires only in
    the branch ``lax.cond`` takes) equal the state's nfe; a step after ``done`` calls nothing."""
    sch = schedules.vp_linear()
    # h_init = 4 is far too large: the first attempts are rejected, and still counted
    smp = dpm_solver_adaptive(sch, order=2, t_start=T_START, t_end=0.05, h_init=4.0, max_steps=40)
    calls = []

    def model(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * x

    out = jax.jit(sample, static_argnums=(0, 1))(smp, model, jnp.ones((2, 3)))
    jax.effects_barrier()
    assert bool(out.done) and float(out.t) == pytest.approx(0.05) and int(out.rejected) > 0
    assert len(calls) == int(out.nfe) == 2 * int(out.i) < smp.nfe
    again = smp.step(out, jax.random.PRNGKey(0), model)
    jax.effects_barrier()
    assert len(calls) == int(out.nfe)
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(out)))


def _grid():
    return time_grid(schedules.vp_linear(), 6, "logsnr")


def _zero_grid():
    return time_grid(schedules.vp_linear(), 6, "logsnr", final="zero")


BAD = [
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 4), "order"),
    (lambda: dpm_solver(schedules.vp_linear(), _grid(), 0), "order"),
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 2, method="adams"), "method"),
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 2, predicts="noise"), "predicts"),
    (lambda: dpm_solver(schedules.vp_linear(), np.linspace(1, 0, 5)), "grid"),
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 2, solver_type="heun"), "solver_type"),
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 3, third_order="exact"), "third_order"),
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 2, method="singlestep", stages="mid"), "stages"),
    (lambda: dpm_solver_pp(schedules.vp_linear(), _grid(), 2, orders=[2] * 6), "singlestep"),
    (lambda: dpm_solver(schedules.vp_linear(), _grid(), 3, orders=[3] * 5), "one entry per grid step"),
    (lambda: dpm_solver(schedules.vp_linear(), _grid(), 2, orders=[3] * 6), "orders"),
    (lambda: dpm_solver(schedules.vp_linear(), _grid(), 3, orders=[3, 2], stages="grid"), "sum"),
    (lambda: dpm_solver(schedules.vp_linear(), _grid(), 3, stages="grid"), "explicit orders"),
    (lambda: dpm_solver(schedules.vp_linear(), _zero_grid(), 2, orders=[2] * 6), "sigma = 0"),
    (lambda: dpm_solver(schedules.flow(), time_grid(schedules.flow(), 4, "uniform")), "lambda"),
    (lambda: dpm_solver_fast_grid(schedules.vp_linear(), 0), "nfe"),
    (lambda: dpm_solver_fast_grid(schedules.vp_linear(), 10, 4), "order"),
    (lambda: dpm_solver_fast_grid(schedules.vp_discrete(), 10, 3, "trailing"), "spacing"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), order=1), "order"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), predicts="noise"), "predicts"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), rtol=0.0), "rtol"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), atol=-1.0), "atol"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), h_init=0.0), "h_init"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), theta=1.5), "theta"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), max_steps=0), "max_steps"),
    (lambda: dpm_solver_adaptive(schedules.vp_linear(), t_start=0.1, t_end=0.5), "t_start"),
    (lambda: dpm_solver_adaptive(schedules.flow(), t_start=0.9, t_end=0.0), "lambda"),
]


@pytest.mark.parametrize("build,match", BAD, ids=[f"{i}-{m}" for i, (_, m) in enumerate(BAD)])
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()
