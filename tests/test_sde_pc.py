"""Predictor-corrector sampling (Song et al. 2021): exact mixture moments in the many-step
limit with both predictors, zero corrector steps is the predictor, exact NFE, errors."""
import jax
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.sde.ancestral import ddpm
from samplers.sde.pc import predictor_corrector, reverse_diffusion
from tests.test_sde_moments import GMM, assert_matches_mixture, run_from_marginal


@pytest.mark.parametrize("schedule,spacing,final,steps,predictor,n_corrector", [
    ("ve", "uniform", None, 200, "reverse_diffusion", 1),  # Song et al.'s VE setting (snr 0.16)
    ("vp_linear", "logsnr", "zero", 120, "ancestral", 2),
])
def test_pc_matches_mixture(schedule, spacing, final, steps, predictor, n_corrector):
    sch = schedules.get_schedule(schedule)
    grid = time_grid(sch, steps, spacing, final=final)
    smp = predictor_corrector(sch, grid, predictor=predictor, snr=0.16, n_corrector=n_corrector)
    out = run_from_marginal(smp, sch, grid)
    assert int(out.nfe) == smp.nfe == steps * (n_corrector + 1)
    assert_matches_mixture(out.x)


def test_zero_corrector_steps_is_predictor():
    sch = schedules.vp_linear()
    grid = time_grid(sch, 10, "logsnr", final="zero")
    fn = GMM.model_fn(sch, "eps")
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 2))
    key = jax.random.PRNGKey(5)
    for name, base in [("ancestral", ddpm(sch, grid)), ("reverse_diffusion", reverse_diffusion(sch, grid))]:
        pc = predictor_corrector(sch, grid, predictor=name, n_corrector=0)
        a, b = sample(pc, fn, x, key), sample(base, fn, x, key)
        assert pc.nfe == int(a.nfe) == 10
        np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(snr=0.0), "snr"), (dict(snr=float("inf")), "snr"), (dict(n_corrector=-1), "n_corrector"),
    (dict(n_corrector=1.5), "n_corrector"), (dict(predictor="euler"), "predictor"),
])
def test_errors(kwargs, match):
    sch = schedules.ve()
    with pytest.raises(ValueError, match=match):
        predictor_corrector(sch, time_grid(sch, 8, "uniform"), **kwargs)
