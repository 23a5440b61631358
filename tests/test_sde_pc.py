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


@pytest.mark.parametrize("factor", [2.0, 0.0, 1.0, 4.0])
def test_corrector_step_size_by_hand(x64, factor):
    """One PC step against Song et al.'s Alg. 5 by hand: z from the first of split(key, 2), then
    x <- x + e g + sqrt(2 e) z with e = 2 a (snr ||z|| / ||g||)^2, then the DDPM step with the
    second key. The moment tests cannot see the factor 2 (at snr 0.16 the corrector barely moves
    the law, and any factor > 0 is a Langevin step), so this is where it is checked; the controls
    (factors 0, 1, 4 in the hand computation) must disagree with the sampler."""
    sch, snr = schedules.vp_linear(), 0.16
    grid = time_grid(sch, 4, "logsnr", final="zero")
    fn = GMM.model_fn(sch, "eps")
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 2), np.float64)
    key = jax.random.PRNGKey(5)
    pc = predictor_corrector(sch, grid, snr=snr, n_corrector=1)
    ours = np.asarray(pc.step(pc.init(x), key, fn).x)
    k_corrector, k_predictor = jax.random.split(key)
    z = np.asarray(jax.random.normal(k_corrector, x.shape, np.float64))
    g = -np.asarray(fn(x, grid.t[0])) / grid.sigma[0]  # score = -eps / sigma
    norm = lambda v: np.mean(np.sqrt(np.sum(v**2, axis=1)))
    e = factor * (grid.alpha[0] / grid.alpha[1]) ** 2 * (snr * norm(z) / norm(g)) ** 2
    base = ddpm(sch, grid)
    by_hand = np.asarray(base.step(base.init(x + e * g + np.sqrt(2 * e) * z), k_predictor, fn).x)
    agree = np.allclose(ours, by_hand, rtol=1e-10, atol=1e-12)
    assert agree == (factor == 2.0), f"factor {factor}: max |ours - by hand| = {np.abs(ours - by_hand).max():.2e}"
