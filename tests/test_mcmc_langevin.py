"""ULA and MALA: moments of a correlated Gaussian and the weights of a bimodal mixture
within 4 ESS-based standard errors (see tests/mcmc_utils.py), parity with blackjax's
MALA, and the log-acceptance ratio of one proposal against a hand computation. ULA's O(h) bias
is resolved: the same check rejects the unbiased law (a control)."""
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.diagnostics import acceptance_rate, ess
from samplers.mcmc.langevin import mala, ula
from tests.mcmc_utils import (MU, PREC, SIGMA, K_SIGMA, check_moments, check_right_mass, gauss_logdensity,
                              gauss_score, mixture, mixture_logdensity, right_mass)

run = jax.jit(sample, static_argnums=(0, 1, 4))
BIMODAL = mixture(1.0)  # modes 4 sd apart: local kernels hop between them within a few thousand steps


def chains(sampler, model_fn, x0, seed=0, burn=500):
    final, (xs, la) = run(sampler, model_fn, x0, jax.random.PRNGKey(seed),
                          lambda s: (s.x, getattr(s, "log_accept", s.i)))
    assert int(final.nfe) == sampler.nfe
    return np.asarray(xs)[burn:], np.asarray(la)[burn:]


@pytest.mark.parametrize("target", ["logdensity", "score"])
def test_ula_gaussian_matches_its_exact_stationary_law(target):
    # ULA on N(mu, Sigma) is the AR(1) x' - mu = (I - hP)(x - mu) + sqrt(2h) z; its stationary
    # covariance C = A C A + 2h I solves to C = (P - h P^2 / 2)^{-1} (P = Sigma^{-1}), mean mu.
    # h = 0.1 and 256 chains make the O(h) bias (up to 0.08) ~16 standard errors: resolved, so the
    # check rejects the unbiased law (controls below).
    h = 0.1
    fn = gauss_logdensity if target == "logdensity" else gauss_score
    xs, _ = chains(ula(h, 2000, target=target), fn, jnp.zeros((256, 3)))
    exact_cov = np.linalg.inv(PREC - 0.5 * h * PREC @ PREC)
    check_moments(xs, MU, exact_cov, "ula")
    # controls: the check rejects ULA's draws as draws of the target itself, and exact (unbiased)
    # draws of the target, as many as the chains hold, as draws of ULA's law
    with pytest.raises(AssertionError, match="covariance"):
        check_moments(xs, MU, SIGMA, "ula vs the unbiased law")
    exact_draws = np.random.default_rng(0).multivariate_normal(MU, SIGMA, xs.shape[:2])
    with pytest.raises(AssertionError, match="covariance"):
        check_moments(exact_draws, MU, exact_cov, "unbiased draws vs ULA's law")


def test_ula_mixture_weights():
    x0 = jnp.tile(jnp.array([[-1.0, 0.0]]), (64, 1))  # all chains start in the minor mode
    xs, _ = chains(ula(0.02, 4000), mixture_logdensity(BIMODAL), x0, burn=1000)
    check_right_mass(xs, right_mass(BIMODAL), "ula")


def test_mala_gaussian_and_mixture():
    xs, la = chains(mala(0.1, 2000), gauss_logdensity, jnp.zeros((32, 3)))
    check_moments(xs, MU, SIGMA, "mala")
    assert 0.6 < acceptance_rate(la) < 0.85
    x0 = jnp.tile(jnp.array([[-1.0, 0.0]]), (64, 1))
    xs, _ = chains(mala(0.15, 3000), mixture_logdensity(BIMODAL), x0, burn=1000)
    check_right_mass(xs, right_mass(BIMODAL), "mala")


def _combined_check(a, b, what):
    """|mean_a - mean_b| <= K sqrt(mcse_a^2 + mcse_b^2) per coordinate of two draws arrays."""
    def est(x):
        return x.mean(axis=(0, 1)), x.reshape((-1,) + x.shape[2:]).std(axis=0) / np.sqrt(ess(x))
    (ma, sa), (mb, sb) = est(a), est(b)
    bound = K_SIGMA * np.sqrt(sa**2 + sb**2)
    assert np.all(np.abs(ma - mb) <= bound), f"{what}: {ma} vs {mb}, bound {bound}"


