"""Denoising MCMC on exact, normalised Gaussian-mixture log-densities p_t: the chains'
levels follow the level weights (the exact level marginal), and after the ODE solve
from each chain's level the samples have the data's moments and mixture weights,
within 4 standard errors of independent draws (tests/mcmc_utils.py; Heun's error on
this grid is below that). Control: every moment check rejects the same samples with a 10%
variance error."""
import jax
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.mcmc.denoising_mcmc import denoising_mcmc
from tests.mcmc_utils import (GAUSS, K_SIGMA, MU, SIGMA, check_moments_and_control as check_moments, check_right_mass,
                              iid, mixture, right_mass)

run = jax.jit(sample, static_argnums=(0, 1))
B = 8192  # a 10% variance error is 6.4 standard errors: the moment checks' controls fail it
SCH = schedules.edm()
GRID = time_grid(SCH, 8, "karras", t_start=2.0, final="zero")


def check_levels(levels, weights):
    frac = np.bincount(np.asarray(levels), minlength=len(weights)) / len(levels)
    w = np.asarray(weights) / np.sum(weights)
    se = np.sqrt(w * (1 - w) / len(levels))
    assert np.all(np.abs(frac - w) <= K_SIGMA * se), f"level fractions {frac} vs weights {w}"


def test_mixture_weights_and_levels():
    gm = mixture(1.5)  # modes 6 sd apart
    smp = denoising_mcmc(SCH, GRID, 200, solver="heun")
    final = run(smp, gm.log_prob_fn(SCH), 2.0 * jax.random.normal(jax.random.PRNGKey(0), (B, 2)),
                jax.random.PRNGKey(1))
    assert int(final.nfe) == smp.nfe
    check_levels(final.level, np.ones(8))
    assert 0.5 < float(final.level_accept_sum.mean()) / 200 < 1.0  # the levels do move
    check_right_mass(iid(final.x), right_mass(gm), "denoising MCMC")
    check_moments(iid(final.x), gm.mean, gm.cov, "denoising MCMC")


def test_gaussian_with_level_weights():
    w = np.arange(1.0, 9.0)  # favour the low-noise levels
    smp = denoising_mcmc(SCH, GRID, 200, solver="heun", level_weights=w)
    final = run(smp, GAUSS.log_prob_fn(SCH), 2.0 * jax.random.normal(jax.random.PRNGKey(2), (B, 3)),
                jax.random.PRNGKey(3))
    check_levels(final.level, w)
    check_moments(iid(final.x), MU, SIGMA, "denoising MCMC")


@pytest.mark.parametrize("build,msg", [
    (lambda: denoising_mcmc(SCH, time_grid(SCH, 8), 10), "sigma = 0"),
    (lambda: denoising_mcmc(SCH, GRID, 0), "num_sweeps"),
    (lambda: denoising_mcmc(SCH, GRID, 10, step_scale=0.0), "step_scale"),
    (lambda: denoising_mcmc(SCH, GRID, 10, solver="dpm"), "solver"),
    (lambda: denoising_mcmc(SCH, GRID, 10, predicts="eps"), "logdensity"),
    (lambda: denoising_mcmc(SCH, GRID, 10, level_weights=[1.0, 2.0]), "level_weights"),
])
def test_build_errors(build, msg):
    with pytest.raises(ValueError, match=msg):
        build()
