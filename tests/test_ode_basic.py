"""Convergence order of DDIM, Euler, Heun and the Runge-Kutta tableaux on a Gaussian mixture."""
import pytest

from samplers.ode.ddim import ddim
from samplers.ode.rk import euler, heun, rk
from tests.ode_utils import convergence, fitted_order

CASES = [
    ("ddim", ddim, 1, "vp_linear", [64, 128, 256], "logsnr", "eps"),
    ("euler", euler, 1, "edm", [64, 128, 256], "karras", "x0"),
    ("heun", heun, 2, "edm", [16, 32, 64], "karras", "x0"),
    ("rk_midpoint", lambda s, g, p: rk(s, g, p, "midpoint"), 2, "flow", [16, 32, 64], "uniform", "velocity"),
    ("rk_rk4", lambda s, g, p: rk(s, g, p, "rk4"), 4, "flow", [32, 64, 128], "uniform", "velocity"),
]


@pytest.mark.parametrize("name,build,order,schedule,steps,spacing,predicts", CASES, ids=[c[0] for c in CASES])
def test_convergence_order(x64, name, build, order, schedule, steps, spacing, predicts):
    nfes, errs = convergence(build, schedule, steps, predicts=predicts, spacing=spacing)
    slope = fitted_order(nfes, errs)
    assert abs(slope - order) < 0.3, f"{name}: fitted order {slope:.2f} (errors {errs}) vs {order}"
