"""Heavy-ball (HB) and generalised heavy-ball (GHVB) momentum (Wizadwongsa et al. 2023):
GHVB weights against the reference code's closed forms, beta = 1 is the base solver, and the
measured orders: GHVB keeps its order, HB is first order."""
import jax
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.ode.dpm_solver import dpm_solver_pp
from samplers.sde.momentum import dpm_solver_pp_hb, ghvb_weights, plms_momentum
from tests.ode_utils import convergence, fitted_order
from tests.test_sde_moments import GMM


def reference_weights(order, b):
    """The reference implementation's AdamBmixer weights (sWizad/momentum-diffusion), divided by b."""
    rows = {1: [b], 2: [2 + b, -(2 - b)], 3: [18 + 5 * b, -(24 - 8 * b), 6 - b],
            4: [46 + 9 * b, -(78 - 19 * b), 42 - 5 * b, -(10 - b)],
            5: [1650 + 251 * b, -(3420 - 646 * b), 2880 - 264 * b, -(1380 - 106 * b), 270 - 19 * b]}
    denom = {1: 1, 2: 2, 3: 12, 4: 24, 5: 720}
    return np.array(rows[order], float) / denom[order] / b


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("beta", [1.0, 0.7, 0.25])
def test_ghvb_weights(order, beta):
    np.testing.assert_allclose(ghvb_weights(order, beta), reference_weights(order, beta), rtol=1e-12, atol=1e-12)


def _run(smp, sch, x):
    return jax.jit(sample, static_argnums=(0, 1))(smp, GMM.model_fn(sch, "eps"), x)


def test_beta_one_is_base_solver():
    sch = schedules.vp_linear()
    grid = time_grid(sch, 12, "logsnr", final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    pairs = [
        (ddim(sch, grid), plms_momentum(sch, grid, order=1, beta=1.0, method="ghvb")),
        (ddim(sch, grid), plms_momentum(sch, grid, order=1, beta=1.0, method="hb")),
        (dpm_solver_pp(sch, grid, order=2), dpm_solver_pp_hb(sch, grid, order=2, beta=1.0)),
        (plms_momentum(sch, grid, order=3, beta=1.0, method="ghvb"), plms_momentum(sch, grid, order=3, beta=1.0,
                                                                                    method="hb")),
    ]
    for base, mom in pairs:
        a, b = _run(base, sch, x), _run(mom, sch, x)
        assert mom.nfe == int(b.nfe) == int(a.nfe) == 12
        np.testing.assert_allclose(np.asarray(b.x), np.asarray(a.x), rtol=0, atol=2e-5)


CASES = [
    # (name, builder, expected order, schedule, steps, spacing, t_start, t_end); PLMS weights assume uniform steps in s
    ("ghvb_2_0.8", lambda s, g, p: plms_momentum(s, g, p, order=2, beta=0.8), 2, "edm", "uniform", 5.0, 0.5),
    ("ghvb_3_0.8", lambda s, g, p: plms_momentum(s, g, p, order=3, beta=0.8), 3, "edm", "uniform", 5.0, 0.5),
    ("hb_dpm_solver_pp_2m_0.8", lambda s, g, p: dpm_solver_pp_hb(s, g, p, beta=0.8), 1, "vp_linear", "logsnr", None,
     None),
]


@pytest.mark.parametrize("name,build,order,schedule,spacing,t_start,t_end", CASES, ids=[c[0] for c in CASES])
def test_convergence_order(x64, name, build, order, schedule, spacing, t_start, t_end):
    nfes, errs = convergence(build, schedule, [20, 40, 80], spacing=spacing, t_start=t_start, t_end=t_end)
    slope = fitted_order(nfes, errs)
    assert abs(slope - order) < 0.35, f"{name}: fitted order {slope:.2f} (errors {errs}) vs {order}"


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=0.0), "beta"), (dict(beta=1.5), "beta"), (dict(order=6), "order"), (dict(method="nesterov"), "method"),
])
def test_errors(kwargs, match):
    sch = schedules.vp_linear()
    with pytest.raises(ValueError, match=match):
        plms_momentum(sch, time_grid(sch, 8), **kwargs)
    if "method" not in kwargs and kwargs.get("order", 2) <= 3:
        with pytest.raises(ValueError, match=match):
            dpm_solver_pp_hb(sch, time_grid(sch, 8), **kwargs)
