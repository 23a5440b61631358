"""HMC and dual-averaging step-size adaptation: moments and mixture weights within 4
ESS-based standard errors (tests/mcmc_utils.py), parity with blackjax's HMC, the
log-acceptance ratio of one proposal by hand, acceptance driven to its target."""
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.diagnostics import acceptance_rate
from samplers.mcmc.adaptation import adapt_step_size
from samplers.mcmc.hmc import hmc
from samplers.mcmc.langevin import mala, ula
from tests.mcmc_utils import (MU, PREC, SIGMA, check_moments, check_right_mass, gauss_logdensity, mixture,
                              mixture_logdensity, right_mass)
from tests.test_mcmc_langevin import _combined_check, blackjax_chains

run = jax.jit(sample, static_argnums=(0, 1, 4))
adapt = jax.jit(adapt_step_size, static_argnums=(0, 1, 4, 5))
BIMODAL = mixture(1.0)


def chains(sampler, model_fn, x0, seed=0, burn=300):
    final, (xs, la) = run(sampler, model_fn, x0, jax.random.PRNGKey(seed), lambda s: (s.x, s.log_accept))
    assert int(final.nfe) == sampler.nfe
    return np.asarray(xs)[burn:], np.asarray(la)[burn:]


def test_hmc_gaussian_and_mixture():
    xs, la = chains(hmc(0.3, 5, 1000, inverse_mass=[1.0, 1.0, 0.5]), gauss_logdensity, jnp.zeros((32, 3)))
    check_moments(xs, MU, SIGMA, "hmc")
    assert acceptance_rate(la) > 0.8
    x0 = jnp.tile(jnp.array([[-1.0, 0.0]]), (64, 1))
    xs, _ = chains(hmc(0.25, 8, 1500), mixture_logdensity(BIMODAL), x0, burn=500)
    check_right_mass(xs, right_mass(BIMODAL), "hmc")


def test_hmc_matches_blackjax():
    h, num_lf, steps, burn = 0.45, 6, 800, 200
    x0 = jnp.zeros((32, 3))
    xs, la = chains(hmc(h, num_lf, steps), gauss_logdensity, x0, seed=1, burn=burn)
    kernel = blackjax.hmc(lambda x: gauss_logdensity(x[None])[0], h, jnp.ones(3), num_lf)
    bx, bacc = blackjax_chains(kernel, x0, steps, 2)
    bx, bacc = bx[burn:], bacc[burn:]
    ours_acc = np.exp(np.minimum(la, 0.0))
    assert 0.4 < ours_acc.mean() < 0.9  # a step size where acceptance is informative
    _combined_check(ours_acc[..., None], bacc[..., None], "acceptance rate")
    _combined_check(xs, bx, "mean")
    z = lambda x: ((x - MU)[..., :, None] * (x - MU)[..., None, :]).reshape(x.shape[:2] + (-1,))
    _combined_check(z(xs), z(bx), "second moments")


def test_hmc_log_accept_by_hand(x64):
    # p0 = z / sqrt(m_inv), z from the first half of split(key); L leapfrog steps
    #   p += h/2 g(x); x += h m_inv p; p += h/2 g(x)
    # and log a = H(x0, p0) - H(xL, pL), H(x, p) = -log p(x) + sum(m_inv p^2) / 2.
    h, num_lf, m_inv = 0.5, 4, np.array([1.0, 0.5, 2.0])
    x = jnp.asarray(MU) + jax.random.normal(jax.random.PRNGKey(3), (16, 3), jnp.float64)
    smp = hmc(h, num_lf, 1, inverse_mass=m_inv)
    key = jax.random.PRNGKey(11)
    s1 = smp.step(smp.init(x, model_fn=gauss_logdensity), key, gauss_logdensity)
    z = np.asarray(jax.random.normal(jax.random.split(key)[0], x.shape, jnp.float64))
    p0 = z / np.sqrt(m_inv)
    np.testing.assert_allclose(np.asarray(s1.momentum), p0, rtol=1e-12)
    logp = lambda y: -0.5 * np.einsum("bi,ij,bj->b", y - MU, PREC, y - MU)
    grad = lambda y: -(y - MU) @ PREC
    xx, pp = np.asarray(x), p0.copy()
    for _ in range(num_lf):
        pp = pp + 0.5 * h * grad(xx)
        xx = xx + h * m_inv * pp
        pp = pp + 0.5 * h * grad(xx)
    energy = lambda y, p: -logp(y) + 0.5 * np.sum(m_inv * p * p, 1)
    expect = energy(np.asarray(x), p0) - energy(xx, pp)
    np.testing.assert_allclose(np.asarray(s1.log_accept), expect, rtol=1e-10, atol=1e-10)
    acc = np.asarray(s1.accepted)
    assert 0 < acc.sum() < len(acc)
    np.testing.assert_allclose(np.asarray(s1.x), np.where(acc[:, None], xx, np.asarray(x)), rtol=1e-12)
    assert int(s1.nfe) == 1 + num_lf


@pytest.mark.parametrize("name,build,target", [
    ("hmc", lambda h, n: hmc(h, 5, n), 0.8),
    ("mala", lambda h, n: mala(h, n), 0.57),
])
def test_dual_averaging_reaches_target(name, build, target):
    x0 = jnp.zeros((32, 3))
    state, h, trace = adapt(build(1e-3, 1), gauss_logdensity, x0, jax.random.PRNGKey(0), 300, target)
    assert float(state.step_size) == pytest.approx(float(h))
    assert float(h) > 1e-2  # moved far from the bad initial step size
    # a fresh run at the adapted step size accepts at the target rate
    _, la = chains(build(float(h), 600), gauss_logdensity, state.x, seed=5, burn=0)
    rate = acceptance_rate(la)
    assert abs(rate - target) < 0.05, f"{name}: acceptance {rate:.3f} at adapted step {float(h):.4f}"


@pytest.mark.parametrize("build,msg", [
    (lambda: hmc(0.1, 0, 10), "num_leapfrog"),
    (lambda: hmc(0.0, 5, 10), "step_size"),
    (lambda: hmc(0.1, 5, 0), "num_steps"),
    (lambda: hmc(0.1, 5, 10, inverse_mass=[1.0, -1.0]), "inverse_mass"),
    (lambda: hmc(0.1, 5, 10, target="score"), "logdensity"),
    (lambda: adapt_step_size(hmc(0.1, 5, 1), gauss_logdensity, jnp.zeros((2, 3)), jax.random.PRNGKey(0), 10,
                             target_accept=1.5), "target_accept"),
    (lambda: adapt_step_size(hmc(0.1, 5, 1), gauss_logdensity, jnp.zeros((2, 3)), jax.random.PRNGKey(0), 10,
                             kappa=0.3), "kappa"),
    (lambda: adapt_step_size(ula(0.1, 1), gauss_logdensity, jnp.zeros((2, 3)), jax.random.PRNGKey(0), 10),
     "Metropolis-adjusted"),
    (lambda: hmc(0.1, 5, 10, inverse_mass=[1.0, 2.0]).init(jnp.zeros((2, 3)), model_fn=gauss_logdensity),
     "inverse_mass"),
])
def test_build_errors(build, msg):
    with pytest.raises(ValueError, match=msg):
        build()
