"""Annealed Langevin and the chain of log-concave Markov chains on exact Gaussian-mixture
models: independent samples whose moments and mixture weights match the exact law of
what each method returns, within 4 standard errors (ESS of iid draws = N; see
tests/mcmc_utils.py). Control: every moment check rejects the same draws with a 10% variance error; the samplers
themselves with a 10% error in their Langevin noise variance fail the same checks (the two
``*_control`` tests).

* annealed Langevin returns samples of p_{t_end} (the mixture with alpha mu_k and
  alpha^2 Sigma_k + sigma^2 I); with ``denoise_final`` E[x0 | x_{t_end}], which for a
  Gaussian N(mu, Sigma) at alpha = 1 is N(mu, Sigma (Sigma + s^2 I)^{-1} Sigma).
* the log-concave chain: the mean of the m measurements ybar = x + (sigma / sqrt(m)) eps
  has exactly that law; its jump E[x | ybar] the denoised law above.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.mcmc.annealed import annealed_langevin
from samplers.mcmc.logconcave_chain import logconcave_chain
from tests.mcmc_utils import (GAUSS, MU, SIGMA, check_moments as plain_check_moments,
                              check_moments_and_control as check_moments, check_right_mass, iid,
                              mixture, noisy, right_mass)

run = jax.jit(sample, static_argnums=(0, 1, 4))
N = 8192  # a 10% variance error is 6.4 standard errors (sqrt(2 / N) = 1.6%): the controls fail it
MIX = mixture(1.5)  # modes 6 sd apart


def denoised_gaussian_cov(s2: float) -> np.ndarray:
    return SIGMA @ np.linalg.solve(SIGMA + s2 * np.eye(3), SIGMA)


def test_annealed_langevin_gaussian_and_denoised():
    sch = schedules.edm()
    grid = time_grid(sch, 11, "logsnr", t_start=20.0, t_end=0.1)
    smp = annealed_langevin(sch, grid, 40, 0.5, predicts="x0", denoise_final=True)
    x0 = 20.0 * jax.random.normal(jax.random.PRNGKey(0), (N, 3))
    final, xs = run(smp, GAUSS.model_fn(sch, "x0"), x0, jax.random.PRNGKey(1), lambda s: s.x)
    assert int(final.nfe) == smp.nfe == 12 * 40 + 1
    check_moments(iid(xs[-2]), MU, SIGMA + 0.01 * np.eye(3), "annealed Langevin")
    check_moments(iid(xs[-1]), MU, denoised_gaussian_cov(0.01), "annealed Langevin + Tweedie")


@pytest.mark.parametrize("predicts", ["eps", "logdensity"])
def test_annealed_langevin_mixture_vp(predicts):
    sch = schedules.vp_linear()
    t_end = float(sch.t_from_lambda(np.log(10.0)))  # sigma / alpha = 0.1
    grid = time_grid(sch, 11, "logsnr", t_start=1.0, t_end=t_end)
    model = MIX.model_fn(sch, "eps") if predicts == "eps" else MIX.log_prob_fn(sch)
    x = run(annealed_langevin(sch, grid, 40, 0.5, predicts=predicts), model,
            jax.random.normal(jax.random.PRNGKey(0), (N, 2)), jax.random.PRNGKey(2)).x
    a, s = grid.alpha[-1], grid.sigma[-1]
    law = noisy(MIX, a, s)
    check_right_mass(iid(x), right_mass(MIX, a, s), "annealed Langevin")
    check_moments(iid(x), law.mean, law.cov, "annealed Langevin")


def test_logconcave_chain_gaussian():
    sigma, m = 2.0, 4
    sch = schedules.edm()
    smp = logconcave_chain(sch, sigma, m, 100, step_scale=0.02, predicts="x0")
    assert smp.nfe == m * 101
    x0 = jnp.asarray(MU) + sigma * jax.random.normal(jax.random.PRNGKey(0), (N, 3))
    final = run(smp, GAUSS.model_fn(sch, "x0"), x0, jax.random.PRNGKey(3))
    assert int(final.nfe) == smp.nfe
    s2 = sigma**2 / m
    check_moments(iid(final.ysum / m), MU, SIGMA + s2 * np.eye(3), "log-concave chain: ybar")
    check_moments(iid(final.x), MU, denoised_gaussian_cov(s2), "log-concave chain: jump")


def test_logconcave_chain_mixture_vp():
    sigma, m = 2.0, 4
    sch = schedules.vp_linear()
    smp = logconcave_chain(sch, sigma, m, 100, step_scale=0.02, predicts="eps")
    x0 = jnp.asarray(MIX.mean) + sigma * jax.random.normal(jax.random.PRNGKey(0), (N, 2))
    final = run(smp, MIX.model_fn(sch, "eps"), x0, jax.random.PRNGKey(4))
    s = sigma / np.sqrt(m)
    law = noisy(MIX, 1.0, s)
    ybar = iid(final.ysum / m)
    check_right_mass(ybar, right_mass(MIX, 1.0, s), "log-concave chain: ybar")
    check_moments(ybar, law.mean, law.cov, "log-concave chain: ybar")
    # The jump E[x | ybar] of this mixture depends on ybar_1 alone and increases with it (its
    # derivative is Cov(x | ybar) / s^2), so P(jump_1 > 0) = P(ybar_1 > c) with E[x_1 | ybar_1 = c] = 0.
    jump_1 = lambda c: float(MIX.denoise(jnp.array([[c, 0.0]]), 1.0, s)[0][0, 0])
    lo, hi = -3.0, 3.0
    for _ in range(60):
        lo, hi = ((lo + hi) / 2, hi) if jump_1((lo + hi) / 2) < 0 else (lo, (lo + hi) / 2)
    check_right_mass(iid(final.x), right_mass(MIX, 1.0, s, threshold=(lo + hi) / 2), "log-concave chain: jump")


@pytest.mark.parametrize("build,msg", [
    (lambda: annealed_langevin(schedules.edm(), time_grid(schedules.edm(), 4, final="zero"), 5, 0.5), "sigma > 0"),
    (lambda: annealed_langevin(schedules.edm(), time_grid(schedules.edm(), 4), 0, 0.5), "steps_per_level"),
    (lambda: annealed_langevin(schedules.edm(), time_grid(schedules.edm(), 4), 5, -0.5), "step_scale"),
    (lambda: annealed_langevin(schedules.edm(), time_grid(schedules.edm(), 4), 5, 0.5, predicts="noise"), "predicts"),
    (lambda: annealed_langevin(schedules.edm(), [80.0, 1.0], 5, 0.5), "TimeGrid"),
    (lambda: logconcave_chain(schedules.edm(), 0.0, 4, 10), "sigma"),
    (lambda: logconcave_chain(schedules.edm(), 200.0, 4, 10), "noise levels"),
    (lambda: logconcave_chain(schedules.edm(), 2.0, 0, 10), "num_measurements"),
    (lambda: logconcave_chain(schedules.edm(), 2.0, 4, 0), "steps_per_measurement"),
])
def test_build_errors(build, msg):
    with pytest.raises(ValueError, match=msg):
        build()


def test_annealed_langevin_noise_variance_control(monkeypatch):
    """Control on the sampler itself: annealed Langevin whose Langevin noise has 10% more variance
    (every normal draw of its step times sqrt(1.1)) fails the first test's check at the last level."""
    sch = schedules.edm()
    grid = time_grid(sch, 11, "logsnr", t_start=20.0, t_end=0.1)
    x0 = 20.0 * jax.random.normal(jax.random.PRNGKey(0), (N, 3))
    normal = jax.random.normal
    monkeypatch.setattr(jax.random, "normal", lambda *a, **k: np.sqrt(1.1).astype(np.float32) * normal(*a, **k))
    smp = annealed_langevin(sch, grid, 40, 0.5, predicts="x0")
    x = run(smp, GAUSS.model_fn(sch, "x0"), x0, jax.random.PRNGKey(1)).x
    with pytest.raises(AssertionError, match="covariance"):
        check_moments(iid(x), MU, SIGMA + 0.01 * np.eye(3), "annealed Langevin, noise variance x 1.1")


