"""Per-step solver choices (samplers/ode/usf.py, USF-style): order, prediction type and corrector per step,
compiled into one ``linear_multistep`` recurrence. Its search with the grid is tested in
test_fastode_learnt_grid.py (variant "usf")."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import random_mixture
from samplers import registry
from samplers.core import sample
from samplers.ode.common import predictor
from samplers.ode.exponential import exp_coefs
from samplers.ode.unipc import bh_rhos, unipc
from samplers.ode.usf import default_choices, usf, usf_tables
from samplers.grids import time_grid
from samplers.schedules import ddpm_betas, get_schedule, vp_discrete

SCH = vp_discrete(ddpm_betas())
GMM = random_mixture(dim=8, num_components=4, seed=0)


def _x(n=16):
    return jax.random.normal(jax.random.PRNGKey(0), (n, 8), jnp.float64)


@pytest.mark.parametrize("nfe", [5, 10])
def test_reduces_to_unipc(x64, nfe):
    """All data (or all noise) prediction with UniPC's orders is UniPC (UniP without the corrector)."""
    mf, x = GMM.model_fn(SCH, "eps"), _x()
    grid = registry.grid("unipc", SCH, nfe)
    for order in (2, 3):
        orders, no_eps, corr = default_choices(grid, order)
        for predict_x0 in (True, False):
            eps = no_eps if predict_x0 else ~no_eps
            for corrector in (True, False):
                want = sample(unipc(SCH, grid, order=order, predict_x0=predict_x0, corrector=corrector), mf, x).x
                got = sample(usf(SCH, grid, orders=orders, eps=eps, corrected=corr & corrector), mf, x).x
                np.testing.assert_allclose(got, want, atol=1e-11, err_msg=str((order, predict_x0, corrector)))


def test_reduces_to_unipc_from_alpha_zero(x64):
    """On a flow grid from alpha = 0 (lambda = -inf) UniPC leaves the first step uncorrected; so do the defaults."""
    sch = get_schedule("flow")
    grid, gmm = time_grid(sch, 6, "uniform"), random_mixture(dim=4, num_components=3, seed=0)
    mf, x = gmm.model_fn(sch, "velocity"), jax.random.normal(jax.random.PRNGKey(0), (8, 4), jnp.float64)
    want = sample(unipc(sch, grid, "velocity"), mf, x).x
    np.testing.assert_allclose(sample(usf(sch, grid, "velocity"), mf, x).x, want, atol=1e-11)
    orders, eps, corrected = default_choices(grid)
    assert not corrected[0]  # CONTROL: correcting that step too is another solver
    other = sample(usf(sch, grid, "velocity", corrected=corrected | (np.arange(6) == 0)), mf, x).x
    assert float(jnp.max(jnp.abs(other - want))) > 1e-3


def _eager(grid, x0_fn, x, orders, eps, corrected):
    """The per-step solver as written: UniP-p_i from the base point in space T_i, then UniC-p_i with the
    next output where corrected (no tables, no basis)."""
    pts = [(grid.alpha[j], grid.sigma[j], grid.lam[j]) for j in range(grid.num_steps + 1)]
    xs, ms = [], []

    def out(j, space):
        return ms[j] if space == "x0" else (xs[j] - grid.alpha[j] * ms[j]) / grid.sigma[j]

    def update(base, s, t, p, space, corrector):
        a, (c0,) = exp_coefs(space, pts[s], pts[t])
        y = a * base + c0 * out(s, space)
        past = [s - k for k in range(1, p)]
        if past or corrector:
            b_h, rho, r = bh_rhos(grid, s, t, past, corrector, space == "x0", "bh2")
            scale = grid.alpha[t] if space == "x0" else grid.sigma[t]
            nodes = past + ([t] if corrector else [])
            y = y - scale * b_h * sum(rk * (out(j, space) - out(s, space)) / q for rk, q, j in zip(rho, r, nodes))
        return y

    x_eval = base = x
    for i in range(grid.num_steps):
        xs.append(x_eval)
        ms.append(x0_fn(x_eval, jnp.float64(grid.t[i])))
        if i and corrected[i - 1]:
            base = update(base, i - 1, i, orders[i - 1], "eps" if eps[i - 1] else "x0", True)
        elif i:
            base = x_eval
        x_eval = update(base, i, i + 1, orders[i], "eps" if eps[i] else "x0", False)
    return x_eval


def test_mixed_choices_match_the_step_by_step_solver(x64):
    mf, x = GMM.model_fn(SCH, "eps"), _x()
    x0_fn = predictor(SCH, "eps", "x0")(mf)
    grid = registry.grid("unipc", SCH, 7)
    orders = np.array([1, 2, 3, 1, 3, 2, 1])
    eps = np.array([1, 0, 1, 1, 0, 1, 1], bool)
    corrected = np.array([1, 1, 0, 1, 0, 1, 0], bool)
    want = _eager(grid, x0_fn, x, orders, eps, corrected)
    got = sample(usf(SCH, grid, orders=orders, eps=eps, corrected=corrected), mf, x).x
    np.testing.assert_allclose(got, want, atol=1e-11)
    # CONTROL: one step's prediction type flipped, or one corrector dropped, is rejected by the same check
    for flip in (dict(eps=eps ^ (np.arange(7) == 3)), dict(corrected=corrected & (np.arange(7) != 1))):
        other = sample(usf(SCH, grid, **{"orders": orders, "eps": eps, "corrected": corrected, **flip}), mf, x).x
        assert float(jnp.max(jnp.abs(other - want))) > 1e-3, flip
    A, B = usf_tables(grid, orders, eps, corrected)
    assert A.shape == (7,) and B.shape == (7, 7) and np.all(B[np.triu_indices(7, 1)] == 0)  # causal


def test_bad_choices():
    grid = registry.grid("unipc", SCH, 5)
    orders, eps, corr = default_choices(grid)
    with pytest.raises(ValueError, match="orders must have one entry per step"):
        usf_tables(grid, orders[:4], eps, corr)
    with pytest.raises(ValueError, match=r"orders must be integers in 1..min\(3, i \+ 1\)"):
        usf_tables(grid, np.array([2, 2, 2, 2, 1]), eps, corr)
    with pytest.raises(ValueError, match=r"orders\[-1\] must be 1"):
        usf_tables(grid, np.array([1, 2, 2, 2, 2]), eps, corr)
    with pytest.raises(ValueError, match="corrected"):
        usf_tables(grid, orders, eps, np.ones(5, bool))
    with pytest.raises(ValueError, match="booleans"):
        usf_tables(grid, orders, np.full(5, 2), corr)
    flow = time_grid(get_schedule("flow"), 5, "uniform")
    with pytest.raises(ValueError, match=r"eps\[0\] must be False"):
        usf_tables(flow, orders, np.ones(5, bool), corr)