def blackjax_chains(kernel, x0, num_steps, seed):
    """Run a blackjax kernel (one chain per row of x0, vmapped); (positions, acceptance probs)."""
    def one(key, x):
        def body(s, k):
            s, info = kernel.step(k, s)
            return s, (s.position, info.acceptance_rate)
        return jax.lax.scan(body, kernel.init(x), jax.random.split(key, num_steps))[1]

    pos, acc = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), x0.shape[0]), x0)
    return np.asarray(pos).swapaxes(0, 1), np.asarray(acc).T


def test_mala_matches_blackjax():
    h, steps, burn = 0.1, 2000, 500
    x0 = jnp.zeros((32, 3))
    xs, la = chains(mala(h, steps), gauss_logdensity, x0, seed=1, burn=burn)
    bx, bacc = blackjax_chains(blackjax.mala(lambda x: gauss_logdensity(x[None])[0], h), x0, steps, 2)
    bx, bacc = bx[burn:], bacc[burn:]
    ours_acc = np.exp(np.minimum(la, 0.0))
    _combined_check(ours_acc[..., None], bacc[..., None], "acceptance rate")
    _combined_check(xs, bx, "mean")
    z = lambda x: ((x - MU)[..., :, None] * (x - MU)[..., None, :]).reshape(x.shape[:2] + (-1,))
    _combined_check(z(xs), z(bx), "second moments")
    assert abs(ours_acc.mean() - bacc.mean()) < 0.02


def test_mala_log_accept_by_hand(x64):
    # log a = log p(x') - log p(x) - |x - x' - h g(x')|^2 / (4h) + |x' - x - h g(x)|^2 / (4h),
    # x' = x + h g(x) + sqrt(2h) z, z from the first half of split(key), log p the Gaussian above.
    h = 0.3
    x = jnp.asarray(MU) + jax.random.normal(jax.random.PRNGKey(3), (16, 3), jnp.float64)
    smp = mala(h, 1)
    key = jax.random.PRNGKey(7)
    s0 = smp.init(x, model_fn=gauss_logdensity)
    s1 = smp.step(s0, key, gauss_logdensity)
    z = np.asarray(jax.random.normal(jax.random.split(key)[0], x.shape, jnp.float64))
    xn = np.asarray(x)
    logp = lambda y: -0.5 * np.einsum("bi,ij,bj->b", y - MU, PREC, y - MU)
    grad = lambda y: -(y - MU) @ PREC
    xp = xn + h * grad(xn) + np.sqrt(2 * h) * z
    expect = (logp(xp) - logp(xn) - np.sum((xn - xp - h * grad(xp)) ** 2, 1) / (4 * h)
              + np.sum((xp - xn - h * grad(xn)) ** 2, 1) / (4 * h))
    np.testing.assert_allclose(np.asarray(s1.log_accept), expect, rtol=1e-10, atol=1e-10)
    acc = np.asarray(s1.accepted)
    assert 0 < acc.sum() < len(acc)  # both branches exercised
    np.testing.assert_allclose(np.asarray(s1.x), np.where(acc[:, None], xp, xn), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(s1.accept_sum), np.exp(np.minimum(expect, 0)), rtol=1e-10)


@pytest.mark.parametrize("build,msg", [
    (lambda: ula(0.0, 10), "step_size"),
    (lambda: ula(-1.0, 10), "step_size"),
    (lambda: mala(0.1, 0), "num_steps"),
    (lambda: ula(0.1, 10, target="density"), "target"),
    (lambda: mala(0.1, 10, target="score"), "logdensity"),
])
def test_build_errors(build, msg):
    with pytest.raises(ValueError, match=msg):
        build()