@pytest.mark.parametrize("factor", [1.0, 0.9, 1.1])
def test_logconcave_chain_walk_noise_control(factor, monkeypatch):
    """Control on the sampler itself: the walks' Langevin noise with a 10% variance error either way
    (factor 0.9 / 1.1) fails the ybar check that the exact walk (factor 1) passes. The data are narrow
    (covariance 0.05 SIGMA), so ybar's covariance 0.05 SIGMA + (sigma^2 / m) I is mostly the walks' noise."""
    lc = importlib.import_module("samplers.mcmc.logconcave_chain")
    proposal = lc.langevin_proposal
    monkeypatch.setattr(lc, "langevin_proposal", lambda x, g, h, z: proposal(x, g, h, np.sqrt(factor) * z))
    sigma, m = 2.0, 4
    sch = schedules.edm()
    narrow = GaussianMixture([1.0], MU[None], 0.05 * SIGMA[None])
    x0 = jnp.asarray(MU) + sigma * jax.random.normal(jax.random.PRNGKey(0), (N, 3))
    final = run(logconcave_chain(sch, sigma, m, 100, step_scale=0.02, predicts="x0"), narrow.model_fn(sch, "x0"), x0,
                jax.random.PRNGKey(5))
    check = lambda: plain_check_moments(iid(final.ysum / m), MU, 0.05 * SIGMA + sigma**2 / m * np.eye(3), "ybar")
    if factor == 1.0:
        check()
    else:
        with pytest.raises(AssertionError, match="covariance"):
            check()
