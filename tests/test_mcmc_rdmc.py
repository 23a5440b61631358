"""Reverse diffusion Monte Carlo: samples whose moments (correlated Gaussian, d = 3) and mixture
weights (2-D mixture with modes 8 sd apart) match the target within 4 standard errors.

The B outer chains share nothing (each carries its own inner particles), so their
outputs are B independent draws: they are checked as one chain of B draws
(``tests.mcmc_utils.iid``, ESS ~ B, see tests/mcmc_utils.py). Before the final draw
the chains are samples of p_{t_end}, the law of e^{-t_end} x_0 + sqrt(1 - e^{-2 t_end}) z.

Budget (30 outer steps, 8 particles, 2 MALA + 1 global move a step, 808 gradient
evaluations a chain): measured with 8192 chains, its errors are +0.3% to +2.4% on the
variances and -0.005 on the mixture weight (0.695 for 0.7), against 4 standard errors
of 6.3% and 0.020 here (8192 chains); the ULA/score run (8 ULA moves) +0.4% to +0.9%.
Control: every moment check rejects the same draws with a 10% variance error, and the t_end check
rejects the sampler itself with a 10% noise-variance error (either way) in its reverse-SDE step.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.mcmc.rdmc import ou_grid, ou_times, rdmc, systematic_resample
from tests.mcmc_utils import (MU, PREC, SIGMA, check_moments as plain_check_moments,
                              check_moments_and_control as check_moments, check_right_mass,
                              gauss_logdensity, gauss_score, iid, mixture, mixture_logdensity, right_mass)

run = jax.jit(sample, static_argnums=(0, 1, 4))
N = 8192  # a 10% variance error is 6.4 standard errors: the moment checks' controls fail it
T_END = 1e-2
ALPHA, SIG2 = np.exp(-T_END), -np.expm1(-2 * T_END)
LIP = float(np.linalg.eigvalsh(PREC).max())  # curvature bound of -log p for the inner step size
STEPS, PARTICLES, MOVES = 30, 8, 2  # measured margins: see the module docstring


def test_rdmc_gaussian_moments_and_nfe():
    n, k, steps, factor = PARTICLES, MOVES, STEPS, 8
    smp = rdmc(steps, t_end=T_END, num_particles=n, inner_steps=k, smoothness=LIP)
    assert smp.num_steps == steps + 1  # the final draw
    final, xs = run(smp, gauss_logdensity, jax.random.normal(jax.random.PRNGKey(0), (N, 3)), jax.random.PRNGKey(1),
                    lambda s: s.x)
    # init: n x init_factor candidates; every step: one global move + k MALA moves of n particles
    assert int(final.nfe) == smp.nfe == n * factor + (steps + 1) * n * (1 + k)
    check_moments(iid(xs[-2]), ALPHA * MU, ALPHA**2 * SIGMA + SIG2 * np.eye(3), "rdmc at t_end")
    check_moments(iid(final.x), MU, SIGMA, "rdmc final draw")
    assert 0.6 < float(final.accept.mean()) < 0.99


@pytest.mark.parametrize("factor", [1.0, 0.9, 1.1])
def test_rdmc_noise_variance_control(factor, monkeypatch):
    """Control on the sampler itself: the reverse-SDE step's noise with a 10% variance error either way
    (its g times sqrt(factor)) fails the first test's check at t_end, which the exact step (factor 1)
    passes. 2N chains: at N the 0.9 control is 3.7-6.9 standard errors off over three seeds, at 2N
    about 1.4 times that."""
    mod = importlib.import_module("samplers.mcmc.rdmc")
    coefficients = mod.sde_dpm_coefficients

    def wrong(*args, **kwargs):
        a, b, g = coefficients(*args, **kwargs)
        return a, b, np.sqrt(factor) * g

    monkeypatch.setattr(mod, "sde_dpm_coefficients", wrong)
    smp = rdmc(STEPS, t_end=T_END, num_particles=PARTICLES, inner_steps=MOVES, smoothness=LIP)
    _, xs = run(smp, gauss_logdensity, jax.random.normal(jax.random.PRNGKey(6), (2 * N, 3)), jax.random.PRNGKey(7),
                lambda s: s.x)
    check = lambda: plain_check_moments(iid(xs[-2]), ALPHA * MU, ALPHA**2 * SIGMA + SIG2 * np.eye(3), "rdmc at t_end")
    if factor == 1.0:
        check()
    else:
        with pytest.raises(AssertionError, match="covariance"):
            check()


def test_rdmc_score_target_ula():
    # ULA's bias (step_scale 0.25 by default) enters the reweighting: more, smaller inner steps
    smp = rdmc(STEPS, t_end=T_END, num_particles=PARTICLES, inner_steps=8, smoothness=LIP, target="score")
    final = run(smp, gauss_score, jax.random.normal(jax.random.PRNGKey(2), (N, 3)), jax.random.PRNGKey(3))
    # no global moves and init_factor 1 for a score
    assert int(final.nfe) == smp.nfe == PARTICLES + (STEPS + 1) * PARTICLES * 8
    check_moments(iid(final.x), MU, SIGMA, "rdmc score/ULA")


def test_rdmc_mixture_weights():
    gm = mixture(2.0)  # modes at (+-2, 0), sd 0.5: 8 sd apart, weights 0.3 / 0.7
    smp = rdmc(STEPS, t_end=T_END, num_particles=PARTICLES, inner_steps=MOVES, smoothness=4.0)
    final = run(smp, mixture_logdensity(gm), jax.random.normal(jax.random.PRNGKey(4), (N, 2)), jax.random.PRNGKey(5))
    exact = right_mass(gm)
    assert abs(exact - 0.5) > 10 * np.sqrt(0.25 / N)  # a 50/50 split would fail the check
    check_right_mass(iid(final.x), exact, "rdmc")
    assert 0.0 < float(final.jump_accept.mean()) < 1.0


def test_chains_are_independent():
    # what the ESS = N of the checks above rests on: a chain's output depends on its own start only
    smp = rdmc(5, num_particles=4, inner_steps=1)
    fn = jax.jit(lambda x: sample(smp, gauss_logdensity, x, jax.random.PRNGKey(1)).x)
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    a, b = fn(x), fn(x.at[1:].set(5.0))
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert np.all(np.asarray(a[1:]) != np.asarray(b[1:]))


def test_ou_grid_and_resampling(x64):
    ts = ou_times(4.0, 0.01, 10)
    np.testing.assert_allclose(ts[[0, -1]], [4.0, 0.01], rtol=1e-12)
    grid = ou_grid(ts)
    np.testing.assert_allclose(np.diff(grid.lam), np.diff(grid.lam)[0], rtol=1e-9)  # uniform in lambda
    np.testing.assert_allclose(grid.alpha**2 + grid.sigma**2, 1.0, rtol=1e-12)
    # systematic resampling keeps floor(n w_j) or ceil(n w_j) copies of particle j
    w = np.array([[0.5, 0.25, 0.125, 0.125], [0.0, 0.0, 1.0, 0.0]])
    with np.errstate(divide="ignore"):
        idx = np.asarray(systematic_resample(jax.random.PRNGKey(0), jnp.log(jnp.asarray(w)), 8))
    counts = np.stack([np.bincount(r, minlength=4) for r in idx])
    np.testing.assert_array_equal(counts, np.array([[4, 2, 1, 1], [0, 0, 8, 0]]))


@pytest.mark.parametrize("kw,msg", [
    (dict(num_steps=0), "num_steps"),
    (dict(horizon=0.0), "horizon"),
    (dict(t_end=5.0), "t_end"),
    (dict(num_particles=0), "num_particles"),
    (dict(inner_steps=0), "inner_steps"),
    (dict(global_moves=-1), "global_moves"),
    (dict(init_factor=0), "init_factor"),
    (dict(inner="hmc"), "inner"),
    (dict(step_scale=0.0), "step_scale"),
    (dict(smoothness=-1.0), "smoothness"),
    (dict(init_scale=0.0), "init_scale"),
    (dict(resample_threshold=1.5), "resample_threshold"),
    (dict(order=3), "order"),
    (dict(target="density"), "target"),
    (dict(target="score", inner="mala"), "logdensity"),
    (dict(target="score", global_moves=1), "logdensity"),
])
def test_build_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        rdmc(**{"num_steps": 10, **kw})
