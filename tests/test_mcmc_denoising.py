"""Denoising MCMC on exact, normalised Gaussian-mixture log-densities p_t: the chains'
levels follow the level weights (the exact level marginal), and after the ODE solve
from each chain's level the samples have the data's moments and mixture weights,
within 4 standard errors of independent draws (tests/mcmc_utils.py; Heun's error on
this grid is below that). Control: every moment check rejects the same samples with a 10%
variance error, and the MCMC phase's level-0 check rejects the sampler itself when its levels carry a
10% noise-variance error (either way)."""
import importlib

import jax
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.mcmc.denoising_mcmc import denoising_mcmc
from tests.mcmc_utils import (GAUSS, K_SIGMA, MU, SIGMA, check_moments as plain_check_moments,
                              check_moments_and_control as check_moments, check_right_mass,
                              iid, mixture, right_mass)

run = jax.jit(sample, static_argnums=(0, 1, 4))
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


@pytest.mark.parametrize("factor", [1.0, 0.9, 1.1])
def test_mcmc_phase_law_and_level_noise_control(factor, monkeypatch):
    """After the sweeps, the chains at level 0 (sigma 2; level weights 4^-j put 3/4 of them there) are
    draws of p_{t_0} = N(MU, SIGMA + 4 I). Control on the sampler: its MCMC phase targeting levels
    with a 10% noise-variance error either way (sigma_j^2 times factor) fails the same check."""
    mod = importlib.import_module("samplers.mcmc.denoising_mcmc")
    value_and_grad = mod.per_chain_value_and_grad
    monkeypatch.setattr(mod, "per_chain_value_and_grad", lambda f, x, t: value_and_grad(f, x, np.sqrt(factor) * t))
    sweeps, b = 200, 2 * B
    smp = denoising_mcmc(SCH, GRID, sweeps, solver="heun", level_weights=4.0 ** -np.arange(8))
    _, (xs, levels) = run(smp, GAUSS.log_prob_fn(SCH), 2.0 * jax.random.normal(jax.random.PRNGKey(4), (b, 3)),
                          jax.random.PRNGKey(5), lambda s: (s.x, s.level))
    top = np.asarray(levels[sweeps - 1]) == 0
    assert top.sum() > b // 2
    x = iid(np.asarray(xs[sweeps - 1])[top])
    cov = SIGMA + float(GRID.sigma[0]) ** 2 * np.eye(3)
    if factor == 1.0:
        plain_check_moments(x, MU, cov, "denoising MCMC, level 0")
    else:
        with pytest.raises(AssertionError, match="covariance"):
            plain_check_moments(x, MU, cov, "denoising MCMC, level 0")


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
